"""`astroapp import / photos / list / status / import-nasa`, and NASA CSV parsing."""

import io
import json
import sqlite3

import numpy as np
import piexif
import pytest
from PIL import Image

from astroapp.catalog import SCHEMA_VERSION, Catalog
from astroapp.catalog.nasa_csv import NAUTICAL_MILE_KM, import_nasa_csv
from astroapp.cli import main


def _write_jpeg(path, seed, when=None):
    rng = np.random.default_rng(seed)
    exif = {"Exif": {piexif.ExifIFD.DateTimeOriginal: when.encode()}} if when else {}
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(
        buf, "JPEG", exif=piexif.dump(exif))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())


@pytest.fixture
def small_roll(tmp_path):
    roll = tmp_path / "roll"
    _write_jpeg(roll / "ISS064-E-358.jpg", 1, "2020:11:23 10:11:12")
    _write_jpeg(roll / "a" / "iss064e000359.jpg", 2, "2020:11:23 10:11:13")
    _write_jpeg(roll / "a" / "b" / "ISS050-E-70536.JPG", 3, "2017:02:01 00:00:00")
    (roll / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    return roll


def test_import_list_status(small_roll, tmp_path, capsys):
    db = tmp_path / "c.sqlite"
    assert main(["--catalog", str(db), "import", "-q", str(small_roll)]) == 0
    out = capsys.readouterr().out
    assert "4 files: 3 added, 0 duplicates, 0 already in the catalogue, 1 failed" in out
    assert main(["--catalog", str(db), "import", "-q", str(small_roll)]) == 0
    assert "0 added" in capsys.readouterr().out

    assert main(["--catalog", str(db), "photos"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["ID", "STATUS", "NASA"] and len(table) == 5
    assert any("bad.jpg" in line and "failed" in line for line in table)

    assert main(["--catalog", str(db), "list", "--json", "--mission", "ISS064"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted(r["nasa_id"] for r in rows) == ["ISS064-E-358", "ISS064-E-359"]
    assert rows[0]["captured_at"] == "2020-11-23T10:11:12.000Z"

    assert main(["--catalog", str(db), "list", "--json", "--from", "2020-01-01", "--to",
                 "2020-11-23T10:11:12", "--status", "new,localized"]) == 0
    assert [r["nasa_id"] for r in json.loads(capsys.readouterr().out)] == ["ISS064-E-358"]

    assert main(["--catalog", str(db), "photos", "--search", "70536", "--limit", "1"]) == 0
    assert "ISS050-E-70536" in capsys.readouterr().out

    assert main(["--catalog", str(db), "status", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["schema_version"] == SCHEMA_VERSION and info["catalog"] == str(db)
    assert info["by_status"]["new"] == 3 and info["by_status"]["failed"] == 1
    assert info["imports"] == 2 and info["last_import"]["state"] == "done"
    assert main(["--catalog", str(db), "status"]) == 0
    text = capsys.readouterr().out
    assert f"schema version: {SCHEMA_VERSION}" in text and "failed       1" in text


def test_default_catalogue_in_data_dir(small_roll, tmp_path, capsys):
    assert main(["import", "-q", str(small_roll / "ISS064-E-358.jpg")]) == 0
    assert (tmp_path / "astroapp_home" / "catalog.sqlite").is_file()
    capsys.readouterr()
    assert main(["status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["photos"] == 1


def test_user_errors(small_roll, tmp_path, capsys):
    db = tmp_path / "c.sqlite"
    assert main(["--catalog", str(db), "import", str(tmp_path / "missing")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["--catalog", str(db), "photos", "--status", "done"]) == 2
    assert "unknown status 'done'" in capsys.readouterr().err
    assert main(["--catalog", str(db), "import-nasa", str(tmp_path / "x.csv")]) == 2
    no_id = tmp_path / "no_id.csv"
    no_id.write_text("lat,lon\n1,2\n")
    assert main(["--catalog", str(db), "import-nasa", str(no_id)]) == 2
    assert "no photo id column" in capsys.readouterr().err
    con = sqlite3.connect(db)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    con.close()
    assert main(["--catalog", str(db), "status"]) == 2
    assert "upgrade astroapp" in capsys.readouterr().err
    assert main(["--catalog", str(tmp_path), "status"]) == 2


NASA_CSV = """MRF,LAT,LON,NLAT,NLON,Altitude (nmi),FCLT,TILT,Cloud %,ELEV,AZI,FEAT
ISS064-E-358,36.4,38.2,35.4,39.3,225,1150,0,10,45.5,120,Euphrates
iss064e000359,45.0,266.7,44.4,-93.1,226,400,23,,,,
ISS999-E-1,95.0,0,0,0,200,50,0,0,,,
not-an-id,1,2,3,4,5,6,7,8,,,
ISS050-E-70536,31.0,87.0,32.1,85.8,220,50,23,10,,,Tibet
"""


def test_nasa_csv_attach(small_roll, tmp_path, capsys):
    db = tmp_path / "c.sqlite"
    csv_path = tmp_path / "nasa.csv"
    csv_path.write_text(NASA_CSV)
    assert main(["--catalog", str(db), "import", "-q", str(small_roll / "ISS064-E-358.jpg"),
                 str(small_roll / "a" / "iss064e000359.jpg")]) == 0
    capsys.readouterr()
    assert main(["--catalog", str(db), "import-nasa", str(csv_path)]) == 0
    captured = capsys.readouterr()
    assert "5 rows: 3 stored (2 match photos in the catalogue), 2 skipped" in captured.out
    assert "nasa.csv:4: skipped: center_lat 95.0 outside" in captured.err
    assert "not a NASA photo id" in captured.err
    with Catalog(db) as cat:
        [p358] = cat.photos_by_nasa_id("ISS064-E-358")
        m = cat.nasa_metadata(p358.id)
        assert (m.center_lon, m.center_lat, m.nadir_lon, m.nadir_lat) == (38.2, 36.4, 39.3, 35.4)
        assert m.altitude_km == pytest.approx(225 * NAUTICAL_MILE_KM)
        assert (m.focal_length_mm, m.tilt_deg, m.cloud_pct) == (1150, 0, 10)
        assert (m.sun_elevation_deg, m.sun_azimuth_deg, m.features) == (45.5, 120, "Euphrates")
        [p359] = cat.photos_by_nasa_id("ISS064-E-359")
        m = cat.nasa_metadata(p359.id)
        assert m.center_lon == pytest.approx(-93.3) and m.cloud_pct is None
    # a photo imported after its metadata picks it up by id
    assert main(["--catalog", str(db), "import", "-q", str(small_roll / "a" / "b")]) == 0
    with Catalog(db) as cat:
        [p] = cat.photos_by_nasa_id("ISS050-E-70536")
        assert cat.nasa_metadata(p.id).features == "Tibet"


def test_nasa_csv_mission_roll_frame_columns(tmp_path):
    csv_path = tmp_path / "m.csv"
    csv_path.write_text("Mission;Roll;Frame;Center Latitude;Center Longitude;altitude_km\n"
                        "ISS064;E;000358;1.5;2.5;410\n")
    with Catalog(tmp_path / "c.sqlite") as cat:
        report = import_nasa_csv(cat, csv_path)
        assert (report.rows, report.stored, report.attached, report.errors) == (1, 1, 0, [])
        m = cat.nasa_metadata_by_id("ISS064-E-358")
        assert (m.center_lat, m.center_lon, m.altitude_km) == (1.5, 2.5, 410)
