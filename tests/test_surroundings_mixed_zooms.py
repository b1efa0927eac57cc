"""Candidate surroundings from an EarthLoc folder whose area is held at one fine zoom only.

The pipeline reads a zoom-11 block's 3x3 surroundings at 1536 px, i.e. at exactly zoom 10's
resolution; the folder used to stop at the zoom "needed" and return black when the area had
no coarser blocks (real photos then met black surroundings: 0 inliers, left for review).
"""

import numpy as np
import pytest
from PIL import Image

from astroapp.geo.sources.earthloc_folder import EarthLocFolderSource, format_earthloc_name
from astroapp.geo.tiles import block_bounds, block_footprint
from astroapp.pipeline.tiles import candidate_surroundings


def _block(folder, zoom, row, col, color):
    name = format_earthloc_name(block_footprint(zoom, row, col),
                                f"{zoom:02d}_{row:04d}_{col:04d}", 2021)
    sub = folder / f"2021_{zoom:02d}"
    sub.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((256, 256, 3), color, np.uint8)).save(sub / name, quality=95)


def test_zoom_11_surroundings_are_read_where_only_zoom_11_exists(tmp_path):
    colors = {}
    for a in range(3):
        for b in range(3):
            colors[(a, b)] = (40 + 60 * a, 40 + 60 * b, 120)
            _block(tmp_path, 11, 1086 + 4 * a, 664 + 4 * b, colors[(a, b)])
    _block(tmp_path, 9, 100, 100, (0, 0, 255))  # coarser zooms elsewhere in the database
    _block(tmp_path, 10, 200, 200, (0, 255, 0))
    src = EarthLocFolderSource(tmp_path)
    centre = next(r for r in src.tiles() if r.tile_id.startswith("11_1090_0668"))
    surr, grid = candidate_surroundings(src, centre, 512)
    assert surr.shape == (1536, 1536, 3) and grid.width == 1536
    for (a, b), color in colors.items():
        y, x = 256 + 512 * a, 256 + 512 * b
        assert tuple(surr[y, x].astype(int)) == pytest.approx(color, abs=6)


def test_coarse_coverage_still_spares_finer_reads(tmp_path):
    # A zoom-9 block covers the box: a coarse view of it does not read the zoom-11 block
    # inside it (its top-left quarter of the side), coarse views stay cheap.
    _block(tmp_path, 9, 271, 166, (200, 0, 0))
    _block(tmp_path, 11, 1084, 664, (0, 200, 0))
    src = EarthLocFolderSource(tmp_path)
    out = src.read_mercator(block_bounds(9, 271, 166), 64, 64)
    assert tuple(out[8, 8].astype(int)) == pytest.approx((200, 0, 0), abs=6)
    fine = src.read_mercator(block_bounds(11, 1084, 664), 1024, 1024)  # zoom 11's detail
    assert tuple(fine[512, 512].astype(int)) == pytest.approx((0, 200, 0), abs=6)
