"""Real ISS photos against their published Sentinel-2 surroundings (../shared/data/real_pairs)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from astroapp.cli import main
from astroapp.geo.viewing import ViewingHints
from astroapp.matching import PreparedPhoto, coregister, get_matcher
from astroapp.matching.imageio import read_rgb
from astroapp.matching.warp_check import gradient_ncc, ncc, warp_to_photo


@pytest.fixture(scope="module")
def pairs(shared_dir):
    root = shared_dir / "data" / "real_pairs"
    if not root.is_dir():
        pytest.skip(f"{root} is absent")
    out = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        ref = d / "reference_warp.jpg"
        out[d.name] = {
            "query": read_rgb(d / "query.jpg"),
            "surroundings": read_rgb(d / "surroundings.jpg"),
            "reference": read_rgb(ref) if ref.is_file() else None,
            "meta": json.loads((d / "meta.json").read_text()),
            "dir": d,
        }
    assert len(out) >= 2
    return out


@pytest.fixture(scope="module")
def matcher():
    return get_matcher("sift")


@pytest.fixture(scope="module")
def prepared(pairs, matcher):
    return {name: PreparedPhoto(p["query"], matcher) for name, p in pairs.items()}


def test_reference_pairs_accepted_and_warp_agrees(pairs, prepared, record_property):
    report = []
    for name, p in pairs.items():
        if p["reference"] is None:
            continue
        res = coregister(prepared[name], p["surroundings"])
        assert res.accepted, (name, res.inliers, res.reason)
        assert 0.999 <= res.confidence <= 1.0
        h, w = p["reference"].shape[:2]
        # the surroundings warped into the photo's frame, as the reference warp is
        ours = warp_to_photo(p["surroundings"], res.homography, res.photo_size, (w, h))
        agree = ncc(ours, p["reference"])
        ref_vs_photo = gradient_ncc(p["reference"], p["query"])
        ours_vs_photo = gradient_ncc(ours, p["query"])
        report.append(f"{name}: {res.inliers} inliers, NCC(ours, reference) {agree:.3f}, "
                      f"structure vs photo: ours {ours_vs_photo:.3f}, reference {ref_vs_photo:.3f}")
        if ref_vs_photo >= 0.3:
            # a sound published alignment: ours must reproduce it
            assert agree >= 0.8, report[-1]
        else:
            # the published warp does not show the photo's ground (ISS064-E-358's LoFTR
            # result is a degenerate projective smear): ours must fit the photo better
            assert ours_vs_photo > ref_vs_photo + 0.1, report[-1]
    assert report, "no pair with a reference warp"
    print("\n".join(report))
    record_property("real_pairs_ncc", report)


ACCEPTED = ("ISS050-E-70536", "ISS051-E-43872", "ISS064-E-358")
REVIEW_OK = ("ISS062-E-24032", "ISS064-E-46242")  # no published warp: accepted or review


def test_issue13_dev_pairs_with_and_without_hints(pairs, prepared):
    """Issue 13's acceptance on the dev pairs: the three with a published warp accepted (NCC
    >= 0.8 where the published warp is sound: checked above), the other two accepted or left
    for review, never an error; NASA's focal length and tilt as hints change none of it."""
    for name, p in pairs.items():
        hints = ViewingHints.create(p["meta"]["focal_mm"], p["meta"]["tilt_deg"])
        # without hints, the pairs with a published warp are checked above
        runs = ({"hints": hints},) if p["reference"] is not None else ({}, {"hints": hints})
        for kwargs in runs:
            res = coregister(prepared[name], p["surroundings"], **kwargs)
            if name in ACCEPTED:
                assert res.accepted, (name, kwargs, res.inliers, res.reason)
            elif name in REVIEW_OK:
                assert res.accepted or res.reason or res.inliers < res.threshold
            if res.accepted and p["reference"] is not None:
                h, w = p["reference"].shape[:2]
                ours = warp_to_photo(p["surroundings"], res.homography, res.photo_size, (w, h))
                if gradient_ncc(p["reference"], p["query"]) >= 0.3:
                    assert ncc(ours, p["reference"]) >= 0.8, (name, kwargs)


@pytest.mark.slow  # 20 pairs, each searched at every scale (~3 s of CPU a pair)
def test_no_photo_accepted_against_other_surroundings(pairs, prepared):
    for name in pairs:
        for other, p in pairs.items():
            if other == name:
                continue
            res = coregister(prepared[name], p["surroundings"])
            assert not res.accepted, (name, other, res.inliers)


def test_match_cli_json_contract(pairs, tmp_path, capsys):
    name = next(n for n, p in pairs.items() if p["reference"] is not None)
    d = pairs[name]["dir"]
    cmd = [sys.executable, "-m", "astroapp", "match", str(d / "query.jpg"),
           str(d / "surroundings.jpg"), "--json"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout.strip().splitlines()[-1])
    assert data["accepted"] is True and 0.0 <= data["confidence"] <= 1.0
    assert isinstance(data["inliers"], int) and data["inliers"] > 0
    h = np.array(data["homography"])
    corners = np.array(data["corners_px"])
    assert h.shape == (3, 3) and corners.shape == (4, 2) and data["seconds"] > 0
    # homography maps the photo's corners (edge coords) to corners_px
    w, hgt = pairs[name]["query"].shape[1], pairs[name]["query"].shape[0]
    pts = np.array([[0, 0, 1], [w, 0, 1], [w, hgt, 1], [0, hgt, 1]], float) @ h.T
    assert np.allclose(pts[:, :2] / pts[:, 2:], corners, atol=1e-6)
    # a wrong pair: still exit 0, not accepted (in-process from here: same entry point)
    other = next(n for n in pairs if n != name)
    capsys.readouterr()
    assert main(["match", cmd[4], str(pairs[other]["dir"] / "surroundings.jpg"), "--json",
                 "--angle", "0"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["accepted"] is False
    # unreadable input: non-zero exit, a message naming the file
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    assert main(["match", str(bad), cmd[5], "--json"]) != 0
    assert "broken.jpg" in capsys.readouterr().err
    assert main(["match", cmd[4], str(tmp_path / "missing.jpg"), "--json"]) != 0
    assert "missing.jpg" in capsys.readouterr().err
    assert main(["match", cmd[4], cmd[5], "--angle", "45"]) != 0
    assert "--angle" in capsys.readouterr().err


def test_dense_flags(pairs, tmp_path, capsys):
    """`match --no-dense` stays with keypoints; a negative `--dense-candidates` is refused
    before anything is opened (exit 2, a one-line message)."""
    name = next(n for n, p in pairs.items() if p["reference"] is not None)
    other = next(n for n in pairs if n != name)
    query = str(pairs[name]["dir"] / "query.jpg")
    assert main(["match", query, str(pairs[other]["dir"] / "surroundings.jpg"), "--no-dense",
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert data["accepted"] is False and data["stage"] == "keypoints"
    cat = tmp_path / "never.sqlite"
    assert main(["--catalog", str(cat), "localize", "--dense-candidates", "-1"]) == 2
    assert "--dense-candidates must be >= 0" in capsys.readouterr().err
    assert not cat.exists()
