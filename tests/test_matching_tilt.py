"""Tilt simulation (ASIFT): the stretches, and an oblique photo found only through them."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from test_matching_coregister import _texture

from astroapp.geo.tiles import MercatorGrid, block_bounds, surroundings_bounds
from astroapp.geo.viewing import ViewingHints
from astroapp.matching import PreparedPhoto, coregister, get_matcher, tilt
from astroapp.matching.geometry import apply_h, edge_corners


@pytest.mark.parametrize("angle", [0.0, 30.0, 90.0, 135.0])
def test_stretch_lengthens_one_direction_and_fits_the_square(angle):
    size, factor = 512, 2.0
    a = tilt.stretch(size, angle, factor)
    corners = apply_h(a, np.array([[0, 0], [size - 1, 0], [size - 1, size - 1], [0, size - 1]]))
    assert corners.min() >= -1e-6 and corners.max() <= size - 1 + 1e-6
    assert np.abs(corners).min() < 1e-6 or np.abs(corners - (size - 1)).min() < 1e-6  # fills it
    rad = math.radians(angle)
    along = np.array([math.cos(rad), -math.sin(rad)])  # on screen, y down
    across = np.array([-along[1], along[0]])
    m = a[:2, :2]
    assert np.linalg.norm(m @ along) / np.linalg.norm(m @ across) == pytest.approx(factor)
    assert abs(along @ m @ across) < 1e-9  # no shear between the two directions
    centre = (size - 1) / 2
    assert np.allclose(apply_h(a, np.array([[centre, centre]])), centre)


def test_stretch_factors_from_the_tilt():
    assert tilt.stretch_factors(None) == ()
    assert tilt.stretch_factors((0.0, 20.0)) == ()  # within SIFT's own tolerance
    (one,) = tilt.stretch_factors((49.0, 49.0))
    assert one == pytest.approx(1 / math.cos(math.radians(49.0)))
    wide = tilt.stretch_factors((45.0, 75.0))  # NASA's high-oblique code: up to its upper end
    assert len(wide) == 2 and wide[1] == tilt.MAX_STRETCH and wide[1] / wide[0] == pytest.approx(
        tilt.FACTOR_STEP)
    assert len(tilt.stretch_factors((15.0, 45.0))) == 1  # low oblique: the lower end is SIFT's
    assert max(tilt.stretch_factors((80.0, 80.0))) == tilt.MAX_STRETCH


def test_directions_closer_for_stronger_stretches():
    for tilt_deg, count in ((30.0, 3), (49.0, 4), (63.0, 6)):
        dirs = tilt.directions(1 / math.cos(math.radians(tilt_deg)))
        assert len(dirs) == count and dirs[0] == 0.0 and max(dirs) < 180.0
        assert np.allclose(np.diff(dirs), 180.0 / count)


@pytest.fixture(scope="module")
def oblique():
    """A photo of a 1536-px scene foreshortened 2.5 times along 35 degrees (66 deg off nadir:
    beyond what SIFT matches directly), and its true map photo px -> scene px."""
    surr = _texture(1536, seed=3)
    grid = MercatorGrid(surroundings_bounds(block_bounds(9, 200, 300)), 1536, 1536)
    # centres: the ground stretched along 35 deg, shrunk to the square, placed in the scene
    place = np.array([[0.9, 0, 470], [0, 0.9, 500], [0, 0, 1.0]])
    true_h = place @ tilt.stretch(600, 35.0, 2.5)
    photo = cv2.warpPerspective(surr, np.linalg.inv(true_h), (600, 600), flags=cv2.INTER_AREA)
    edge = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    return surr, grid, photo, edge @ true_h @ np.linalg.inv(edge)


def test_oblique_photo_found_through_the_tilt_hint(oblique):
    surr, grid, photo, true_h = oblique
    matcher = get_matcher("sift")
    prepared = PreparedPhoto(photo, matcher)
    plain = coregister(prepared, surr, grid=grid)
    assert not plain.accepted  # too foreshortened for SIFT: what the stretches are for
    hints = ViewingHints(tilt_deg=(66.0, 66.0))
    res = coregister(prepared, surr, grid=grid, hints=hints)
    assert res.accepted, (res.reason, res.iteration_inliers)
    # the homography maps the ORIGINAL photo's pixels (the stretch composed in)
    truth = apply_h(true_h, edge_corners((600, 600)))
    assert np.linalg.norm(res.corners_px - truth, axis=1).max() < 2.0
    pred = apply_h(true_h, res.correspondences[:, :2])
    assert np.median(np.linalg.norm(pred - res.correspondences[:, 2:], axis=1)) < 2.0


def test_near_nadir_hint_adds_no_stretch(oblique, monkeypatch):
    """A photo under MIN_TILT_DEG gets no stretched attempts (no time spent on them)."""
    surr, grid, photo, _ = oblique
    prepared = PreparedPhoto(photo, get_matcher("sift"))
    calls = []
    monkeypatch.setattr(PreparedPhoto, "warped", lambda self, a: calls.append(a))
    res = coregister(prepared, surr, grid=grid, hints=ViewingHints(tilt_deg=(10.0, 10.0)))
    assert not res.accepted and calls == []
