"""NASA photo ids from file names, and EXIF capture time / camera fields."""

import io

import numpy as np
import piexif
import pytest
from PIL import Image

from astroapp.catalog.exif import exif_time_to_iso, read_exif
from astroapp.catalog.nasa_ids import NasaId, normalize_nasa_id, parse_nasa_id
from astroapp.catalog.thumbnails import make_thumbnail


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ISS064-E-358", NasaId("ISS064", "E", 358)),
        ("ISS064-E-358.JPG", NasaId("ISS064", "E", 358)),
        ("iss064e000358.jpg", NasaId("ISS064", "E", 358)),
        ("ISS064-E-000358.jpeg", NasaId("ISS064", "E", 358)),
        ("iss064_e_358_large.jpg", NasaId("ISS064", "E", 358)),
        ("/data/rolls/ISS030-E-254011.tif", NasaId("ISS030", "E", 254011)),
        ("STS099-710-72.jpg", NasaId("STS099", "710", 72)),
        ("sts41b-39-1500.jpg", NasaId("STS041B", "39", 1500)),
        ("ISS7-E-1234.jpg", NasaId("ISS007", "E", 1234)),
        ("photo ISS050-E-70536 crop.png", NasaId("ISS050", "E", 70536)),
    ],
)
def test_nasa_id_parsing(name, expected):
    parsed = parse_nasa_id(name)
    assert parsed == expected
    assert str(parsed) == f"{expected.mission}-{expected.roll}-{expected.frame}"


@pytest.mark.parametrize(
    "name", ["DSC_0042.JPG", "IMG_20210304.jpg", "holiday.png", "xiss064e000358", "ISSUE-1-2.txt", ""]
)
def test_names_without_nasa_id(name):
    assert parse_nasa_id(name) is None


def test_normalize_nasa_id_makes_forms_meet():
    forms = ["ISS064-E-358", "iss064e000358", " ISS064-E-000358 ", "ISS064_E_358", "iss64-e-358"]
    assert {normalize_nasa_id(f) for f in forms} == {"ISS064-E-358"}
    assert normalize_nasa_id("not an id") is None


@pytest.mark.parametrize(
    ("dto", "subsec", "offset", "expected"),
    [
        ("2020:11:23 10:11:12", None, None, "2020-11-23T10:11:12.000Z"),
        ("2020:11:23 10:11:12", "34", None, "2020-11-23T10:11:12.340Z"),
        ("2020:11:23 10:11:12", "5", None, "2020-11-23T10:11:12.500Z"),
        ("2020:11:23 10:11:12", "123456", None, "2020-11-23T10:11:12.123Z"),
        (b"2020:11:23 10:11:12\x00", b"07\x00", None, "2020-11-23T10:11:12.070Z"),
        ("2020:11:23 10:11:12", "25", "+02:00", "2020-11-23T08:11:12.250Z"),
        ("2020:12:31 23:30:00", None, "-01:00", "2021-01-01T00:30:00.000Z"),
        ("0000:00:00 00:00:00", None, None, None),
        ("    :  :     :  :  ", None, None, None),
        ("", None, None, None),
        (None, "12", None, None),
    ],
)
def test_exif_time_to_iso(dto, subsec, offset, expected):
    assert exif_time_to_iso(dto, subsec, offset) == expected


def _jpeg_with_exif(exif: dict, size=(64, 48)) -> Image.Image:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=piexif.dump(exif))
    buf.seek(0)
    return Image.open(buf)


def test_read_exif_fields():
    img = _jpeg_with_exif({
        "0th": {piexif.ImageIFD.Make: b"NIKON CORPORATION", piexif.ImageIFD.Model: b"NIKON D5"},
        "Exif": {
            piexif.ExifIFD.DateTimeOriginal: b"2021:03:04 05:06:07",
            piexif.ExifIFD.SubSecTimeOriginal: b"123",
            piexif.ExifIFD.FocalLength: (1150, 1),
        },
    })
    info = read_exif(img)
    assert info.captured_at == "2021-03-04T05:06:07.123Z"
    assert info.focal_length_mm == pytest.approx(1150.0)
    assert info.camera_make == "NIKON CORPORATION"
    assert info.camera_model == "NIKON D5"


def test_read_exif_missing_and_odd_values():
    img = _jpeg_with_exif({"Exif": {piexif.ExifIFD.FocalLength: (0, 0)}})
    info = read_exif(img)
    assert info.captured_at is None and info.focal_length_mm is None and info.camera_model is None
    plain = Image.new("RGB", (8, 8))
    assert read_exif(plain).captured_at is None


def test_read_exif_prefers_original_over_digitized_and_ignores_edit_time():
    img = _jpeg_with_exif({
        "0th": {piexif.ImageIFD.DateTime: b"2024:01:01 00:00:00"},
        "Exif": {piexif.ExifIFD.DateTimeDigitized: b"2021:03:04 05:06:07"},
    })
    assert read_exif(img).captured_at == "2021-03-04T05:06:07.000Z"
    img = _jpeg_with_exif({"0th": {piexif.ImageIFD.DateTime: b"2024:01:01 00:00:00"}})
    assert read_exif(img).captured_at is None


def test_thumbnail_fits_and_is_jpeg():
    img = Image.new("RGB", (600, 400), (10, 200, 30))
    thumb = Image.open(io.BytesIO(make_thumbnail(img)))
    assert thumb.format == "JPEG" and thumb.size == (256, 171)
    assert thumb.getpixel((128, 85))[1] > 150
    grey = Image.new("L", (100, 300), 128)
    assert Image.open(io.BytesIO(make_thumbnail(grey))).size == (85, 256)
