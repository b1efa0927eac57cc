import math

import mercantile
import numpy as np
import pytest

from astroapp.geo.tiles import (
    WORLD,
    MercatorGrid,
    block_bounds,
    block_footprint,
    block_grid,
    block_id,
    blocks_covering,
    parse_block_id,
    surroundings,
)


def _tile_lon(col, zoom):
    return col / 2**zoom * 360.0 - 180.0


def _tile_lat(row, zoom):
    return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * row / 2**zoom))))


def test_block_footprint_matches_mercator_formula():
    zoom, row, col = 9, 266, 426
    fp = block_footprint(zoom, row, col)
    west, east = _tile_lon(col, zoom), _tile_lon(col + 4, zoom)
    north, south = _tile_lat(row, zoom), _tile_lat(row + 4, zoom)
    expected = [(west, north), (east, north), (east, south), (west, south)]
    assert np.allclose(fp.corners, expected, atol=1e-9)
    xmin, ymin, xmax, ymax = block_bounds(zoom, row, col)
    assert xmax - xmin == pytest.approx(4 * 2 * WORLD / 2**zoom)
    assert ymax - ymin == pytest.approx(xmax - xmin)
    assert block_id(zoom, row, col) == "09_0266_0426"
    assert parse_block_id("09_0266_0426") == (9, 266, 426)
    with pytest.raises(ValueError):
        parse_block_id("9-266-426")
    with pytest.raises(ValueError, match="outside"):
        block_bounds(3, 6, 6)  # a 4x4 block cannot start at row 6 of an 8x8 grid


def test_grid_pixel_lonlat_is_mercator_correct():
    grid = block_grid(9, 266, 426)
    assert (grid.width, grid.height) == (1024, 1024)
    # Tile corners inside the block, from mercantile, land on exact multiples of 256 px.
    for dr in range(5):
        for dc in range(5):
            ul = mercantile.ul(426 + dc, 266 + dr, 9)
            x, y = grid.lonlat_to_pixel(ul.lng, ul.lat)
            assert x == pytest.approx(256 * dc, abs=1e-6) and y == pytest.approx(256 * dr, abs=1e-6)
    # Non-linear in latitude: the middle pixel row is not the middle latitude.
    _, lat_mid = grid.pixel_to_lonlat(512, 512)
    north, south = _tile_lat(266, 9), _tile_lat(270, 9)
    assert abs(lat_mid - (north + south) / 2) > 1e-5
    assert lat_mid == pytest.approx(_tile_lat(268, 9), abs=1e-10)
    # Round trip, vectorised.
    xs, ys = np.meshgrid(np.linspace(0, 1024, 7), np.linspace(0, 1024, 5))
    lon, lat = grid.pixel_to_lonlat(xs, ys)
    x2, y2 = grid.lonlat_to_pixel(lon, lat)
    assert lon.shape == xs.shape
    assert np.allclose(x2, xs, atol=1e-6) and np.allclose(y2, ys, atol=1e-6)
    assert grid.transform @ (0, 0) == pytest.approx(grid.bounds_3857[::3])


def test_surroundings_triple_the_block_and_wrap_the_antimeridian():
    bounds, grid = surroundings(9, 266, 426, side=256)
    block = block_bounds(9, 266, 426)
    assert grid.width == grid.height == 768
    assert bounds[2] - bounds[0] == pytest.approx(3 * (block[2] - block[0]))
    # The block occupies the central third exactly.
    x0, y0 = grid.lonlat_to_pixel(*block_footprint(9, 266, 426).corners[0])
    assert (x0, y0) == pytest.approx((256, 256))
    # A block at the left edge of the world: the surroundings reach past the antimeridian.
    bounds, grid = surroundings(5, 10, 0, side=64)
    assert bounds[0] < -WORLD
    lon, _ = grid.pixel_to_lonlat(0.5, 96)
    assert 135 <= lon < 180  # wrapped east of the antimeridian (block is 45 deg wide)
    x, _ = grid.lonlat_to_pixel(lon, 0)
    assert x == pytest.approx(0.5)
    assert grid.footprint().crosses_antimeridian()


def test_blocks_covering_half_overlap():
    blocks = list(blocks_covering(block_bounds(9, 266, 426), 9))
    assert (266, 426) in blocks and len(blocks) == 9
    assert all(r % 2 == 0 and c % 2 == 0 for r, c in blocks)
    # Every point is covered by a block.
    for r, c in blocks:
        assert block_footprint(9, r, c).intersects(block_footprint(9, 266, 426))
    # At the edge of the world no block leaves the grid.
    edge = list(blocks_covering((-WORLD, WORLD - 1, -WORLD + 1, WORLD), 4))
    assert edge == [(0, 0)]


def test_grid_rejects_bad_sizes():
    with pytest.raises(ValueError):
        MercatorGrid((0, 0, 0, 1), 10, 10)
    with pytest.raises(ValueError):
        MercatorGrid((0, 0, 1, 1), 0, 10)


def test_mercator_closed_form_agrees_with_pyproj():
    """lonlat_to_mercator / mercator_to_lonlat (closed form: pyproj Transformers crash in Qt
    thread-pool threads) give what PROJ gives for EPSG:4326 <-> EPSG:3857, wrap included."""
    from pyproj import Transformer

    from astroapp.geo.tiles import MAX_LAT, lonlat_to_mercator, mercator_to_lonlat

    rng = np.random.default_rng(1)
    lon = np.concatenate([rng.uniform(-180, 180, 2000), [-180.0, 180.0, 190.0, -350.0]])
    lat = np.concatenate([rng.uniform(-MAX_LAT, MAX_LAT, 2000), [0.0, 10.0, -20.0, 85.0]])
    px, py = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True).transform(lon, lat)
    x, y = lonlat_to_mercator(lon, lat)
    assert np.abs(x - px).max() < 1e-6 and np.abs(y - py).max() < 1e-6
    plon, plat = Transformer.from_crs("EPSG:3857", "EPSG:4326", always_xy=True).transform(px, py)
    back_lon, back_lat = mercator_to_lonlat(px, py)
    dlon = (back_lon - plon + 180.0) % 360.0 - 180.0  # x = +WORLD wraps to -180
    assert np.abs(dlon).max() < 1e-9 and np.abs(back_lat - plat).max() < 1e-9
