"""GeoTIFF exports (GCPs + warped) of a real catalogue, read back with gdalinfo and rasterio."""

from __future__ import annotations

import json
import shutil
import subprocess
import warnings

import cv2
import numpy as np
import pytest
import rasterio
import rasterio.features
import shapely
from export_fixtures import MARKS, H, W, build_catalog
from rasterio.errors import NotGeoreferencedWarning
from shapely.geometry import Polygon, shape

from astroapp.catalog import Catalog
from astroapp.cli import main
from astroapp.export import export_records, records_from_catalog
from astroapp.geo.footprint import unwrap_lons

LOCALIZED = ("ISS064-E-358", "ISS030-E-12345", "ISS045-E-100", "ISS050-E-7")


@pytest.fixture(scope="module")
def tiffs(tmp_path_factory):
    root = tmp_path_factory.mktemp("export_geotiff")
    cat, truth = build_catalog(root)
    out = root / "tif"
    assert main(["--catalog", str(cat), "export", "--format", "geotiff", str(out)]) == 0
    return cat, truth, out


def gdalinfo(path) -> dict:
    exe = shutil.which("gdalinfo")
    assert exe, "GDAL's gdalinfo is required (Debian: apt-get install gdal-bin)"
    res = subprocess.run([exe, "-json", "-mdd", "all", str(path)], capture_output=True,
                         text=True, check=True)
    return json.loads(res.stdout)


def test_one_pair_per_localized_photo(tiffs):
    _, _, out = tiffs
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([f"{n}_gcps.tif" for n in LOCALIZED]
                           + [f"{n}_warped.tif" for n in LOCALIZED])


def test_gcp_geotiff(tiffs):
    _, truth, out = tiffs
    t = truth["ISS064-E-358"]
    info = gdalinfo(out / "ISS064-E-358_gcps.tif")
    assert info["size"] == [W, H]
    assert "geoTransform" not in info  # an oblique photo: GCPs only
    gcps = info["gcps"]
    assert 'ID["EPSG",4326]' in gcps["coordinateSystem"]["wkt"]
    assert len(gcps["gcpList"]) == 13 * 13
    px = np.array([[g["pixel"], g["line"]] for g in gcps["gcpList"]])
    ll = np.array([[g["x"], g["y"]] for g in gcps["gcpList"]])
    assert px.min(axis=0).tolist() == [0, 0] and px.max(axis=0).tolist() == [W, H]
    lon, lat = t.pixel_to_lonlat(px[:, 0], px[:, 1])
    np.testing.assert_allclose(ll[:, 0], lon, atol=1e-7)
    np.testing.assert_allclose(ll[:, 1], lat, atol=1e-7)
    # Tiled, compressed, RGB; the original pixels untouched.
    struct = info["metadata"]["IMAGE_STRUCTURE"]
    assert struct["COMPRESSION"] == "DEFLATE"
    assert [b["block"] for b in info["bands"]] == [[256, 256]] * 3
    assert [b["colorInterpretation"] for b in info["bands"]] == ["Red", "Green", "Blue"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # the JPEG has no georef
        with rasterio.open(t.path) as src, rasterio.open(out / "ISS064-E-358_gcps.tif") as tif:
            np.testing.assert_array_equal(src.read(), tif.read())
    tags = info["metadata"][""]
    assert tags["REGISTRATION_METHOD"] == "manual-reviewed"
    assert tags["ACQUISITION_TIME"] == "2021-03-04T05:06:07.000Z"
    assert tags["TIFFTAG_DATETIME"] == "2021:03:04 05:06:07"
    assert tags["REFERENCE_IMAGERY"] == "sentinel2-2021 / tile 10_0001_0100@2021"
    assert tags["PHOTO_ID"] == "ISS064-E-358" and tags["REVIEWER"] == "alice"
    assert tags["TRANSFORM"].startswith("projective")


def test_registration_tags_fit_error(tiffs):
    cat, truth, out = tiffs
    t = truth["ISS050-E-7"]
    tags = gdalinfo(out / "ISS050-E-7_warped.tif")["metadata"][""]
    assert tags["REGISTRATION_METHOD"] == "automatic"  # its accept was undone
    with Catalog(cat) as catalog:
        corr = np.array(catalog.latest_localization(t.photo_id).correspondences)
    # Independently: lon/lat -> surroundings px (the grid) -> photo px (inverse homography).
    sx, sy = t.grid.lonlat_to_pixel(corr[:, 2], corr[:, 3])
    back = cv2.perspectiveTransform(np.column_stack([sx, sy]).reshape(-1, 1, 2),
                                    np.linalg.inv(t.homography)).reshape(-1, 2)
    rms = float(np.sqrt(np.mean(np.sum((back - corr[:, :2]) ** 2, axis=1))))
    assert 0.5 < rms < 5.0  # the fixture's 0.8 px match noise, seen from the photo
    assert float(tags["FIT_ERROR_RMS_PX"]) == pytest.approx(rms, abs=1e-3)
    gsd = np.sqrt(t.footprint.area_km2() * 1e6 / (W * H))
    assert float(tags["POSITION_UNCERTAINTY_M"]) == pytest.approx(rms * gsd, rel=1e-2)


def _to_pixel(transform, lon, lat):
    """Fractional (col, row) on a north-up grid."""
    return ((np.asarray(lon) - transform.c) / transform.a,
            (np.asarray(lat) - transform.f) / transform.e)


def _mask_polygon(ds) -> shapely.Geometry:
    alpha = ds.read(4)
    shapes = [shape(g) for g, v in rasterio.features.shapes(
        (alpha > 0).astype(np.uint8), transform=rasterio.Affine.identity()) if v == 1]
    return shapely.unary_union(shapes)


@pytest.mark.parametrize("nasa", ["ISS064-E-358", "ISS030-E-12345"])
def test_warped_geotiff_matches_footprint(tiffs, nasa):
    _, truth, out = tiffs
    t = truth[nasa]
    path = out / f"{nasa}_warped.tif"
    info = gdalinfo(path)
    assert 'ID["EPSG",4326]' in info["coordinateSystem"]["wkt"]
    gt = info["geoTransform"]
    assert gt[2] == 0 and gt[4] == 0 and gt[5] == -gt[1]  # north-up, square pixels
    assert [b["colorInterpretation"] for b in info["bands"]] == ["Red", "Green", "Blue", "Alpha"]
    assert info["metadata"]["IMAGE_STRUCTURE"]["COMPRESSION"] == "DEFLATE"
    assert info["bands"][0]["block"] == [256, 256]
    res = gt[1]
    lons = np.array(unwrap_lons([c[0] for c in t.footprint.corners]))
    lats = np.array([c[1] for c in t.footprint.corners])
    if nasa == "ISS030-E-12345":
        assert lons.max() > 180.0  # continuous longitudes across the antimeridian
    with rasterio.open(path) as ds:
        # Raster extent = footprint's extent, within one output pixel.
        b = ds.bounds
        assert abs(b.left - lons.min()) <= res and abs(b.top - lats.max()) <= res
        assert abs(b.right - lons.max()) <= res and abs(b.bottom - lats.min()) <= res
        # The alpha mask is the footprint: each corner within one pixel of the mask.
        mask = _mask_polygon(ds)
        cols, rows = _to_pixel(ds.transform, lons, lats)
        for c, r in zip(cols, rows, strict=True):
            assert mask.distance(shapely.Point(c, r)) <= 1.0
        truth_poly = Polygon(np.column_stack([cols, rows]))
        assert mask.symmetric_difference(truth_poly).area / truth_poly.area < 0.02
        # Interior geometry: each bright mark lands where the true mapping puts it.
        red = ds.read(1)
        n, _, _, centres = cv2.connectedComponentsWithStats((red > 200).astype(np.uint8))
        found = centres[1:] + 0.5
        lon, lat = t.pixel_to_lonlat([m[0] for m in MARKS], [m[1] for m in MARKS])
        lon = np.where(lon < lons.min() - 180, lon + 360, lon)
        ex, ey = _to_pixel(ds.transform, lon, lat)
        for x, y in zip(ex, ey, strict=True):
            assert np.hypot(found[:, 0] - x, found[:, 1] - y).min() < 0.5


def test_failed_photo_does_not_stop_the_batch(tiffs, tmp_path):
    cat, truth, _ = tiffs
    with Catalog(cat) as catalog:
        records, _ = records_from_catalog(catalog, status=["accepted", "rejected"])
    moved = truth["ISS045-E-100"].path.with_suffix(".moved")
    truth["ISS045-E-100"].path.rename(moved)
    try:
        result = export_records(records, "geotiff", tmp_path / "tif")
    finally:
        moved.rename(truth["ISS045-E-100"].path)
    assert [name for name, _ in result.failed] == ["ISS045-E-100.jpg"]
    assert "cannot read" in result.failed[0][1]
    assert sorted(p.name for p in (tmp_path / "tif").iterdir()) == [
        "ISS064-E-358_gcps.tif", "ISS064-E-358_warped.tif"]


def test_large_photo_streams_with_overviews(tmp_path, monkeypatch):
    """Pixels go through in row strips; big rasters get internal overviews."""
    from PIL import Image

    from astroapp.export import ExportRecord, geotiff
    from astroapp.geo.footprint import Footprint

    w, h = 1300, 1000
    rng = np.random.default_rng(7)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    rec = ExportRecord(catalog_id=1, file_name="big.png", path=tmp_path / "big.png",
                       width=w, height=h,
                       footprint=Footprint(((10.0, 46.0), (12.5, 46.6), (12.9, 44.8),
                                            (10.3, 44.5))))
    monkeypatch.setattr(geotiff, "STRIP_ROWS", 256)
    strips = []
    gcp = geotiff.write_gcp_geotiff(rec, tmp_path / "big_gcps.tif", on_strip=strips.append)
    assert strips == [0, 256, 512, 768]
    warped = geotiff.write_warped_geotiff(rec, gcp, tmp_path / "big_warped.tif")
    for path in (gcp, warped):
        info = gdalinfo(path)
        overviews = info["bands"][0].get("overviews", [])
        assert overviews and overviews[0]["size"] == [
            (info["size"][0] + 1) // 2, (info["size"][1] + 1) // 2]
    with rasterio.open(gcp) as ds:
        np.testing.assert_array_equal(ds.read().transpose(1, 2, 0),
                                      np.asarray(Image.open(tmp_path / "big.png")))
