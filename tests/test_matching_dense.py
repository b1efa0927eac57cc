"""The dense coregistration stage: orientation fields, the search and refinement on a photo
keypoints cannot match (inverted contrast, any rotation), its shipped calibration, cancel,
and `astroapp calibrate --dense`."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from astroapp.matching import CoregCancelled, PreparedPhoto, coregister, get_matcher
from astroapp.matching.calibrate import read_samples
from astroapp.matching.calibration import Calibration, user_calibration_path
from astroapp.matching.coregister import (
    DENSE_NAME,
    coregister_dense,
    dense_calibration,
    dense_settings,
)
from astroapp.matching.geometry import apply_h, edge_corners
from astroapp.matching.imageio import read_rgb
from astroapp.matching.orientation import orientation_field

PHOTO_SIZE = (640, 480)


def _texture(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Multi-scale grey noise (random grids upsampled): outlines at every scale and angle."""
    rng = np.random.default_rng(seed)
    img = np.zeros(shape, np.float32)
    for cells, weight in ((6, 1.0), (20, 0.9), (64, 0.7), (200, 0.5)):
        grid = rng.random((cells, cells), dtype=np.float32)
        img += weight * cv2.resize(grid, shape[::-1], interpolation=cv2.INTER_CUBIC)
    img -= img.min()
    img *= 255.0 / img.max()
    return img.astype(np.uint8)


# ------------------------------------------------------------------ orientation fields


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_orientation_field_ignores_polarity_and_contrast(seed):
    grey = _texture((150 + 7 * seed, 170), seed)
    field, strength = orientation_field(grey)
    assert np.abs(field).max() > 1.0  # not trivially zero
    inverted, inv_strength = orientation_field(255 - grey)  # a frozen lake: bright, not dark
    np.testing.assert_allclose(inverted, field, atol=1e-4)
    np.testing.assert_allclose(inv_strength, strength, atol=1e-4)
    # haze: a global contrast change (and offset) changes nothing but the tiny EPS guard
    hazy, hazy_strength = orientation_field(grey.astype(np.float32) * 0.4 + 30.0)
    np.testing.assert_allclose(hazy, field, atol=5e-3)
    np.testing.assert_allclose(hazy_strength, strength, atol=5e-3)


@pytest.mark.parametrize("seed", [3, 4])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_quarter_turn_turns_the_doubled_angle_by_half_turns(seed, k):
    """Turning the image by k * 90 deg turns every gradient by k * 90 deg, so the doubled
    angle turns by k * 180 deg: the (cos 2a, sin 2a) field is negated for odd k and the same
    for even k, at the rotated pixel."""
    grey = _texture((120 + 9 * seed, 150), seed)  # not square: the axes really swap
    field, strength = orientation_field(grey)
    turned, turned_strength = orientation_field(np.ascontiguousarray(np.rot90(grey, k)))
    np.testing.assert_allclose(turned, (-1) ** k * np.rot90(field, k, axes=(0, 1)), atol=1e-4)
    np.testing.assert_allclose(turned_strength, np.rot90(strength, k), atol=1e-4)


# ------------------------------------------------------------------ a photo keypoints miss


def _true_h(theta_deg: float, scale: float, centre: tuple[float, float]) -> np.ndarray:
    """Photo px (edge coords) -> surroundings px: a rotation and scale about the centre."""
    t = np.deg2rad(theta_deg)
    h = np.eye(3)
    h[:2, :2] = scale * np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    c = apply_h(h, np.array([[PHOTO_SIZE[0] / 2, PHOTO_SIZE[1] / 2]]))[0]
    return np.array([[1, 0, centre[0] - c[0]], [0, 1, centre[1] - c[1]], [0, 0, 1]]) @ h


def _inverted_photo(surr: np.ndarray, true_h: np.ndarray) -> np.ndarray:
    """What the camera sees of `surr` under `true_h`, with the contrast inverted (255 - x)."""
    return 255 - cv2.warpPerspective(surr, np.linalg.inv(true_h), PHOTO_SIZE,
                                     flags=cv2.INTER_LINEAR)


@pytest.fixture(scope="module")
def world():
    """Surroundings of two far-apart blocks of the bundled world (Blue Marble), 1536 px."""
    from astroapp.geo.sources import open_source
    from astroapp.matching.render_pairs import containing_block, surroundings_of

    src = open_source("bluemarble")
    out = []
    for lon, lat in ((33.0, 27.0), (-110.0, 38.0)):  # Egypt and the Red Sea; Colorado Plateau
        row, col = containing_block(lon, lat, 6)
        out.append(surroundings_of(src, 6, row, col, 512))
    return out


@pytest.fixture(scope="module")
def inverted_case(world):
    (surr, grid), (other, _) = world
    true_h = _true_h(137.0, 1.1, (800.0, 740.0))
    return {"surr": surr, "grid": grid, "true_h": true_h,
            "photo": _inverted_photo(surr, true_h),
            "elsewhere": _inverted_photo(other, true_h)}


def test_keypoints_miss_an_inverted_rotated_photo(inverted_case):
    res = coregister(inverted_case["photo"], inverted_case["surr"], grid=inverted_case["grid"],
                     matcher=get_matcher("sift"))
    assert not res.accepted, (res.inliers, res.threshold)


def test_dense_stage_finds_it_at_the_shipped_calibration(inverted_case):
    cal = dense_calibration()
    assert cal.calibrated and cal.matcher == DENSE_NAME
    assert cal.settings == dense_settings()  # made with the code's settings
    photo = PreparedPhoto(inverted_case["photo"], get_matcher("sift"))
    res = coregister_dense(photo, inverted_case["surr"], grid=inverted_case["grid"])
    assert res.accepted, (res.inliers, res.threshold, res.reason)
    assert res.stage == "dense" and res.matcher == DENSE_NAME and res.threshold == cal.threshold
    assert res.confidence >= cal.target
    truth = apply_h(inverted_case["true_h"], edge_corners(PHOTO_SIZE))
    err = np.linalg.norm(res.corners_px - truth, axis=1)
    assert err.max() < 4.0, err
    assert res.footprint is not None and len(res.correspondences) == res.inliers


def test_dense_stage_rejects_a_photo_from_elsewhere(inverted_case):
    photo = PreparedPhoto(inverted_case["elsewhere"], get_matcher("sift"))
    res = coregister_dense(photo, inverted_case["surr"], grid=inverted_case["grid"])
    assert not res.accepted, (res.inliers, res.threshold)
    assert res.inliers < res.threshold and res.confidence < dense_calibration().target


def test_cancel_stops_the_dense_stage(inverted_case):
    photo = PreparedPhoto(inverted_case["photo"], get_matcher("sift"))
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(CoregCancelled):
        coregister_dense(photo, inverted_case["surr"], cancel=cancel)
    # set while it runs (the search takes seconds): it stops there too
    cancel = threading.Event()
    timer = threading.Timer(0.3, cancel.set)
    timer.start()
    try:
        with pytest.raises(CoregCancelled):
            coregister_dense(photo, inverted_case["surr"], cancel=cancel)
    finally:
        timer.cancel()


# ------------------------------------------------------------------ real photos


@pytest.mark.slow
def test_real_pair_accepted_and_cross_pair_rejected(shared_dir):
    """15-25 s. ISS062-E-24032 (frozen lakes bright in the photo, dark in the mosaic; keypoints never
    matched it) is accepted at the shipped calibration; its photo on another pair's
    surroundings is not. (The shipped fit used the real cross pairs as wrong pairs and no
    real pair as a correct one.)"""
    root = shared_dir / "data" / "real_pairs"
    names = ("ISS062-E-24032", "ISS064-E-358")
    if not all((root / n).is_dir() for n in names):
        pytest.skip(f"{root}: {', '.join(names)} needed")
    cal = dense_calibration()
    photo = PreparedPhoto(read_rgb(root / "ISS062-E-24032" / "query.jpg"), get_matcher("sift"))
    res = coregister_dense(photo, read_rgb(root / "ISS062-E-24032" / "surroundings.jpg"))
    assert res.accepted and res.confidence >= cal.target, (res.inliers, res.threshold)
    cross = coregister_dense(photo, read_rgb(root / "ISS064-E-358" / "surroundings.jpg"))
    assert not cross.accepted, (cross.inliers, cross.threshold)
    assert cross.confidence < 0.5


# ------------------------------------------------------------------ astroapp calibrate --dense


RECORDED = Path(__file__).parent / "data" / "dense_orientation_samples.json"


def test_shipped_calibration_refits_from_its_recorded_samples(tmp_path, capsys):
    """tests/data/dense_orientation_samples.json is the measurement the shipped
    dense-orientation.json was fitted on (`astroapp calibrate --dense --renders 30 --labelled
    <real cross pairs> --samples`); refitting it through the CLI gives the shipped fit."""
    from astroapp.cli import main
    from astroapp.matching.calibration import calibration_path

    out = tmp_path / "refit.json"
    assert main(["calibrate", "--dense", "--renders", "0", "--from-samples", str(RECORDED),
                 "--output", str(out), "-q"]) == 0
    refit, shipped = Calibration.load(out), Calibration.load(calibration_path(DENSE_NAME))
    assert refit.threshold == shipped.threshold and refit.settings == shipped.settings
    assert refit.intercept == pytest.approx(shipped.intercept)
    assert refit.slope == pytest.approx(shipped.slope)
    for key in ("correct", "wrong", "wrong_max_inliers", "kinds"):
        assert refit.samples[key] == shipped.samples[key], key
    assert f"threshold T = {shipped.threshold}" in capsys.readouterr().out
    # no real pair was labelled correct: real pairs only enter as wrong (cross) pairs
    assert not any(s.correct for s in read_samples(RECORDED) if s.kind == "labelled")


@pytest.mark.slow
def test_calibrate_dense_cli_on_a_labelled_set(tmp_path, capsys, world, inverted_case):
    """A user's labelled pairs measured by the dense stage (~25 s): two wrong pairs are too
    few for its tail fit, which says so and keeps the measurement (--samples); refitting it
    with more samples (--from-samples) writes the user's dense-orientation.json."""
    from astroapp.cli import main

    root = tmp_path / "labelled"
    pairs = {"right": (inverted_case["photo"], 1), "wrong": (inverted_case["elsewhere"], 0)}
    for name, (photo, _) in pairs.items():
        (root / name).mkdir(parents=True)
        cv2.imwrite(str(root / name / "query.png"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / name / "surroundings.png"),
                    cv2.cvtColor(inverted_case["surr"], cv2.COLOR_RGB2BGR))
    (root / "labels.csv").write_text(
        "pair,correct\n" + "".join(f"{n},{ok}\n" for n, (_, ok) in pairs.items()))
    measured = tmp_path / "measured.json"
    assert main(["calibrate", "--dense", "--renders", "0", "--labelled", str(root),
                 "--samples", str(measured), "-q"]) == 2
    assert "at least 20 wrong pairs" in capsys.readouterr().err
    assert not user_calibration_path(DENSE_NAME).exists()  # nothing half-written
    got = {Path(s.name).name: s for s in read_samples(measured)}
    assert got["right"].correct and not got["wrong"].correct
    assert got["right"].inliers > 5 * got["wrong"].inliers > 0

    assert main(["calibrate", "--dense", "--renders", "0", "--from-samples", str(measured),
                 "--from-samples", str(RECORDED), "-q"]) == 0
    assert f"{DENSE_NAME}: P(correct)" in capsys.readouterr().out
    cal = Calibration.load(user_calibration_path(DENSE_NAME))  # the user's data dir
    assert cal.matcher == DENSE_NAME and cal.settings == dense_settings()
    recorded = len(read_samples(RECORDED))
    assert cal.samples["correct"] + cal.samples["wrong"] == recorded + 2
    assert cal.threshold > cal.samples["wrong_max_inliers"]
    # the user's calibration now wins over the shipped one
    assert dense_calibration().created_at == cal.created_at
    # --dense and --matcher are one or the other; a bad samples file is a clear error
    with pytest.raises(SystemExit):
        main(["calibrate", "--dense", "--matcher", "sift", "--renders", "0"])
    (tmp_path / "bad.json").write_text("{not json")
    assert main(["calibrate", "--dense", "--renders", "0", "--from-samples",
                 str(tmp_path / "bad.json")]) == 2
    assert "not a samples file" in capsys.readouterr().err
