"""Coregistration geometry: known homographies are recovered, conventions hold, rules reject."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from astroapp.geo.tiles import MercatorGrid, block_bounds, surroundings_bounds
from astroapp.matching import PreparedPhoto, coregister, get_matcher
from astroapp.matching.calibration import Calibration, fit_calibration
from astroapp.matching.geometry import apply_h, edge_corners, is_convex, rot90_centres
from astroapp.matching.sift import SiftMatcher


def _texture(side: int, seed: int) -> np.ndarray:
    """Multi-scale colour noise (random grids upsampled): blob-rich like terrain, no two
    places alike, and cheap to make."""
    rng = np.random.default_rng(seed)
    img = np.zeros((side, side, 3), np.float32)
    for cells, weight in ((6, 1.0), (20, 0.9), (64, 0.7), (200, 0.5)):
        grid = rng.random((cells, cells, 3), dtype=np.float32)
        img += weight * cv2.resize(grid, (side, side), interpolation=cv2.INTER_CUBIC)
    img -= img.min()
    img *= 255.0 / img.max()
    return img.astype(np.uint8)


@pytest.fixture(scope="module")
def matcher():
    return get_matcher("sift")


@pytest.fixture(scope="module")
def scene():
    """A 1536-px 'surroundings' texture with its georeference (3x3 around a zoom-9 block)."""
    surr = _texture(1536, seed=3)
    grid = MercatorGrid(surroundings_bounds(block_bounds(9, 200, 300)), 1536, 1536)
    return surr, grid


def _photo_from(surr: np.ndarray, true_h: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The photo a camera would see: surroundings warped by inverse H, with a colour cast."""
    photo = cv2.warpPerspective(surr, np.linalg.inv(true_h), size, flags=cv2.INTER_LINEAR)
    photo = np.clip(photo.astype(np.float32) * [0.8, 0.9, 1.1] + 12, 0, 255).astype(np.uint8)
    return photo


def _true_h(theta_deg: float, scale: float, centre=(760.0, 790.0), persp=2e-4) -> np.ndarray:
    """Photo px (edge coords) -> surroundings px: rotation, scale, mild perspective."""
    t = np.deg2rad(theta_deg)
    a = scale * np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    h = np.eye(3)
    h[:2, :2] = a
    h[2, :2] = [persp / 10, persp / 20]
    # put the photo centre (400, 300) at `centre`
    c = apply_h(h, np.array([[400.0, 300.0]]))[0]
    shift = np.array([[1, 0, centre[0] - c[0]], [0, 1, centre[1] - c[1]], [0, 0, 1]])
    return shift @ h


def test_rot90_matrix_matches_numpy():
    img = np.arange(5 * 3).reshape(3, 5)  # h=3, w=5
    for k in range(4):
        rot = np.rot90(img, k)
        m = rot90_centres(k, (5, 3))
        for y in range(3):
            for x in range(5):
                xr, yr = apply_h(m, np.array([[x, y]]))[0].round().astype(int)
                assert rot[yr, xr] == img[y, x]


def test_convexity_rule():
    assert is_convex(edge_corners((10, 10)))
    bowtie = np.array([[0, 0], [10, 10], [10, 0], [0, 10]], float)
    assert not is_convex(bowtie)
    assert not is_convex(np.array([[0, 0], [10, 0], [np.nan, 5], [0, 10]], float))


@pytest.mark.parametrize("theta,angle", [(20.0, None), (-95.0, 90), (170.0, None)])
def test_known_homography_recovered(scene, matcher, theta, angle):
    surr, grid = scene
    true_h = _true_h(theta, scale=0.9)
    photo = _photo_from(surr, true_h, (800, 600))
    res = coregister(photo, surr, grid=grid, matcher=matcher, angle=angle)
    assert res.homography is not None, res.reason
    truth = apply_h(true_h, edge_corners((800, 600)))
    err = np.linalg.norm(res.corners_px - truth, axis=1)
    assert err.max() < 2.0, (err, res.iteration_inliers)
    assert res.accepted and res.confidence >= 0.999
    assert res.inliers > 100 and len(res.correspondences) == res.inliers
    # inlier correspondences agree with the true mapping (photo px -> surroundings px)
    pred = apply_h(true_h, res.correspondences[:, :2])
    assert np.median(np.linalg.norm(pred - res.correspondences[:, 2:], axis=1)) < 2.0
    # footprint = georeferenced corners, TL, TR, BR, BL of the photo
    lon, lat = grid.pixel_to_lonlat(truth[:, 0], truth[:, 1])
    fp = np.array(res.footprint.corners)
    assert np.abs(fp - np.column_stack([lon, lat])).max() < 0.01
    gcps = res.gcps(4)
    assert len(gcps) == 16 and gcps[0][:2] == (0.0, 0.0)
    assert abs(gcps[0][2] - fp[0][0]) < 1e-9 and abs(gcps[-1][3] - fp[2][1]) < 1e-9
    data = res.to_json()
    assert data["accepted"] is True and len(data["corners_px"]) == 4


def test_given_angle_is_applied_for_rotation_variant_matchers(scene):
    """A matcher that is not rotation invariant gets the photo turned back by the angle."""
    surr, grid = scene
    true_h = _true_h(0.0, scale=1.0, persp=0.0)
    north_up = _photo_from(surr, true_h, (512, 512))
    photo = np.ascontiguousarray(np.rot90(north_up, 1))  # retrieval would say angle 90
    variant = SiftMatcher(name="sift-upright", upright=True)  # not rotation invariant
    variant.calibration = get_matcher("sift").calibration
    prepared = PreparedPhoto(photo, variant)
    res = coregister(prepared, surr, grid=grid, angle=90)
    assert res.homography is not None and res.angle == 90
    # photo px -> surroundings: undo the quarter turn, then the true map
    unrot = np.array([[0, -1, 512], [1, 0, 0], [0, 0, 1]], float)  # edge coords of rot90 k=1
    truth = apply_h(true_h @ unrot, edge_corners((512, 512)))
    assert np.linalg.norm(res.corners_px - truth, axis=1).max() < 2.0
    # unknown angle: all four tried by the window search (features cached per rotation and
    # scale), the right one kept
    res4 = coregister(prepared, surr, grid=grid, angle=None)
    assert res4.angle == 90 and sorted({k for _, k in prepared._scaled}) == [0, 1, 2, 3]
    assert np.linalg.norm(res4.corners_px - truth, axis=1).max() < 2.0


def test_photo_features_computed_once(scene, matcher, monkeypatch):
    surr, grid = scene
    photo = _photo_from(surr, _true_h(10.0, 0.9), (600, 600))
    prepared = PreparedPhoto(photo, matcher)
    calls = []
    original = matcher.features

    def counting(image, mask=None):
        calls.append(mask is None)
        return original(image, mask=mask)

    monkeypatch.setattr(matcher, "features", counting)
    per_run = []
    for _ in range(2):
        before = len(calls)
        coregister(prepared, surr, grid=grid)
        per_run.append(len(calls) - before)
    # the photo's features (full size and the search's scales) only in the first run; the
    # surroundings' and the views' in each
    photo_sets = len(prepared._features) + len(prepared._scaled)
    assert photo_sets >= 2 and per_run[0] - per_run[1] == photo_sets
    assert all(not unmasked for unmasked in calls)  # every image is masked (clouds, no-data)


def test_wrong_surroundings_rejected(scene, matcher):
    surr, grid = scene
    photo = _photo_from(surr, _true_h(30.0, 0.9), (640, 480))
    other = _texture(1536, seed=11)
    res = coregister(photo, other, grid=grid, matcher=matcher)
    assert not res.accepted
    assert res.inliers < matcher.calibration.threshold


def test_bad_inputs():
    m = get_matcher("sift")
    with pytest.raises(ValueError, match="RGB uint8"):
        coregister(np.zeros((10, 10), np.uint8), np.zeros((30, 30, 3), np.uint8), matcher=m)
    with pytest.raises(ValueError, match="multiple of 90"):
        coregister(np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64, 3), np.uint8),
                   matcher=m, angle=45)
    blank = coregister(np.zeros((64, 64, 3), np.uint8), np.zeros((192, 192, 3), np.uint8), matcher=m)
    assert not blank.accepted and blank.reason and blank.footprint is None


def test_logistic_calibration_threshold(tmp_path):
    rng = np.random.default_rng(0)
    wrong = rng.poisson(8, 300)
    right = rng.poisson(60, 300)
    inl = np.concatenate([wrong, right])
    lab = np.concatenate([np.zeros(300), np.ones(300)])
    cal = fit_calibration("test", inl, lab)
    assert cal.probability(cal.threshold) >= 0.999
    assert cal.probability(cal.threshold - 1) < 0.999 or cal.threshold == wrong.max() + 1
    assert cal.threshold > wrong.max()
    assert cal.probability(0) < 0.01
    path = cal.save(tmp_path / "t.json")
    assert Calibration.load(path).threshold == cal.threshold
    with pytest.raises(ValueError, match="both correct and wrong"):
        fit_calibration("test", right, np.ones(300))


def test_logistic_fit_of_a_tiny_separated_set_rises():
    """One correct and one or two wrong pairs (a user's first labelled set): the Firth fit
    converges to a rising curve instead of oscillating to a negative slope."""
    from astroapp.matching.calibration import fit_logistic

    for x, y in (([833, 16], [1, 0]), ([833, 16, 15], [1, 0, 0]), ([142, 16], [1, 0])):
        intercept, slope = fit_logistic(np.array(x, float), np.array(y, float))
        assert slope > 0
        p = 1 / (1 + np.exp(-(intercept + slope * np.array(x, float))))
        assert p[0] > 0.5 > p[1]


def test_null_tail_calibration_puts_the_threshold_where_chance_stops():
    """The dense stage's calibration: from the wrong pairs' tail alone. Wrong counts drawn
    from a shifted exponential (median 17, mean excess 3, like the measured ones): the
    threshold lies where that tail falls to 1e-5, with P = target there, low at chance."""
    from astroapp.matching.calibration import fit_null_tail

    rng = np.random.default_rng(3)
    wrong = np.round(15 + rng.exponential(3.0, 2000))
    right = np.array([140, 494, 822])
    cal = fit_null_tail("dense-test", np.concatenate([wrong, right]),
                        np.concatenate([np.zeros(wrong.size), np.ones(3)]))
    median = np.median(wrong)
    excess = (wrong[wrong > median] - median).mean()
    expected = median + excess * np.log(0.5 / 1e-5)
    assert abs(cal.threshold - expected) <= 1.0 and cal.threshold > wrong.max()
    # the fitted tail's chance of a wrong pair at the threshold: ~1e-5 (2000 draws: none)
    assert (wrong >= cal.threshold).mean() == 0.0
    assert cal.probability(cal.threshold) == pytest.approx(0.999, abs=1e-6)
    assert cal.probability(median) < 0.05 and cal.probability(140) > 0.999
    assert cal.samples["correct_recall_at_threshold"] == 1.0
    with pytest.raises(ValueError, match="at least 20 wrong"):
        fit_null_tail("dense-test", right, np.array([0, 1, 1]))


def test_reduced_decode_reports_full_frame_pixels(scene, matcher):
    """A photo decoded at half scale still gets results in the full file's pixel frame."""
    surr, grid = scene
    true_h = _true_h(-40.0, scale=0.45)  # full frame 1600 x 1200
    full = _photo_from(surr, true_h, (1600, 1200))
    half = cv2.resize(full, (800, 600), interpolation=cv2.INTER_AREA)
    res = coregister(PreparedPhoto(half, matcher, frame_size=(1600, 1200)), surr, grid=grid)
    assert res.photo_size == (1600, 1200)
    truth = apply_h(true_h, edge_corners((1600, 1200)))
    assert np.linalg.norm(res.corners_px - truth, axis=1).max() < 2.0


def test_calibrate_cli_on_a_labelled_set(tmp_path, capsys):
    """`astroapp calibrate --labelled DIR`: a user's folder of pairs with labels.csv."""
    from astroapp.cli import main
    from astroapp.matching.calibration import calibration_for, user_calibration_path

    root = tmp_path / "labelled"
    rows = ["pair,correct,angle"]
    for i in range(3):
        surr = _texture(768, seed=100 + i)
        photo = _photo_from(surr, _true_h(25.0 * i, 0.45, centre=(380, 400)), (480, 360))
        for name, s, ok in ((f"right{i}", surr, 1), (f"wrong{i}", _texture(768, 200 + i), 0)):
            (root / name).mkdir(parents=True)
            cv2.imwrite(str(root / name / "query.png"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
            cv2.imwrite(str(root / name / "surroundings.png"), cv2.cvtColor(s, cv2.COLOR_RGB2BGR))
            rows.append(f"{name},{ok},")
    (root / "broken").mkdir()
    (root / "broken" / "query.jpg").write_bytes(b"no")
    rows.append("broken,1,")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    assert main(["calibrate", "--matcher", "sift", "--renders", "0", "--labelled", str(root),
                 "-q"]) == 0
    out, err = capsys.readouterr()
    assert "threshold T =" in out and "broken" in err
    cal = Calibration.load(user_calibration_path("sift"))
    assert cal.samples["correct"] == 3 and cal.samples["wrong"] == 3
    assert cal.threshold > cal.samples["wrong_max_inliers"]
    assert cal.probability(cal.threshold) >= 0.999
    # the user's calibration now wins over the shipped one
    fresh = get_matcher("sift")
    assert calibration_for(fresh).created_at == cal.created_at
    # nothing to calibrate on / bad folder: clear errors
    assert main(["calibrate", "--renders", "0"]) == 2
    assert main(["calibrate", "--renders", "0", "--labelled", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err


def test_learned_matchers_need_local_weights(tmp_path, monkeypatch):
    from astroapp.matching import MatcherUnavailable, available_matchers

    monkeypatch.setenv("ASTROAPP_MATCHER_WEIGHTS", str(tmp_path))
    assert "sift" in available_matchers() and "lightglue" not in available_matchers()
    for name in ("lightglue", "loftr"):
        with pytest.raises(MatcherUnavailable, match="never downloads"):
            get_matcher(name)
    with pytest.raises(MatcherUnavailable, match="unknown matcher"):
        get_matcher("nope")
