"""Learned matchers (kornia LightGlue with DISK or SIFT, LoFTR): shapes with random weights,
loading published-layout files from the data dir, and clear errors without weights or kornia.

No real weights exist on these machines: the files written here are random weights saved in
the published files' layouts (DISK's 'extractor' wrapper, LightGlue's old layer names,
LoFTR's Lightning 'state_dict' with 'matcher.' prefixes).
"""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

pytest.importorskip("kornia")

from astroapp.cli import main  # noqa: E402
from astroapp.fetch import weights_home  # noqa: E402
from astroapp.matching import MatcherUnavailable, available_matchers, get_matcher  # noqa: E402
from astroapp.matching.learned import DiskLightGlue, LoftrMatcher, SiftLightGlue  # noqa: E402


def _image(w: int = 160, h: int = 128, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = (rng.random((h // 4, w // 4, 3)) * 255).astype(np.uint8)
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC)  # blobs: corners for SIFT


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("build", [
    lambda: DiskLightGlue(max_keypoints=256, filter_threshold=0.0, device="cpu"),
    lambda: SiftLightGlue(max_keypoints=256, filter_threshold=0.0, device="cpu"),
    lambda: LoftrMatcher(confidence=0.0, device="cpu"),
], ids=["lightglue-disk", "lightglue-sift", "loftr"])
def test_adapters_with_random_weights_give_matcher_shapes(build):
    matcher = build()
    img = _image()  # 160 x 128: not a multiple of 16 (DISK pads)
    feats = matcher.features(img)
    assert feats.image_size == (160, 128)
    assert feats.keypoints.dtype == np.float32 and feats.keypoints.shape == (len(feats), 2)
    assert feats.descriptors.shape[0] == len(feats) > 10
    mask = np.zeros(img.shape[:2], np.uint8)
    mask[:, :80] = 255
    left = matcher.features(img, mask=mask)
    assert 0 < len(left) < len(feats) and left.keypoints[:, 0].max() < 80.5
    matches = matcher.match(feats, left)
    assert matches.points_a.shape == matches.points_b.shape == (len(matches), 2)
    assert matches.points_a.dtype == np.float32 and len(matches) > 0  # threshold 0: some pass
    assert matches.points_b[:, 0].max() < 80.5  # only into the masked-in half
    if not isinstance(matcher, LoftrMatcher):  # sparse: matches are detected keypoints
        assert set(map(tuple, matches.points_a)) <= set(map(tuple, feats.keypoints))
        # The window search's batch form: one pass, split by window (index or bool members).
        whole = matcher.match(feats, feats)
        west = feats.keypoints[:, 0] < 80
        assert matcher.match_subsets is None  # on a CPU: no window search (see the class)
        parts = matcher._match_subsets(feats, feats, [np.flatnonzero(west), ~west])
        assert sum(len(p) for p in parts) == len(whole) > 0
        assert parts[0].points_b[:, 0].max() < 80 <= parts[1].points_b[:, 0].min()
    assert matcher.rotation_invariant is False and matcher.settings()


def test_without_weights_the_error_says_how_to_get_them(tmp_path, capsys):
    assert available_matchers()[:2] == ["sift", "sift-nn"]
    assert not {"lightglue-disk", "lightglue-sift", "loftr"} & set(available_matchers())
    with pytest.raises(MatcherUnavailable) as err:
        get_matcher("lightglue-disk")
    msg = str(err.value)
    assert "astroapp model fetch disk`" in msg and "astroapp model fetch disk-lightglue" in msg
    assert "never downloads" in msg and str(weights_home()) in msg
    q, s = tmp_path / "q.png", tmp_path / "s.png"
    cv2.imwrite(str(q), _image(64, 64))
    cv2.imwrite(str(s), _image(192, 192, seed=1))
    assert main(["match", str(q), str(s), "--matcher", "lightglue-disk"]) == 2
    out = capsys.readouterr().err
    assert "astroapp model fetch disk-lightglue" in out and "Traceback" not in out


def test_without_kornia_the_error_names_the_extra(tmp_path):
    q, s = tmp_path / "q.png", tmp_path / "s.png"
    cv2.imwrite(str(q), _image(64, 64))
    cv2.imwrite(str(s), _image(192, 192, seed=1))
    code = ("import sys; sys.modules['kornia'] = None\n"  # as if the extra were not installed
            "from astroapp.cli import main\n"
            f"sys.exit(main(['match', {str(q)!r}, {str(s)!r}, '--matcher', 'loftr']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'astroapp[learned]'" in proc.stderr and "Traceback" not in proc.stderr


def _write_disk_lightglue(folder) -> DiskLightGlue:
    folder.mkdir(parents=True, exist_ok=True)
    m = DiskLightGlue(device="cpu")
    torch.save({"extractor": m.disk.state_dict()}, folder / "depth-save.pth")
    old = {}  # the published file's names: self_attn.{i} instead of transformers.{i}.self_attn
    for key, value in m.lightglue.state_dict().items():
        for part in ("self_attn", "cross_attn"):
            if key.startswith("transformers.") and f".{part}." in key:
                i = key.split(".")[1]
                key = key.replace(f"transformers.{i}.{part}.", f"{part}.{i}.")
        if key != "confidence_thresholds":  # a computed buffer, not in the file
            old[key] = value
    torch.save(old, folder / "disk_lightglue.pth")
    return m


def test_fetched_files_load_and_stay_uncalibrated():
    written = _write_disk_lightglue(weights_home())
    assert "lightglue-disk" in available_matchers()
    matcher = get_matcher("lightglue-disk")
    assert matcher.name == "lightglue-disk"
    for mine, theirs in ((matcher.disk, written.disk), (matcher.lightglue, written.lightglue)):
        for key, value in theirs.state_dict().items():
            assert torch.equal(mine.state_dict()[key], value), key
    # Uncalibrated: a threshold out of reach, so nothing is auto-accepted.
    assert matcher.calibration.calibrated is False and matcher.calibration.threshold >= 10**6
    # The LoFTR checkpoint layout: Lightning 'state_dict' with 'matcher.' prefixes.
    loftr = LoftrMatcher(device="cpu")
    torch.save({"state_dict": {f"matcher.{k}": v for k, v in loftr.loftr.state_dict().items()}},
               weights_home() / "loftr_outdoor.ckpt")
    loaded = get_matcher("loftr")
    key = "backbone.layer1.0.conv1.weight"
    assert torch.equal(loaded.loftr.state_dict()[key], loftr.loftr.state_dict()[key])


def test_weights_that_do_not_fit_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("ASTROAPP_MATCHER_WEIGHTS", str(tmp_path))
    (tmp_path / "sift_lightglue.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(MatcherUnavailable, match="cannot read weights file .*sift_lightglue.pth"):
        get_matcher("lightglue")  # alias of lightglue-sift
    # DISK's LightGlue has no scale/orientation encoding: it does not fit SIFT's LightGlue.
    torch.save(DiskLightGlue(device="cpu").lightglue.state_dict(), tmp_path / "sift_lightglue.pth")
    with pytest.raises(MatcherUnavailable, match="does not fit LightGlue for SIFT"):
        get_matcher("lightglue-sift")


def test_loftr_windows_and_tiles():
    from astroapp.matching.base import Features

    matcher = LoftrMatcher(confidence=0.0, device="cpu")
    img = _image(128, 128)
    whole = matcher.features(img)
    west = whole.keypoints[:, 0] < 60  # a window of cells: the maps stay, its cells restrict
    left = Features(whole.keypoints[west], whole.descriptors[west], whole.image_size, whole.extra)
    matches = matcher.match(whole, left)
    assert len(matches) > 0 and matches.points_b[:, 0].max() < 64
    # Features merged from tiles keep per-keypoint arrays only: no whole-image maps to match.
    merged = Features(whole.keypoints, whole.descriptors, whole.image_size)
    assert len(matcher.match(whole, merged)) == 0


@pytest.mark.parametrize("build", [
    lambda: DiskLightGlue(max_keypoints=128, device="cpu", window_search=True),
    lambda: SiftLightGlue(max_keypoints=128, device="cpu"),
    lambda: LoftrMatcher(device="cpu"),
], ids=["lightglue-disk-search", "lightglue-sift", "loftr"])
def test_coregistration_runs_and_never_auto_accepts_uncalibrated(build):
    """The window search (LightGlue's one-pass match_subsets, forced on here) and the loop."""
    from astroapp.matching import coregister
    from astroapp.matching.window_search import searchable

    matcher = build()
    assert searchable(matcher) == bool(getattr(matcher, "window_search", False))
    surr = _image(288, 288, seed=2)
    result = coregister(surr[96:192, 96:192], surr, matcher=matcher, size=96, angle=0)
    assert result.matcher == matcher.name and result.threshold >= 10**6
    assert result.accepted is False
