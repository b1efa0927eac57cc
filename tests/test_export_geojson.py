"""GeoJSON and CSV exports of a real catalogue, read back with GDAL (ogrinfo, pyogrio)."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess

import numpy as np
import pyogrio
import pytest
import shapely
from export_fixtures import METHOD, build_catalog
from pyproj import Geod
from shapely.geometry import shape

from astroapp import __version__
from astroapp.catalog import Catalog
from astroapp.cli import main
from astroapp.export.geojson import collection_bbox

GEOD = Geod(ellps="WGS84")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export_geojson")
    cat, truth = build_catalog(root)
    out = root / "out"
    assert main(["--catalog", str(cat), "export", str(out / "all.geojson")]) == 0
    assert main(["--catalog", str(cat), "export", "--status", "accepted",
                 str(out / "accepted.geojson")]) == 0
    assert main(["--catalog", str(cat), "export", "-f", "csv", str(out / "all.csv")]) == 0
    ids = f"{truth['ISS064-E-358'].photo_id},{truth['ISS045-E-100'].photo_id}"
    assert main(["--catalog", str(cat), "export", "--ids", ids, str(out / "ids.geojson")]) == 0
    return cat, truth, out


def _features(path):
    doc = json.loads(path.read_text(encoding="utf-8"))
    return doc, {f["properties"]["photo_id"]: f for f in doc["features"]}


def _ogrinfo() -> str:
    exe = shutil.which("ogrinfo")
    assert exe, "GDAL's ogrinfo is required (Debian: apt-get install gdal-bin)"
    return exe


def test_rfc7946_structure_winding_and_precision(exported):
    _, _, out = exported
    text = (out / "all.geojson").read_text(encoding="utf-8")
    doc, feats = _features(out / "all.geojson")
    assert doc["type"] == "FeatureCollection"
    assert "crs" not in doc and all("crs" not in f for f in doc["features"])
    # The never-localized photo is not exported; the other four are.
    assert sorted(feats) == ["ISS030-E-12345", "ISS045-E-100", "ISS050-E-7", "ISS064-E-358"]
    for f in doc["features"]:
        geom = shape(f["geometry"])
        assert geom.is_valid
        for poly in getattr(geom, "geoms", [geom]):
            assert poly.exterior.is_ccw, f"{f['id']}: exterior ring must be counter-clockwise"
            assert all(not ring.is_ccw for ring in poly.interiors)
            xs, ys = poly.exterior.xy
            assert min(xs) >= -180 and max(xs) <= 180 and min(ys) >= -90 and max(ys) <= 90
    decimals = [len(m) for m in re.findall(r"-?\d+\.(\d+)", text.split('"properties"')[0])]
    numbers = re.findall(r"\[\s*(-?\d+(?:\.\d+)?),\s*(-?\d+(?:\.\d+)?)\s*\]", text)
    assert numbers and max(decimals) <= 7
    for x, y in numbers:
        for v in (x, y):
            assert len(v.split(".")[1]) <= 7 if "." in v else True


def test_antimeridian_split_and_bboxes(exported):
    _, truth, out = exported
    doc, feats = _features(out / "all.geojson")
    fiji = feats["ISS030-E-12345"]
    geom = shape(fiji["geometry"])
    assert fiji["geometry"]["type"] == "MultiPolygon" and len(geom.geoms) == 2
    east = [p for p in geom.geoms if p.bounds[2] == 180.0]
    west = [p for p in geom.geoms if p.bounds[0] == -180.0]
    assert len(east) == 1 and len(west) == 1, "one part ends at +180, the other starts at -180"
    w, s, e, n = fiji["bbox"]
    assert w > e, "bbox across the antimeridian has west > east"
    assert 178.0 < w < 180.0 and -180.0 < e < -178.0
    assert fiji["bbox"] == pytest.approx(list(truth["ISS030-E-12345"].footprint.bbox()), abs=1e-7)
    # Same area as the true (unsplit) footprint.
    true_area = truth["ISS030-E-12345"].footprint.area_km2()
    area = sum(abs(GEOD.geometry_area_perimeter(p)[0]) for p in geom.geoms) / 1e6
    assert area == pytest.approx(true_area, rel=1e-3)
    # Ordinary features: bbox = geometry bounds; collection bbox covers all, crossing 180.
    alps = feats["ISS064-E-358"]
    assert alps["bbox"] == pytest.approx(list(shape(alps["geometry"]).bounds), abs=1e-7)
    assert doc["bbox"] == collection_bbox([f["bbox"] for f in doc["features"]])
    cw, cs, ce, cn = doc["bbox"]
    assert cs == pytest.approx(min(f["bbox"][1] for f in doc["features"]))
    assert cn == pytest.approx(max(f["bbox"][3] for f in doc["features"]))
    # Features near -96, 10, 105 and 180: the smallest cover leaves out the largest gap
    # (the Atlantic, Texas to the Alps), so it runs east from the Alps, across the
    # antimeridian, to Texas.
    assert cw == pytest.approx(feats["ISS064-E-358"]["bbox"][0])
    assert ce == pytest.approx(feats["ISS045-E-100"]["bbox"][2])
    assert cw > ce


def test_geometry_matches_the_localization(exported):
    _, truth, out = exported
    _, feats = _features(out / "all.geojson")
    for nasa in ("ISS064-E-358", "ISS045-E-100", "ISS050-E-7"):
        t = truth[nasa]
        geom = shape(feats[nasa]["geometry"])
        lon, lat = t.pixel_to_lonlat([0, 640, 640, 0], [0, 0, 480, 480])
        for x, y in zip(lon, lat, strict=True):
            assert geom.exterior.distance(shapely.Point(x, y)) < 1e-6
        area = abs(GEOD.geometry_area_perimeter(geom)[0]) / 1e6
        assert feats[nasa]["properties"]["area_km2"] == pytest.approx(area, rel=1e-3)


def test_properties(exported):
    cat, truth, out = exported
    _, feats = _features(out / "all.geojson")
    with Catalog(cat) as catalog:
        photo = catalog.photos_by_nasa_id("ISS064-E-358")[0]
        loc = catalog.latest_localization(photo.id)
        events = catalog.review_events(photo.id)
    p = feats["ISS064-E-358"]["properties"]
    assert feats["ISS064-E-358"]["id"] == photo.id
    assert p["photo_id"] == p["nasa_id"] == "ISS064-E-358"
    assert p["file_name"] == "ISS064-E-358.jpg"
    assert p["captured_at"] == "2021-03-04T05:06:07.000Z"
    assert p["status"] == "accepted"
    assert p["reviewer"] == "alice" and p["reviewed_at"] == events[-1].at
    assert p["confidence"] == pytest.approx(0.97) and p["inliers"] == 80
    assert (p["model"], p["matcher"], p["index"]) == (METHOD["model"], METHOD["matcher"],
                                                      METHOD["index"])
    assert p["center_lon"] == pytest.approx(loc.center_lon, abs=1e-7)
    assert p["center_lat"] == pytest.approx(loc.center_lat, abs=1e-7)
    assert p["localized_at"] == loc.created_at and p["app_version"] == __version__
    assert feats["ISS045-E-100"]["properties"]["status"] == "rejected"
    assert feats["ISS045-E-100"]["properties"]["reviewer"] == "bob"
    # Accepted, then undone: back to the automatic result, no reviewer.
    undone = feats["ISS050-E-7"]["properties"]
    assert undone["status"] == "localized" and undone["reviewer"] is None
    # --status accepted exports only that photo; --ids selects by catalogue id.
    _, acc = _features(out / "accepted.geojson")
    assert list(acc) == ["ISS064-E-358"]
    _, some = _features(out / "ids.geojson")
    assert sorted(some) == ["ISS045-E-100", "ISS064-E-358"]


def test_gdal_reads_the_geojson(exported):
    _, _, out = exported
    path = out / "all.geojson"
    info = subprocess.run([_ogrinfo(), "-ro", "-al", "-so", str(path)], capture_output=True,
                          text=True, check=True).stdout
    assert "Feature Count: 4" in info and 'ID["EPSG",4326]' in info
    meta, _, geoms, fields = pyogrio.raw.read(path)
    names = list(meta["fields"])
    assert meta["crs"] == "EPSG:4326"
    got = dict(zip(fields[names.index("photo_id")], fields[names.index("status")], strict=True))
    assert got == {"ISS064-E-358": "accepted", "ISS030-E-12345": "localized",
                   "ISS045-E-100": "rejected", "ISS050-E-7": "localized"}
    fiji = shapely.from_wkb(geoms[list(fields[names.index("photo_id")]).index("ISS030-E-12345")])
    assert fiji.geom_type == "MultiPolygon"


def test_identical_to_gdal_rfc7946_rewrite(exported, tmp_path):
    """GDAL's own RFC 7946 writer (winding, antimeridian, bboxes) changes nothing."""
    _, _, out = exported
    exe = shutil.which("ogr2ogr")
    assert exe, "GDAL's ogr2ogr is required (Debian: apt-get install gdal-bin)"
    rewritten = tmp_path / "gdal.geojson"
    subprocess.run([exe, "-f", "GeoJSON", "-lco", "RFC7946=YES", "-lco", "WRITE_BBOX=YES",
                    str(rewritten), str(out / "all.geojson")], check=True, capture_output=True)
    ours, _ = _features(out / "all.geojson")
    gdal, _ = _features(rewritten)
    assert gdal["bbox"] == pytest.approx(ours["bbox"], abs=1e-7)
    for a, b in zip(ours["features"], gdal["features"], strict=True):
        assert a["geometry"] == b["geometry"]
        assert b["bbox"] == pytest.approx(a["bbox"], abs=1e-7)


def test_csv_matches_geojson(exported):
    _, _, out = exported
    _, feats = _features(out / "all.geojson")
    with open(out / "all.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4
    for row in rows:
        f = feats[row["photo_id"]]
        for key, value in f["properties"].items():
            if value is None:
                assert row[key] == ""
            elif isinstance(value, float):
                assert float(row[key]) == pytest.approx(value)
            else:
                assert row[key] == str(value)
        geom = shapely.from_wkt(row["wkt"])
        assert geom.equals_exact(shape(f["geometry"]), tolerance=1e-7)
        assert [float(row[k]) for k in ("bbox_west", "bbox_south", "bbox_east", "bbox_north")] \
            == pytest.approx(f["bbox"])
    # GDAL's CSV driver reads the WKT column as geometry.
    meta, _, geoms, fields = pyogrio.raw.read(out / "all.csv", GEOM_POSSIBLE_NAMES="wkt",
                                              KEEP_GEOM_COLUMNS="NO")
    assert len(geoms) == 4 and all(g is not None for g in geoms)
    areas = [shapely.from_wkb(g).area for g in geoms]
    assert np.all(np.array(areas) > 0)


def test_collection_bbox_cases():
    assert collection_bbox([[10, 0, 20, 5]]) == [10, 0, 20, 5]
    assert collection_bbox([[170, 0, 175, 5], [-175, 1, -170, 6]]) == [170, 0, -170, 6]
    assert collection_bbox([[179, 0, -179, 5], [178, -1, 179.5, 2]]) == [178, -1, -179, 5]
    assert collection_bbox([[-100, 0, 100, 5], [90, 0, -90, 5]]) == [-180, 0, 180, 5]
    assert collection_bbox([]) is None


def test_cli_errors(exported, tmp_path, capsys):
    cat, _, _ = exported
    assert main(["--catalog", str(cat), "export", "--status", "bogus",
                 str(tmp_path / "x.geojson")]) == 2
    assert "unknown status" in capsys.readouterr().err
    assert main(["--catalog", str(cat), "export", str(tmp_path / "x.txt")]) == 2
    assert "--format" in capsys.readouterr().err
    assert main(["--catalog", str(cat), "export", "--ids", "1,x", str(tmp_path / "x.csv")]) == 2
    assert "--ids" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
