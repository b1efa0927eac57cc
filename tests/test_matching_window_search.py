"""Real-conditions coregistration on renders of the bundled world: the scale-aware window
search, oblique views, the photometric masks and haze stretch, and `astroapp match` hints."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from astroapp.cli import main
from astroapp.geo.render import NO_AUGMENT, render_photo
from astroapp.geo.sources import open_source
from astroapp.geo.viewing import ViewingHints
from astroapp.matching import Features, PreparedPhoto, coregister, get_matcher
from astroapp.matching.photometric import keypoint_mask, normalise
from astroapp.matching.render_pairs import (
    Condition,
    condition_pair,
    is_correct_localization,
    shifted_wrong_pair,
)
from astroapp.matching.window_search import DEFAULT_RATIOS, ratios_for, window_cells, windows


@pytest.fixture(scope="module")
def source():
    return open_source("bluemarble")


@pytest.fixture(scope="module")
def matcher():
    return get_matcher("sift")


def _hints(cam, tilt: float) -> ViewingHints:
    return ViewingHints(focal_mm=cam.effective_focal_mm, tilt_deg=(tilt, tilt),
                        altitude_km=cam.altitude_km)


def test_windows_cover_the_surroundings_half_a_window_apart():
    wins = windows(1536, 8.0)
    side = wins[0][2]
    assert side == pytest.approx(1.75 * 1536 / 8)
    xs = sorted({x for x, _, _ in wins})
    assert xs[0] == 0 and xs[-1] + side == pytest.approx(1536)
    assert max(np.diff(xs)) <= side / 2 + 1e-9  # every footprint lies whole in some window
    assert len(wins) == len(xs) ** 2
    assert windows(1536, 1.2) == [(0.0, 0.0, 1536.0)]


@pytest.mark.parametrize("ratio", [1.6, 4.2, 11.0])
def test_window_cells_match_like_each_window(matcher, ratio):
    """Matching per cell of the windows' grid and merging (one pass over the similarities)
    gives exactly the matches of each window matched on its own (local ratio test)."""
    rng = np.random.default_rng(3)

    def feats(d: np.ndarray, side: float) -> Features:
        d = d / np.linalg.norm(d, axis=1, keepdims=True)
        pts = (rng.random((len(d), 2)) * side).astype(np.float32)
        return Features(pts, d.astype(np.float32), (int(side),) * 2)

    dq = rng.random((300, 128)) ** 4  # peaky, like RootSIFT
    # the photo's descriptors, noisy, among others: some pass the ratio test in some windows
    ds = np.vstack([dq + rng.normal(0, 0.01, dq.shape) ** 2, rng.random((2700, 128)) ** 4])
    fq, fs = feats(dq, 160), feats(ds, 1024)
    wins = windows(1024, ratio)
    kp = fs.keypoints
    members = [np.flatnonzero((kp[:, 0] >= x0) & (kp[:, 0] < x0 + w) & (kp[:, 1] >= y0)
                              & (kp[:, 1] < y0 + w)) for x0, y0, w in wins]
    cells, groups = window_cells(kp, wins)
    for mem, g in zip(members, groups, strict=True):
        assert sorted(np.concatenate([cells[c] for c in g]).tolist()) == mem.tolist()
    each = matcher.match_subsets(fq, fs, members)
    merged = matcher.match_cells(fq, fs, cells, groups)
    assert sum(len(m) for m in each) > 0
    for a, b in zip(each, merged, strict=True):
        assert np.array_equal(a.points_a, b.points_a) and np.array_equal(a.points_b, b.points_b)


def test_ratios_from_hints_and_surroundings_width():
    hints = ViewingHints.create(focal_mm=400.0, tilt=0.0)
    w = hints.ground_width_km()[0]  # ~37.8 km
    ratios = ratios_for(hints.ground_width_km(), 6 * w)
    assert min(ratios) < 6 < max(ratios) and max(ratios) / min(ratios) < 2.5
    assert ratios == tuple(sorted(ratios))  # coarse to fine
    # unknown focal or surroundings width: the whole pyramid
    assert ratios_for(None, 200.0) == DEFAULT_RATIOS
    assert ratios_for(hints.ground_width_km(), None) == DEFAULT_RATIOS
    # hints that put the photo far outside the surroundings' scale are ignored
    assert ratios_for(hints.ground_width_km(), 1000 * w) == DEFAULT_RATIOS
    assert ratios_for(hints.ground_width_km(), w / 10) == DEFAULT_RATIOS


@pytest.mark.parametrize("with_hints", [False, True])
def test_small_off_centre_photo_is_found(source, matcher, with_hints):
    """The photo covers an eighth of the surroundings' width, away from the centre: found
    by the window search, its footprint right (EarthMatch's central start cannot see it)."""
    pair, cam = condition_pair(source, Condition(ratio=8.0), np.random.default_rng(5))
    hints = _hints(cam, 0.0) if with_hints else None
    res = coregister(pair.photo, pair.surroundings, grid=pair.grid, matcher=matcher, hints=hints)
    assert res.accepted, (res.inliers, res.reason)
    assert is_correct_localization(res.footprint, pair.truth)
    # the same photo against far-away surroundings of the same size: not accepted
    wrong = shifted_wrong_pair(source, pair, np.random.default_rng(6))
    res = coregister(pair.photo, wrong.surroundings, grid=wrong.grid, matcher=matcher)
    assert not res.accepted and res.inliers < res.threshold


def test_wrong_hint_falls_back_to_the_pyramid(source, matcher):
    """A focal length 4x too short (a cropped photo, a wrong catalogue value) points the
    search at the wrong scales; when they find nothing the rest of the pyramid is searched."""
    # (with these scales alone this photo gets 5 inliers: measured with the fallback off)
    pair, cam = condition_pair(source, Condition(ratio=8.0), np.random.default_rng(6))
    wrong = ViewingHints(focal_mm=cam.effective_focal_mm / 4, tilt_deg=(0.0, 0.0),
                         altitude_km=cam.altitude_km)
    from astroapp.matching.coregister import _ground_width_km

    hinted = ratios_for(wrong.ground_width_km(), _ground_width_km(pair.grid))
    assert max(hinted) < 4 and hinted != DEFAULT_RATIOS  # the hint alone would miss it
    res = coregister(pair.photo, pair.surroundings, grid=pair.grid, matcher=matcher, hints=wrong)
    assert res.accepted, (res.inliers, res.reason)
    assert is_correct_localization(res.footprint, pair.truth)


@pytest.mark.parametrize("tilt", [30.0, 50.0])
def test_oblique_photo_converges(source, matcher, tilt):
    """Tilted 30-50 degrees off nadir (strong perspective): the loop converges from the
    window's rough homography to the right footprint."""
    pair, cam = condition_pair(source, Condition(ratio=3.0, tilt=tilt), np.random.default_rng(11))
    res = coregister(pair.photo, pair.surroundings, grid=pair.grid, matcher=matcher,
                     hints=_hints(cam, tilt))
    assert res.accepted, (res.inliers, res.reason)
    assert is_correct_localization(res.footprint, pair.truth, min_iou=0.7)
    # the loop stops once a step moves the view by a pixel or less (at most 4 iterations)
    assert 1 <= len(res.iteration_inliers) <= 4


def _clear_render(source, seed: int) -> np.ndarray:
    pair, cam = condition_pair(source, Condition(ratio=3.0), np.random.default_rng(seed))
    return render_photo(source, cam, 512, augment=NO_AUGMENT).image


def _clouds(shape: tuple[int, int], seed: int, cover: float) -> np.ndarray:
    """Soft cloud opacity (0..1) from smoothed noise, `cover` of the frame opaque."""
    rng = np.random.default_rng(seed)
    field = cv2.resize(rng.random((12, 12)).astype(np.float32), shape[::-1],
                       interpolation=cv2.INTER_CUBIC)
    thr = np.quantile(field, 1 - cover)
    return cv2.GaussianBlur(np.clip((field - thr) / 0.05, 0, 1), (0, 0), 2.0)


def test_keypoint_mask_keeps_off_clouds_and_space(source, matcher):
    ground = _clear_render(source, 21)
    alpha = _clouds(ground.shape[:2], 3, 0.3)[..., None]
    photo = (ground * (1 - alpha) + 245 * alpha).astype(np.uint8)
    photo[:, :60] = 0  # black space past the horizon / a dark window frame
    mask = keypoint_mask(photo)
    cloud = alpha[..., 0] > 0.5
    assert (mask[cloud] == 0).mean() > 0.95
    assert (mask[:, :60] == 0).all()
    # clear ground (away from cloud edges and space) stays usable
    clear = (cv2.dilate((alpha[..., 0] > 0.02).astype(np.uint8), np.ones((25, 25))) == 0)
    clear[:, :90] = False
    assert (mask[clear] > 0).mean() > 0.9
    # through PreparedPhoto, no keypoint of the photo lies on a cloud or in space
    prepared = PreparedPhoto(photo, matcher)
    pts = np.round(prepared.features(0).keypoints).astype(int)
    assert len(pts) > 100
    on_bad = cloud[pts[:, 1], pts[:, 0]] | (pts[:, 0] < 60)
    assert on_bad.mean() < 0.01
    # a frame that is mostly bright and grey (a snowfield) is not masked away
    snow = np.full((256, 256, 3), 235, np.uint8)
    snow[::16] = 120
    assert (keypoint_mask(snow) > 0).all()


def test_normalise_stretches_haze_per_channel(source):
    ground = _clear_render(source, 22)
    blue = np.array([190, 210, 245], np.float32)
    hazy = (0.45 * ground + 0.55 * blue).astype(np.uint8)  # flat, blue-lifted
    out = normalise(hazy)
    for c in range(3):
        lo, hi = np.percentile(out[..., c], (1, 99))
        assert lo <= 3 and hi >= 252  # each channel spans the range again
    gray = cv2.cvtColor(ground, cv2.COLOR_RGB2GRAY).astype(np.float64)
    restored = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY).astype(np.float64)
    assert np.corrcoef(gray.ravel(), restored.ravel())[0, 1] > 0.95
    assert restored.std() > 2 * cv2.cvtColor(hazy, cv2.COLOR_RGB2GRAY).std()


def test_hazy_cloudy_photo_is_found(source, matcher):
    pair, cam = condition_pair(source, Condition(ratio=4.0, cloud=0.3, haze=0.4),
                               np.random.default_rng(31))
    res = coregister(pair.photo, pair.surroundings, grid=pair.grid, matcher=matcher,
                     hints=_hints(cam, 0.0))
    assert res.accepted, (res.inliers, res.reason)
    assert is_correct_localization(res.footprint, pair.truth)


def test_match_cli_hints(source, tmp_path, capsys):
    pair, cam = condition_pair(source, Condition(ratio=6.0), np.random.default_rng(5))
    q, s = tmp_path / "query.png", tmp_path / "surroundings.png"
    Image.fromarray(pair.photo).save(q)
    Image.fromarray(pair.surroundings).save(s)
    hints = _hints(cam, 0.0)
    xmin, _, xmax, _ = pair.grid.bounds_3857
    lat = pair.grid.pixel_to_lonlat(np.array([768.0]), np.array([768.0]))[1][0]
    surr_km = (xmax - xmin) / 1000 * np.cos(np.radians(lat))
    assert main(["match", str(q), str(s), "--json", "--focal-mm", f"{hints.focal_mm:.3f}",
                 "--tilt-deg", "0", "--altitude-km", f"{cam.altitude_km:.1f}",
                 "--surroundings-km", f"{surr_km:.1f}"]) == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert data["accepted"] is True and data["inliers"] >= data["threshold"]
    # out-of-range hints: exit 2, a message naming the flag, no traceback
    for flags, words in ((["--focal-mm", "0"], "--focal-mm"), (["--focal-mm", "-50"], "--focal-mm"),
                         (["--tilt-deg", "85"], "--tilt-deg"), (["--tilt-deg", "-3"], "--tilt-deg"),
                         (["--altitude-km", "5"], "--altitude-km"),
                         (["--altitude-km", "0"], "--altitude-km"),
                         (["--surroundings-km", "0"], "--surroundings-km")):
        run = subprocess.run([sys.executable, "-m", "astroapp", "match", str(q), str(s), *flags],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 2, (flags, run.stderr)
        assert words in run.stderr and "Traceback" not in run.stderr
