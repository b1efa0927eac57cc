"""One frame everywhere: a JPEG whose EXIF Orientation turns it a quarter (6, 8) is stored,
localized and exported in its displayed frame, so GeoTIFF GCPs land on the right place."""

from __future__ import annotations

import io
import types

import cv2
import numpy as np
import pytest
import rasterio
from PIL import Image, ImageOps
from test_matching_coregister import _texture

from astroapp.catalog import Catalog
from astroapp.catalog.importer import import_paths
from astroapp.catalog.orientation import orient_array, oriented_size, stored_window
from astroapp.catalog.photo_reader import read_photo
from astroapp.export import records_from_catalog
from astroapp.export.geotiff import export_geotiffs
from astroapp.geo.tiles import MercatorGrid, block_bounds, surroundings_bounds
from astroapp.matching import PreparedPhoto, coregister, get_matcher
from astroapp.pipeline.localize import _store

W, H = 800, 600  # the displayed (upright) photo: landscape
SURR = 1536
# photo px (edge coordinates) -> surroundings px: scale 0.9, centred
TRUE_H = np.array([[0.9, 0.0, SURR / 2 - 0.9 * W / 2], [0.0, 0.9, SURR / 2 - 0.9 * H / 2],
                   [0.0, 0.0, 1.0]])


def _jpeg_with_orientation(upright: np.ndarray, orientation: int) -> bytes:
    """Stored pixels turned so that applying `orientation` shows `upright`."""
    undo = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}[orientation]
    stored = Image.fromarray(upright).transpose(undo)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    stored.save(buf, "JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_strip_reads_match_pillows_exif_transpose(orientation):
    """orient_array of each stored_window gives exactly those rows of the upright image."""
    rng = np.random.default_rng(orientation)
    stored = rng.integers(0, 255, (7, 11, 3), dtype=np.uint8)  # 11 wide, 7 high
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(stored).save(buf, "PNG", exif=exif.tobytes())
    im = Image.open(io.BytesIO(buf.getvalue()))
    expected = np.asarray(ImageOps.exif_transpose(im))
    assert oriented_size(im) == (expected.shape[1], expected.shape[0])
    bands = np.moveaxis(stored, -1, 0)
    got = []
    for row in range(0, expected.shape[0], 3):
        rows = min(3, expected.shape[0] - row)
        c, r, w, h = stored_window(orientation, 11, 7, row, rows)
        got.append(orient_array(bands[:, r:r + h, c:c + w], orientation))
    assert np.array_equal(np.moveaxis(np.concatenate(got, axis=1), 0, -1), expected)


@pytest.mark.parametrize("orientation", [6, 8])
def test_quarter_turned_jpeg_import_localize_geotiff(tmp_path, orientation):
    surr = _texture(SURR, seed=3)
    grid = MercatorGrid(surroundings_bounds(block_bounds(9, 200, 300)), SURR, SURR)
    upright = cv2.warpPerspective(surr, np.linalg.inv(TRUE_H), (W, H), flags=cv2.INTER_LINEAR)
    roll = tmp_path / "roll"
    roll.mkdir()
    path = roll / f"ISS064-E-{orientation}.jpg"
    path.write_bytes(_jpeg_with_orientation(upright, orientation))
    with Catalog(tmp_path / "c.sqlite") as cat:
        import_paths(cat, [roll])
        (photo,) = cat.photos()
        assert (photo.width, photo.height) == (W, H)  # the displayed frame, not 600 x 800
        thumb = Image.open(io.BytesIO(cat.thumbnail(photo.id)))
        assert thumb.width > thumb.height
        # the pipeline's decode, frame and store step
        frame = read_photo(photo.path, min_side=1024)
        image = frame.rgb
        assert image.shape[:2] == (H, W)
        prepared = PreparedPhoto(image, get_matcher("sift"), 512,
                                 frame_size=frame.file_size)
        res = coregister(prepared, surr, grid=grid)
        assert res.accepted, res.reason
        cand = types.SimpleNamespace(tile_id="9_0300_0200", source_id="test", angle=0, rank=0)
        _store(cat, photo.id, res, cand, [], {"stage": "coregistration"}, {})
        cat.set_status(photo.id, "localized")
        records, skipped = records_from_catalog(cat)
    assert not skipped
    report = export_geotiffs(records, tmp_path / "out", gcp_grid=3, warped=True)
    assert not report.failed, report.failed
    gcp_tif = next(p for p in report.written if p.name.endswith("_gcps.tif"))
    with rasterio.open(gcp_tif) as ds:
        assert (ds.width, ds.height) == (W, H)
        pixels = np.moveaxis(ds.read([1, 2, 3]), 0, -1)
        gcps, _crs = ds.gcps
    # the written pixels are the displayed photo (JPEG decoders may differ by a level or two)
    assert np.abs(pixels.astype(int) - np.asarray(ImageOps.exif_transpose(Image.open(path)),
                                                   dtype=int)).mean() < 2.0
    # every GCP lands where the true mapping puts that displayed pixel
    res_deg = (grid.res_x / 111_320.0) * 3  # about 3 surroundings pixels
    for g in gcps:
        sx, sy, _ = TRUE_H @ np.array([g.col, g.row, 1.0])
        lon, lat = grid.pixel_to_lonlat(sx, sy)
        assert abs(g.x - float(lon)) < res_deg and abs(g.y - float(lat)) < res_deg, (g, lon, lat)
    top_left = next(g for g in gcps if g.row == 0 and g.col == 0)
    bottom_right = next(g for g in gcps if g.row == H and g.col == W)
    assert top_left.y > bottom_right.y and top_left.x < bottom_right.x  # north-west to south-east


@pytest.mark.parametrize("orientation", [6, 8])
def test_one_reader_gives_one_frame_at_any_size(tmp_path, orientation):
    """read_photo (full, display size), photo_header and open_photo_rows (the GeoTIFF's
    strips) all give the displayed frame of a quarter-turned JPEG, with the file scale."""
    from astroapp.catalog.photo_reader import open_photo_rows, photo_header

    upright = np.zeros((120, 80, 3), np.uint8)  # displayed: 80 wide, 120 high
    upright[:20] = (250, 30, 30)  # a red band at the top of the displayed frame
    path = tmp_path / "turned.jpg"
    path.write_bytes(_jpeg_with_orientation(upright, orientation))
    header = photo_header(path)
    assert header.stored_size == (120, 80) and header.file_size == (80, 120)
    full = read_photo(path)
    assert full.rgb.shape == (120, 80, 3) and full.scale_to_file == 1.0
    assert full.rgb[:15, :, 0].mean() > 200 and full.rgb[30:, :, 0].mean() < 40
    shown = read_photo(path, max_side=60)
    assert shown.rgb.shape == (60, 40, 3) and shown.scale_to_file == 2.0
    assert shown.rgb[:7, :, 0].mean() > 200
    with open_photo_rows(path) as rows:
        top = rows.read(0, 10)
    assert top.shape == (3, 10, 80)
    assert np.abs(np.moveaxis(top, 0, -1).astype(int) - full.rgb[:10].astype(int)).max() <= 8
