"""NASA CSV import reliability (issue 15, items 9, 12, 14): a bad row is reported with its
line and changes nothing stored, blank cells keep stored values, huge fields are reported,
AIMS exports with tilt codes (NV/LO/HO) keep their rows."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from astroapp.catalog import Catalog
from astroapp.catalog.nasa_csv import import_nasa_csv
from astroapp.catalog.nasa_ids import normalize_nasa_id
from astroapp.pipeline.retrieve import photo_region

REPO = Path(__file__).resolve().parents[1]
AIMS_HEADER = "mrf,fclt,cldp,lat,lon,nlat,nlon,tilt\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def catalog(tmp_path):
    with Catalog(tmp_path / "cat.sqlite") as cat:
        yield cat


def test_unterminated_quote_is_reported_and_erases_nothing(tmp_path, catalog):
    good = write(tmp_path / "a.csv", "MRF,NLAT,NLON,FEATURES\nISS064-E-1,10,20,Nile\n"
                 "ISS064-E-2,11,21,Alps\nISS064-E-3,12,22,Andes\n")
    assert import_nasa_csv(catalog, good).stored == 3
    bad = write(tmp_path / "b.csv", 'MRF,NLAT,NLON,FEATURES\n'
                'ISS064-E-1,,,"Nile delta\n'        # quote never closed
                'ISS064-E-2,31,41,Alps\n'           # must still be read
                'ISS064-E-3,32,42,"Andes, ""south"""\n')
    report = import_nasa_csv(catalog, bad)
    assert report.errors == [(2, "unterminated quote: the row is not valid CSV")]
    assert report.stored == 2
    m1 = catalog.nasa_metadata_by_id("ISS064-E-1")
    assert (m1.nadir_lat, m1.nadir_lon, m1.features) == (10, 20, "Nile")
    m2, m3 = catalog.nasa_metadata_by_id("ISS064-E-2"), catalog.nasa_metadata_by_id("ISS064-E-3")
    assert (m2.nadir_lat, m3.nadir_lat, m3.features) == (31, 32, 'Andes, "south"')


def test_quoted_field_spanning_lines_is_still_one_record(tmp_path, catalog):
    f = write(tmp_path / "m.csv", 'MRF,NLAT,NLON,FEATURES\nISS064-E-1,10,20,"two\nlines"\n'
              "ISS064-E-2,11,21,x\n")
    report = import_nasa_csv(catalog, f)
    assert report.errors == [] and report.stored == 2
    assert catalog.nasa_metadata_by_id("ISS064-E-1").features == "two\nlines"


def test_blank_cells_keep_stored_values(tmp_path, catalog):
    write(tmp_path / "a.csv", "MRF,NLAT,NLON,ALT_KM,FCLT,TILT\nISS064-E-1,10,20,420,400,12\n")
    import_nasa_csv(catalog, tmp_path / "a.csv")
    write(tmp_path / "b.csv", "MRF,NLAT,NLON,ALT_KM,FCLT,TILT,CLDP\nISS064-E-1,,,,,,35\n")
    report = import_nasa_csv(catalog, tmp_path / "b.csv")
    assert report.errors == [] and report.stored == 1
    m = catalog.nasa_metadata_by_id("ISS064-E-1")
    assert (m.nadir_lat, m.nadir_lon, m.altitude_km, m.focal_length_mm, m.tilt_deg,
            m.cloud_pct) == (10, 20, 420, 400, 12, 35)


@pytest.mark.parametrize("row,why", [
    ("ISS064-E-1,abc,20", "nadir_lat is not a number"),
    ("ISS064-E-1,95,20", "nadir_lat 95.0 outside"),
    ("ISS064-E-1,nan,20", "not a finite number"),
    ("ISS064-E-1,10,", "latitude without its longitude"),
    ("ISS064-E-1,10,20,oops", "4 fields, but the header has 3"),
    ("not-an-id,10,20", "not a NASA photo id"),
    ('ISS064-E-1,"10"x,20', "not valid CSV|not a number"),  # depends on the sniffed dialect
])
def test_every_bad_field_rejects_its_row_only(tmp_path, catalog, row, why):
    write(tmp_path / "a.csv", "MRF,NLAT,NLON\nISS064-E-1,1,2\n")
    import_nasa_csv(catalog, tmp_path / "a.csv")
    write(tmp_path / "b.csv", f"MRF,NLAT,NLON\n{row}\nISS064-E-2,3,4\n")
    report = import_nasa_csv(catalog, tmp_path / "b.csv")
    assert len(report.errors) == 1 and report.errors[0][0] == 2
    assert re.search(why, report.errors[0][1])
    m = catalog.nasa_metadata_by_id("ISS064-E-1")
    assert (m.nadir_lat, m.nadir_lon) == (1, 2)
    assert catalog.nasa_metadata_by_id("ISS064-E-2").nadir_lat == 3


def test_huge_field_is_reported_by_the_cli_without_traceback(tmp_path):
    f = write(tmp_path / "big.csv", "MRF,NLAT,NLON,FEATURES\n"
              f"ISS064-E-1,10,20,{'x' * 200_000}\nISS064-E-2,11,21,ok\n"
              f'ISS064-E-3,12,22,"{"y" * 150_000}"\n')
    proc = subprocess.run([sys.executable, "-m", "astroapp", "--catalog",
                           str(tmp_path / "c.sqlite"), "import-nasa", str(f)], cwd=REPO,
                          capture_output=True, text=True, timeout=120, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "_csv.Error" not in proc.stderr
    assert "big.csv:2: skipped: a field is longer than" in proc.stderr
    assert "big.csv:4: skipped" in proc.stderr
    assert "1 stored" in proc.stdout


def test_aims_export_with_tilt_codes_keeps_every_row(tmp_path, catalog):
    f = write(tmp_path / "aims_data.csv", AIMS_HEADER
              + "ISS030-E-254053,400,10,45.5,10.2,44.0,9.0,NV\n"
              + "ISS030-E-254054,180,25,40.0,15.0,42.0,12.0,lo\n"
              + "ISS030-E-254055,50,0,30.0,20.0,38.0,25.0,HO\n"
              + "ISS030-E-254056,800,5,35.0,21.0,35.2,21.1,7\n"
              + "ISS030-E-254057,800,5,35.0,21.0,35.2,21.1,XO\n")
    report = import_nasa_csv(catalog, f)
    assert report.stored == 4
    assert report.errors == [(6, "tilt 'XO' is neither degrees nor one of NASA's codes "
                                 "(NV, LO, HO)")]
    m = catalog.nasa_metadata_by_id("ISS030-E-254055")
    assert (m.tilt_code, m.tilt_deg, m.nadir_lat, m.focal_length_mm, m.cloud_pct) == \
        ("HO", None, 38.0, 50.0, 0.0)
    assert catalog.nasa_metadata_by_id("ISS030-E-254054").tilt_code == "LO"
    m = catalog.nasa_metadata_by_id("ISS030-E-254056")
    assert (m.tilt_code, m.tilt_deg) == (None, 7.0)


def test_tilt_code_widens_the_search_circle(tmp_path, catalog):
    ids = {}
    for i, tilt in enumerate(["NV", "HO", "7"]):
        nasa = f"ISS030-E-{i + 1:06d}"
        ids[tilt] = catalog.add_photo(path=f"/p/{nasa}.jpg", sha256=f"{i:064d}",
                                      nasa_id=normalize_nasa_id(nasa))
        write(tmp_path / f"{i}.csv", AIMS_HEADER + f"{nasa},400,0,,,44.0,9.0,{tilt}\n")
        assert import_nasa_csv(catalog, tmp_path / f"{i}.csv").stored == 1
    nv, ho, deg = (photo_region(catalog, ids[t]) for t in ("NV", "HO", "7"))
    assert nv.radius_km == pytest.approx(deg.radius_km)  # default 50 deg covers both
    assert ho.radius_km > 2 * nv.radius_km  # 75 + 10 degrees off nadir: far wider
