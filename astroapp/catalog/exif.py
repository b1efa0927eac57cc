"""EXIF fields the catalogue keeps: capture time (UTC), focal length, camera."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from PIL import Image

_EXIF_IFD = 0x8769
_MAKE, _MODEL = 0x010F, 0x0110
_DATETIME_ORIGINAL, _SUBSEC_ORIGINAL, _OFFSET_ORIGINAL = 0x9003, 0x9291, 0x9011
_DATETIME_DIGITIZED, _SUBSEC_DIGITIZED, _OFFSET_DIGITIZED = 0x9004, 0x9292, 0x9012
_FOCAL_LENGTH = 0x920A


@dataclass(frozen=True)
class ExifInfo:
    captured_at: str | None = None  # ISO 8601 UTC, e.g. 2020-11-23T10:11:12.345Z
    focal_length_mm: float | None = None
    camera_make: str | None = None
    camera_model: str | None = None


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value).replace("\x00", "").strip()
    return text or None


def exif_time_to_iso(
    datetime_original: str | bytes | None,
    subsec: str | bytes | None = None,
    offset: str | bytes | None = None,
) -> str | None:
    """EXIF `YYYY:MM:DD HH:MM:SS` (+ sub-seconds, + optional UTC offset) -> ISO UTC.

    Without an offset the clock is taken as GMT: the crew's cameras are set to GMT, which
    is what NASA's catalogue assumes too. Blank/invalid stamps give None.
    """
    text = _text(datetime_original)
    if not text:
        return None
    m = re.fullmatch(r"(\d{4})[:-](\d{2})[:-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?", text)
    if not m:
        return None
    try:
        moment = datetime(*(int(g) for g in m.groups()[:6]), tzinfo=UTC)
    except ValueError:  # 0000:00:00 00:00:00 and the like
        return None
    digits = re.sub(r"\D", "", _text(subsec) or "") or (m.group(7) or "")
    if digits:
        moment += timedelta(microseconds=int((digits + "000000")[:6]))
    off = _text(offset)
    om = re.fullmatch(r"([+-])(\d{2}):?(\d{2})", off or "")
    if om:
        delta = timedelta(hours=int(om[2]), minutes=int(om[3]))
        moment -= delta if om[1] == "+" else -delta
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _rational(value: object) -> float | None:
    try:
        if isinstance(value, tuple) and len(value) == 2:
            num, den = value
            return float(num) / float(den) if den else None
        number = float(value)  # PIL IFDRational or a number
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return number if number == number and number > 0 else None  # NaN/0 -> None


def read_exif(image: Image.Image) -> ExifInfo:
    """The EXIF fields of an opened image; missing or malformed ones are None."""
    try:
        exif = image.getexif()
    except Exception:  # malformed EXIF must not fail an otherwise good photo
        return ExifInfo()
    try:
        sub = exif.get_ifd(_EXIF_IFD)
    except Exception:
        sub = {}
    # DateTimeOriginal is the capture time; DateTimeDigitized equals it on digital cameras and
    # stands in when a tool dropped the former. IFD0 DateTime is the last edit: never used.
    captured = exif_time_to_iso(
        sub.get(_DATETIME_ORIGINAL), sub.get(_SUBSEC_ORIGINAL), sub.get(_OFFSET_ORIGINAL)
    ) or exif_time_to_iso(
        sub.get(_DATETIME_DIGITIZED), sub.get(_SUBSEC_DIGITIZED), sub.get(_OFFSET_DIGITIZED)
    )
    return ExifInfo(
        captured_at=captured,
        focal_length_mm=_rational(sub.get(_FOCAL_LENGTH)),
        camera_make=_text(exif.get(_MAKE)),
        camera_model=_text(exif.get(_MODEL)),
    )
