import math
import re

import numpy as np
import pytest
import rasterio
from PIL import Image
from pyproj import Transformer
from rasterio.transform import from_origin

from astroapp.geo.sources import SourceError, TileSource, open_source
from astroapp.geo.sources.bluemarble import BlueMarbleSource
from astroapp.geo.sources.earthloc_folder import (
    EarthLocFolderSource,
    format_earthloc_name,
    parse_earthloc_name,
)
from astroapp.geo.sources.raster import RasterSource
from astroapp.geo.tiles import (
    WORLD,
    block_bounds,
    block_footprint,
    block_grid,
    surroundings,
)

# Zoom 9 block 09_0266_0426 (Lombok/Sumbawa), written the way EarthLoc writes names:
# corners BL, TL, TR, BR, lat first, 5 decimals.
NAME_09_0266_0426 = ("@-9.79568@119.53125@-7.01367@119.53125@-7.01367@122.34375@-9.79568"
                     "@122.34375@09_0266_0426@2021@-8.40467@120.93750@95313@0@.jpg")


def _lon(col, z):
    return col / 2**z * 360 - 180


def _lat(row, z):
    return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * row / 2**z))))


def test_earthloc_name_matches_web_mercator():
    parsed = parse_earthloc_name(NAME_09_0266_0426)
    west, east, north, south = _lon(426, 9), _lon(430, 9), _lat(266, 9), _lat(270, 9)
    expected = [(west, north), (east, north), (east, south), (west, south)]  # TL, TR, BR, BL
    assert np.allclose(parsed.footprint.corners, expected, atol=1e-4)
    assert np.allclose(block_footprint(9, 266, 426).corners, expected, atol=1e-9)
    assert parsed.image_id == "09_0266_0426" and parsed.timestamp == "2021"
    assert parsed.nadir == pytest.approx((120.9375, -8.40467))
    assert parsed.orientation == 0
    # Round trip through our writer.
    again = parse_earthloc_name(format_earthloc_name(block_footprint(9, 266, 426),
                                                     "09_0266_0426", 2021))
    assert np.allclose(again.footprint.corners, expected, atol=1e-5)
    for bad in ["photo.jpg", "@1@2@3@.jpg", "@a@b@c@d@e@f@g@h@09_0266_0426@2021@0@0@0@0@.jpg"]:
        with pytest.raises(ValueError):
            parse_earthloc_name(bad)


def _write_block(folder, zoom, row, col, year, color, size=64):
    name = format_earthloc_name(block_footprint(zoom, row, col),
                                f"{zoom:02d}_{row:04d}_{col:04d}", year)
    sub = folder / f"{year}_{zoom:02d}"
    sub.mkdir(parents=True, exist_ok=True)
    img = np.zeros((size, size, 3), np.uint8)
    img[:] = color
    img[: size // 2, : size // 2] = (255, 255, 255)  # top-left quadrant white: orientation
    Image.fromarray(img).save(sub / name, quality=95)
    return sub / name


def test_earthloc_folder_loads_good_files_and_names_bad_ones(tmp_path):
    _write_block(tmp_path, 9, 266, 426, 2021, (200, 0, 0))
    _write_block(tmp_path, 9, 266, 430, 2021, (0, 200, 0))
    _write_block(tmp_path, 9, 266, 426, 2019, (0, 0, 200))
    (tmp_path / "junk").mkdir()
    bad_name = tmp_path / "junk" / "not_a_tile.jpg"
    Image.new("RGB", (8, 8)).save(bad_name)
    wrong = tmp_path / "junk" / NAME_09_0266_0426.replace("09_0266_0426", "09_0266_0428")
    Image.new("RGB", (8, 8)).save(wrong)
    query = tmp_path / "junk" / NAME_09_0266_0426.replace("@2021@", "@20210304@")
    Image.new("RGB", (8, 8)).save(query)

    src = open_source(tmp_path)
    assert isinstance(src, EarthLocFolderSource) and isinstance(src, TileSource)
    ids = sorted(r.tile_id for r in src.tiles())
    assert ids == ["09_0266_0426@2019", "09_0266_0426@2021", "09_0266_0430@2021"]
    assert len(src.errors) == 3
    assert any("not_a_tile.jpg" in e for e in src.errors)
    assert any("disagree" in e and "09_0266_0428" in e for e in src.errors)
    assert any("query photo" in e for e in src.errors)
    ref = next(r for r in src.tiles() if r.tile_id == "09_0266_0426@2021")
    assert (ref.zoom, ref.row, ref.col, ref.year) == (9, 266, 426, 2021)
    assert np.allclose(ref.footprint.corners, block_footprint(9, 266, 426).corners, atol=1e-5)
    img = src.load(ref)
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    assert tuple(img[48, 48].astype(int)) == pytest.approx((200, 0, 0), abs=6)
    assert src.load(ref, 32).shape == (32, 32, 3)

    # Stitch: both blocks side by side, newest year wins, white quadrants where expected.
    xmin, ymin, _, ymax = block_bounds(9, 266, 426)
    xmax = block_bounds(9, 266, 430)[2]
    out = src.read_mercator((xmin, ymin, xmax, ymax), 128, 64)
    assert tuple(out[48, 48].astype(int)) == pytest.approx((200, 0, 0), abs=8)
    assert tuple(out[48, 112].astype(int)) == pytest.approx((0, 200, 0), abs=8)
    assert out[8, 8].min() > 240 and out[8, 72].min() > 240


def test_utm_geotiff_blocks_agree_with_rasterio_transform(tmp_path):
    # 1200 x 1200 px at 100 m in UTM 33N (~120 km square near Rome), a smooth coloured pattern
    # that is a known function of easting/northing.
    crs = "EPSG:32633"
    west, north, res, n = 250_000.0, 4_700_000.0, 100.0, 1200
    e = west + (np.arange(n) + 0.5) * res
    nn = north - (np.arange(n) + 0.5) * res
    ee, nnn = np.meshgrid(e, nn)
    bands = np.stack([
        (ee - west) / (n * res) * 255,
        (north - nnn) / (n * res) * 255,
        127.5 + 127 * np.sin((ee + nnn) / 7_000.0),
    ]).astype(np.uint8)
    path = tmp_path / "utm.tif"
    with rasterio.open(path, "w", driver="GTiff", width=n, height=n, count=3, dtype="uint8",
                       crs=crs, transform=from_origin(west, north, res, res),
                       tiled=True, blockxsize=256, blockysize=256) as dst:
        dst.write(bands)
    src = open_source(path)
    assert isinstance(src, RasterSource) and src.errors == []
    refs = list(src.tiles())
    assert refs and {r.zoom for r in refs} <= set(src.zooms)
    assert src.native_zoom == 10  # 100 m at 42 deg N is ~135 m in Mercator -> zoom 10
    to_utm = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    inverse = ~from_origin(west, north, res, res)
    rng = np.random.default_rng(0)
    for ref in refs:
        assert np.allclose(ref.footprint.corners,
                           block_footprint(ref.zoom, ref.row, ref.col).corners)
        img = src.load(ref, 256)
        grid = block_grid(ref.zoom, ref.row, ref.col, px=256)
        px = rng.uniform(8, 248, size=(40, 2))
        lon, lat = grid.pixel_to_lonlat(px[:, 0], px[:, 1])
        ux, uy = to_utm.transform(lon, lat)
        cols, rows = inverse @ (np.asarray(ux), np.asarray(uy))
        inside = (cols > 2) & (cols < n - 3) & (rows > 2) & (rows < n - 3)
        assert inside.sum() >= 10
        for (x, y), c, r in zip(px[inside], cols[inside], rows[inside], strict=True):
            expected = bands[:2, int(r), int(c)].astype(int)  # the ramps: robust to sampling
            got = img[int(y), int(x), :2].astype(int)
            assert np.abs(got - expected).max() <= 6, (ref.tile_id, x, y)
    # Outside the raster: black, not an error.
    far = block_bounds(10, 100, 100)
    assert src.read_mercator(far, 32, 32).max() == 0


def test_raster_without_crs_is_a_clear_error(tmp_path):
    path = tmp_path / "nocrs.tif"
    with rasterio.open(path, "w", driver="GTiff", width=16, height=16, count=1,
                       dtype="uint8") as dst:
        dst.write(np.zeros((1, 16, 16), np.uint8))
    with pytest.raises(SourceError, match=r"nocrs\.tif.*no CRS"):
        open_source(path)
    with pytest.raises(SourceError, match="no such file"):
        open_source(tmp_path / "missing.tif")


def test_bluemarble_blocks_and_any_extent():
    src = open_source("bluemarble")
    assert isinstance(src, BlueMarbleSource) and src.source_id == "bluemarble"
    refs = list(src.tiles())
    assert len(refs) == len(src)
    assert {r.zoom for r in refs} == {6, 7, 8} and all(r.year == 2004 for r in refs)
    assert all(r.row % 2 == 0 and r.col % 2 == 0 for r in refs)
    # Open ocean and the far north/south (beyond the ISS's reach) are left out ...
    per_zoom = {z: sum(r.zoom == z for r in refs) for z in (6, 7, 8)}
    assert 0.1 * 31**2 < per_zoom[6] < 0.5 * 31**2 and per_zoom[7] > 2 * per_zoom[6]
    assert (6, 30, 2) not in {(r.zoom, r.row, r.col) for r in refs}  # mid-Pacific
    assert all(abs(lat) < 70 for r in refs for _, lat in r.footprint.corners)
    # ... while every land place a photo can show is in the database at every zoom.
    for lon, lat in ((10.0, 24.0), (-100.0, 40.0), (135.0, -25.0), (78.0, 20.0), (-60.0, -10.0)):
        for zoom in (6, 7, 8):
            assert any(r.zoom == zoom and r.footprint.contains(lon, lat) for r in refs), (lon, lat, zoom)
    sahara = next(r for r in refs if r.zoom == 6 and r.footprint.contains(10.0, 24.0))
    img = src.load(sahara, 256)
    assert img.shape == (256, 256, 3) and img.dtype == np.uint8
    r, g, b = img.reshape(-1, 3).mean(0)
    assert r > b + 30  # desert, not ocean
    pacific = src.read_mercator(block_bounds(6, 30, 2), 64, 64)  # mid-Pacific: blue
    assert pacific[..., 2].mean() > pacific[..., 0].mean() + 20
    # read_mercator of a block equals load (same grid).
    assert np.abs(src.read_mercator(block_bounds(6, sahara.row, sahara.col), 256, 256)
                  .astype(int) - img.astype(int)).mean() < 1.0
    # Across the antimeridian the two halves are the two ends of the world.
    bounds, grid = surroundings(5, 12, 0, side=64)
    assert bounds[0] < -WORLD
    wrapped = src.read_mercator(bounds, grid.width, grid.height)
    left = src.read_mercator((bounds[0] + 2 * WORLD, bounds[1], WORLD, bounds[3]), 64, 192)
    assert np.abs(wrapped[:, :64].astype(int) - left.astype(int)).mean() < 2.0
    # Beyond the Mercator latitude limit: black.
    polar = src.read_mercator((-1e6, WORLD, 1e6, WORLD + 2e6), 16, 16)
    assert polar.max() == 0


def test_sixteen_bit_single_band_raster_is_stretched_to_rgb(tmp_path):
    path = tmp_path / "dem.tif"
    data = np.tile(np.linspace(1000, 5000, 512, dtype=np.uint16), (512, 1))
    with rasterio.open(path, "w", driver="GTiff", width=512, height=512, count=1,
                       dtype="uint16", crs="EPSG:4326", nodata=0,
                       transform=from_origin(20.0, 10.0, 0.01, 0.01)) as dst:
        dst.write(data[None])
    src = RasterSource(path, year=2020)
    refs = list(src.tiles())
    assert refs and all(r.tile_id.endswith("@2020") and r.year == 2020 for r in refs)
    img = src.load(refs[0], 64)
    assert img.dtype == np.uint8 and img.shape == (64, 64, 3)
    assert np.array_equal(img[..., 0], img[..., 1])  # grey replicated
    full = src.read_mercator(src._footprint_3857.bounds, 128, 128)
    assert full[64, 5, 0] < 40 and full[64, 122, 0] > 215  # 2-98 % stretch of the ramp


def test_earthloc_folder_reads_across_the_antimeridian(tmp_path):
    _write_block(tmp_path, 4, 6, 12, 2020, (200, 0, 0))  # east edge of the world
    _write_block(tmp_path, 4, 6, 0, 2020, (0, 200, 0))  # west edge
    src = EarthLocFolderSource(tmp_path)
    xmin, ymin, xmax, ymax = block_bounds(4, 6, 12)
    width = xmax - xmin
    out = src.read_mercator((xmin + width / 2, ymin, xmax + width / 2, ymax), 64, 64)
    assert tuple(out[48, 16].astype(int)) == pytest.approx((200, 0, 0), abs=8)
    assert tuple(out[48, 48].astype(int)) == pytest.approx((0, 200, 0), abs=8)


def test_unreadable_earthloc_image_names_the_file_and_the_rest_still_reads(tmp_path):
    good = _write_block(tmp_path, 9, 266, 426, 2021, (200, 0, 0))
    bad = _write_block(tmp_path, 9, 266, 430, 2021, (0, 200, 0))
    bad.write_bytes(b"not a jpeg at all")
    src = EarthLocFolderSource(tmp_path)
    assert len(src) == 2 and src.errors == []  # names are fine; pixels are read lazily
    refs = {r.tile_id: r for r in src.tiles()}
    with pytest.raises(OSError, match=re.escape(str(bad))):
        src.load(refs["09_0266_0430@2021"])
    xmin, ymin, _, ymax = block_bounds(9, 266, 426)
    xmax = block_bounds(9, 266, 430)[2]
    out = src.read_mercator((xmin, ymin, xmax, ymax), 128, 64)
    assert tuple(out[48, 48].astype(int)) == pytest.approx((200, 0, 0), abs=8)
    assert out[48, 112].max() == 0
    assert len(src.errors) == 1 and str(bad) in src.errors[0]
    assert good.exists()


def _solid_geotiff(path, west, north, color, n=500, res=0.01, crs="EPSG:4326"):
    with rasterio.open(path, "w", driver="GTiff", width=n, height=n, count=3, dtype="uint8",
                       crs=crs, transform=from_origin(west, north, res, res)) as dst:
        dst.write(np.broadcast_to(np.array(color, np.uint8)[:, None, None], (3, n, n)))


def test_folder_of_rasters_is_one_mosaic_and_names_bad_files(tmp_path):
    from astroapp.geo.sources.raster import RasterFolderSource

    _solid_geotiff(tmp_path / "a_west.tif", 0.0, 45.0, (200, 0, 0))
    _solid_geotiff(tmp_path / "b_east.tif", 5.0, 45.0, (0, 200, 0))
    with rasterio.open(tmp_path / "c_nocrs.tif", "w", driver="GTiff", width=8, height=8,
                       count=1, dtype="uint8") as dst:
        dst.write(np.zeros((1, 8, 8), np.uint8))
    src = open_source(tmp_path)
    assert isinstance(src, RasterFolderSource)
    assert len(src.errors) == 1 and "c_nocrs.tif" in src.errors[0]
    refs = list(src.tiles())
    assert refs
    # A block straddling lon 5 shows the west raster on its left, the east one on its right.
    ref = next(r for r in refs
               if r.footprint.bbox()[0] < 4.5 and r.footprint.bbox()[2] > 5.5
               and r.footprint.bbox()[1] < 42 < r.footprint.bbox()[3])
    img = src.load(ref, 256)
    grid = block_grid(ref.zoom, ref.row, ref.col, px=256)
    for lon, color in ((4.5, (200, 0, 0)), (5.5, (0, 200, 0))):
        x, y = grid.lonlat_to_pixel(lon, 42.0)
        assert tuple(img[int(y), int(x)].astype(int)) == pytest.approx(color, abs=3)
    x, _ = grid.lonlat_to_pixel(-1.0, 42.0)
    if x >= 0:
        assert img[int(grid.lonlat_to_pixel(-1.0, 42.0)[1]), int(x)].max() == 0
