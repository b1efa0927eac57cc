"""Failures that used to be swallowed: a matcher's own TypeError inside coregistration."""

from __future__ import annotations

import io

import numpy as np
import pytest

from astroapp.geo.tiles import MercatorGrid, block_bounds, surroundings_bounds
from astroapp.matching import coregister
from astroapp.matching.coregister import accepts_mask
from astroapp.matching.sift import SiftMatcher


class _BuggyMaskedSift(SiftMatcher):
    """Takes a mask, but has a bug that raises TypeError inside."""

    def features(self, image, mask=None):
        if mask is not None:
            return super().features(image, mask=mask, octaves=4)  # no such parameter
        return super().features(image)


class _PlainSift(SiftMatcher):
    """A matcher whose features() takes no mask at all."""

    def features(self, image):
        return super().features(image)


def _scene():
    rng = np.random.default_rng(0)
    surr = (rng.random((96, 96, 3)) * 255).astype(np.uint8).repeat(8, 0).repeat(8, 1)
    grid = MercatorGrid(surroundings_bounds(block_bounds(9, 200, 300)), 768, 768)
    return surr[256:512, 256:512].copy(), surr, grid


def test_a_matchers_own_type_error_is_not_hidden():
    photo, surr, grid = _scene()
    assert accepts_mask(_BuggyMaskedSift(name="sift")) and not accepts_mask(_PlainSift(name="sift"))
    with pytest.raises(TypeError):
        coregister(photo, surr, grid=grid, matcher=_BuggyMaskedSift(name="sift"), size=256,
                   iterations=1)
    res = coregister(photo, surr, grid=grid, matcher=_PlainSift(name="sift"), size=256,
                     iterations=1)
    assert res.inliers >= 0  # runs without a mask parameter


def test_a_broken_orientation_tag_is_logged_and_the_same_everywhere(tmp_path, caplog):
    """Out-of-range EXIF orientation: the thumbnail, the catalogue size and the pipeline's
    decode all keep the stored pixels, and the log says why (it used to pass silently)."""
    import logging

    from PIL import Image

    from astroapp.catalog import Catalog
    from astroapp.catalog.importer import import_paths
    from astroapp.catalog.photo_reader import read_photo

    exif = Image.Exif()
    exif[0x0112] = 9
    roll = tmp_path / "roll"
    roll.mkdir()
    Image.new("RGB", (60, 40), (200, 10, 10)).save(roll / "odd.jpg", exif=exif.tobytes())
    caplog.set_level(logging.WARNING, logger="astroapp.catalog.orientation")
    with Catalog(tmp_path / "c.sqlite") as cat:
        import_paths(cat, [roll], workers=1)
        (photo,) = cat.photos()
        thumb = Image.open(io.BytesIO(cat.thumbnail(photo.id)))
    assert (photo.width, photo.height) == (60, 40) and thumb.width > thumb.height
    assert read_photo(photo.path).rgb.shape[:2] == (40, 60)
    assert any("orientation 9 out of range" in r.getMessage() for r in caplog.records)
