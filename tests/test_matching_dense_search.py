"""The dense pose search: its FFT correlation is OpenCV's normalised cross-correlation, the
coarse-to-fine search finds what every pose at full size finds, and the tilt's stretches
(along the ground azimuth, or ASIFT's directions) find a foreshortened photo on real imagery
(the bundled Blue Marble world) with a clearer peak than the square's axes alone."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from astroapp.matching import dense_refine, dense_search
from astroapp.matching.geometry import apply_h

PHOTO = 512
SURR = 1536
ROT_DEG = 137.0
SCALE = 1.1  # surroundings px per photo px: the footprint is 563 px, ratio 2.73
CENTRE = (800.0, 740.0)


@pytest.fixture(scope="module")
def surroundings() -> np.ndarray:
    """Surroundings of a block of the bundled world (Egypt and the Red Sea), 1536 px."""
    from astroapp.geo.sources import open_source
    from astroapp.matching.render_pairs import containing_block, surroundings_of

    row, col = containing_block(33.0, 27.0, 6)
    surr, _ = surroundings_of(open_source("bluemarble"), 6, row, col, PHOTO)
    assert surr.shape[:2] == (SURR, SURR)
    return surr


def _true_h(factor: float = 1.0, direction_deg: float = 0.0) -> np.ndarray:
    """Photo pixel centres -> surroundings': a foreshortening undone (a stretch by `factor`
    along `direction_deg` of the photo, area kept), a rotation and a scale about CENTRE."""
    a = math.radians(direction_deg)
    u = np.array([math.cos(a), -math.sin(a)])
    shape = (np.eye(2) + (factor - 1.0) * np.outer(u, u)) / math.sqrt(factor)
    t = math.radians(ROT_DEG)
    lin = SCALE * np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]]) @ shape
    c = (PHOTO - 1) / 2.0
    h = np.eye(3)
    h[:2, :2] = lin
    h[:2, 2] = np.array(CENTRE) - lin @ np.array([c, c])
    return h


def _photo(surr: np.ndarray, h: np.ndarray) -> np.ndarray:
    return cv2.warpPerspective(surr, h, (PHOTO, PHOTO), flags=cv2.INTER_AREA | cv2.WARP_INVERSE_MAP)


def _corner_error(h: np.ndarray, truth: np.ndarray) -> float:
    box = np.array([[0, 0], [PHOTO - 1, 0], [PHOTO - 1, PHOTO - 1], [0, PHOTO - 1]], np.float64)
    return float(np.linalg.norm(apply_h(h, box) - apply_h(truth, box), axis=1).max())


def _bearing(h: np.ndarray, direction_deg: float) -> float:
    """Bearing (north up) on the surroundings of a photo direction carried by `h`."""
    a = math.radians(direction_deg)
    v = h[:2, :2] @ np.array([math.cos(a), -math.sin(a)])
    return math.degrees(math.atan2(v[0], -v[1])) % 360.0


RATIOS = dense_search.ratios_between(2.2, 3.4)


@pytest.mark.parametrize("size", [(40, 56), (97, 64), (150, 150)])
def test_fft_correlation_is_opencvs_normalised_correlation(size):
    rng = np.random.default_rng(size[0])
    surr = (rng.random((SURR, SURR, 3)) * 255).astype(np.uint8)
    level = dense_search._Level(surr[:PHOTO, :PHOTO], surr, None, 256)
    template = rng.standard_normal(size + (2,)).astype(np.float32)
    spectrum_field = cv2.idft(level.spectrum, flags=cv2.DFT_SCALE)  # the field it correlates
    expected = cv2.matchTemplate(spectrum_field, template, cv2.TM_CCORR_NORMED)
    np.testing.assert_allclose(level.correlate(template), expected, atol=2e-4)


def test_coarse_to_fine_finds_what_the_full_search_finds(surroundings):
    truth = _true_h()
    photo = _photo(surroundings, truth)
    kw = {"ratios": RATIOS, "aspects": (0.8, 1.0, 1.25), "top": 3}
    fast = dense_search.search_poses(photo, surroundings, **kw)
    full = dense_search.search_poses(photo, surroundings, coarse_side=0, **kw)
    # the fine level tries the coarse angles' halves, off the full search's 5 deg grid: the
    # same place (to the scale step: 8 %), a peak as high; a start for dense_refine either way
    for best in (fast[0], full[0]):
        assert _corner_error(best.affine, truth) < 0.1 * SCALE * PHOTO
    assert fast[0].score >= 0.95 * full[0].score


def test_a_tilt_below_asifts_threshold_adds_no_pose(surroundings):
    photo = _photo(surroundings, _true_h())
    kw = {"ratios": RATIOS[:2], "aspects": (1.0,), "top": 3}
    plain = dense_search.search_poses(photo, surroundings, **kw)
    low = dense_search.search_poses(photo, surroundings, tilt_deg=(10.0, 20.0), azimuth_deg=45.0, **kw)
    assert [(p.score, p.angle_deg) for p in plain] == [(p.score, p.angle_deg) for p in low]
    assert all(p.tilt_stretch == 1.0 for p in low)


@pytest.mark.parametrize("direction", [30.0, 115.0])
def test_tilt_stretches_find_a_foreshortened_photo(surroundings, direction):
    """A photo 54 deg off nadir (foreshortened 1.7 along a direction off the square's axes):
    with the tilt, the best pose undoes the foreshortening, along the ground azimuth or
    ASIFT's nearest direction, and its peak stands out more than the axes-only search's."""
    factor = 1.7
    truth = _true_h(factor, direction)
    photo = _photo(surroundings, truth)
    tilt_deg = (math.degrees(math.acos(1 / factor)),) * 2
    kw = {"ratios": RATIOS, "aspects": dense_search.stretches(1.0), "top": 3}
    plain = dense_search.search_poses(photo, surroundings, **kw)
    azimuth = _bearing(truth, direction)
    along = dense_search.search_poses(photo, surroundings, tilt_deg=tilt_deg, azimuth_deg=azimuth, **kw)
    asift = dense_search.search_poses(photo, surroundings, tilt_deg=tilt_deg, **kw)
    patches = dense_refine.PhotoPatches(photo)
    for found in (along, asift):
        best = found[0]
        assert best.tilt_stretch == pytest.approx(factor, rel=0.01)
        assert best.score > plain[0].score
        # a starting point (to a scale step and, for ASIFT, a direction step: 10-13 % of the
        # footprint at a corner) that the refinement turns into the true homography
        fit = dense_refine.refine(patches, surroundings, best.affine)
        assert fit.homography is not None, fit.reason
        assert _corner_error(fit.homography, truth) < 3.0
    assert along[0].tilt_direction_deg == pytest.approx((90.0 - azimuth) % 360.0)
