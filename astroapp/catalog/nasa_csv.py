"""Import NASA catalogue fields (centre point, nadir, altitude, ...) from a CSV.

Rows are keyed by the normalised NASA photo id and stored whether or not the photo is in the
catalogue yet: photos imported later pick their metadata up by id. Column names are matched
loosely (NASA's short names `LAT`, `NLON`, `FCLT`, `CLDP`... as well as spelled-out ones);
a bad row is reported with its line number and the rest goes on.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from astroapp.catalog.db import Catalog
from astroapp.catalog.nasa_ids import normalize_nasa_id
from astroapp.geo.viewing import TILT_CODE_RANGES

NAUTICAL_MILE_KM = 1.852
MAX_RECORD_LINES = 20  # a quoted field may span lines; an open quote is sought this far
MAX_FEATURES_CHARS = 20_000
_BLANKS = ("na", "n/a", "none", "null", "-")

# field -> accepted header names (normalised: lower case, non-alphanumerics -> "_")
_ALIASES: dict[str, tuple[str, ...]] = {
    "nasa_id": ("photo_id", "photoid", "nasa_id", "nasa_photo_id", "id", "mrf",
                "mission_roll_frame", "image_id", "image", "filename", "file"),
    "center_lat": ("center_lat", "centre_lat", "lat", "latitude", "center_latitude",
                   "centre_latitude", "center_point_lat"),
    "center_lon": ("center_lon", "centre_lon", "lon", "long", "longitude", "center_longitude",
                   "centre_longitude", "center_point_lon"),
    "nadir_lat": ("nadir_lat", "nlat", "nadir_latitude", "spacecraft_nadir_lat"),
    "nadir_lon": ("nadir_lon", "nlon", "nadir_longitude", "spacecraft_nadir_lon"),
    "altitude_km": ("altitude_km", "alt_km", "altitude", "alt", "spacecraft_altitude",
                    "spacecraft_altitude_km"),
    "altitude_nmi": ("altitude_nmi", "alt_nmi", "altitude_nautical_miles", "spacecraft_altitude_nmi"),
    "focal_length_mm": ("focal_length_mm", "focal_length", "focal", "fclt", "focal_mm"),
    "tilt_deg": ("tilt_deg", "tilt", "camera_tilt"),
    "cloud_pct": ("cloud_pct", "cloud", "clouds", "cldp", "cloud_cover", "cloud_percent",
                  "cloud_cover_pct", "percentage_of_cloud_cover"),
    "sun_elevation_deg": ("sun_elevation_deg", "sun_elevation", "elev", "sun_elev"),
    "sun_azimuth_deg": ("sun_azimuth_deg", "sun_azimuth", "azi", "sun_azi"),
    "features": ("features", "feature", "feat", "geon", "description"),
    "mission": ("mission",),
    "roll": ("roll",),
    "frame": ("frame",),
}
_RANGES = {
    "center_lat": (-90, 90), "nadir_lat": (-90, 90),
    "center_lon": (-180, 360), "nadir_lon": (-180, 360),
    "cloud_pct": (0, 100), "tilt_deg": (0, 90), "focal_length_mm": (1, 100_000),
    "altitude_km": (0, 1_000_000), "altitude_nmi": (0, 540_000),
    "sun_elevation_deg": (-90, 90), "sun_azimuth_deg": (-180, 360),
}


@dataclass
class NasaCsvReport:
    rows: int = 0
    stored: int = 0
    attached: int = 0  # stored rows whose photo is in the catalogue
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)


def _norm_header(name: str) -> str:
    name = name.strip().lower().replace("%", " pct ")
    return re.sub(r"[^a-z0-9]+", "_", name).strip("_")


def _map_columns(headers: list[str]) -> dict[str, str]:
    """field -> the CSV header holding it."""
    normed = {_norm_header(h): h for h in headers if h is not None}
    mapping: dict[str, str] = {}
    for key, aliases in _ALIASES.items():
        for alias in aliases:
            if alias in normed:
                mapping[key] = normed[alias]
                break
    return mapping


def _number(text: str | None, key: str) -> float | None:
    if text is None or not str(text).strip() or str(text).strip().lower() in _BLANKS:
        return None
    try:
        value = float(str(text).strip().rstrip("%"))
    except ValueError:
        raise ValueError(f"{key} is not a number: {_short(text)!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{key} is not a finite number: {_short(text)!r}")
    lo, hi = _RANGES.get(key, (-math.inf, math.inf))
    if not lo <= value <= hi:
        raise ValueError(f"{key} {value} outside [{lo}, {hi}]")
    if key.endswith("_lon") and value > 180:
        value -= 360
    return value


def _tilt(text: str | None) -> dict:
    """The tilt column: degrees, or NASA's code (NV / LO / HO, as AIMS exports write it)."""
    code = (text or "").strip().upper()
    if code in TILT_CODE_RANGES:
        return {"tilt_code": code}
    if code.isalpha() and code.lower() not in _BLANKS:
        raise ValueError(f"tilt {_short(text)!r} is neither degrees nor one of NASA's codes "
                         f"({', '.join(TILT_CODE_RANGES)})")
    deg = _number(text, "tilt_deg")
    return {} if deg is None else {"tilt_deg": deg}


def _short(text: str | None, n: int = 40) -> str:
    text = str(text)
    return text if len(text) <= n else text[:n] + f"... ({len(text)} characters)"


def _records(lines: list[str], dialect: Any, start: int = 0, n_fields: int | None = None
             ) -> Iterator[tuple[int, list[str] | None, str | None]]:
    """(line number, fields, None) per CSV record from line index `start`, or (line, None,
    reason) for a line that is not valid CSV. Lines are parsed one by one (strictly), so one
    bad quote costs one row, never the rows after it: a quote left open joins the following
    lines only when that gives a well-formed record of exactly `n_fields` fields (a field
    legitimately spanning lines)."""
    i = start
    while i < len(lines):
        line_no = i + 1
        if not lines[i].strip():
            i += 1
            continue
        fields, error = _parse(lines[i], dialect)
        used = 1
        if error == _OPEN_QUOTE and n_fields is not None:
            for extra in range(1, MAX_RECORD_LINES):
                if i + extra >= len(lines):
                    break
                joined, err = _parse("".join(lines[i : i + extra + 1]), dialect)
                if err is None:
                    if joined is not None and len(joined) == n_fields:
                        fields, error, used = joined, None, extra + 1
                    break
                if err != _OPEN_QUOTE:
                    break
        if error is not None:
            yield line_no, None, error
            i += 1
        else:
            yield line_no, fields, None
            i += used


_OPEN_QUOTE = "unterminated quote: the row is not valid CSV"


def _parse(text: str, dialect: Any) -> tuple[list[str] | None, str | None]:
    try:
        rows = list(csv.reader([text], dialect, strict=True))
    except csv.Error as exc:
        msg = str(exc)
        if "unexpected end of data" in msg or "newline inside string" in msg:
            return None, _OPEN_QUOTE
        if "field larger than field limit" in msg:
            return None, (f"a field is longer than {csv.field_size_limit()} characters: "
                          "not a NASA catalogue value")
        return None, f"not valid CSV ({msg})"
    if len(rows) != 1:
        return None, _OPEN_QUOTE
    if any("\x00" in f for f in rows[0]):
        return None, "the row contains NUL characters"
    return rows[0], None


def import_nasa_csv(catalog: Catalog, csv_path: str | Path) -> NasaCsvReport:
    """Store every valid row of the CSV; raises ValueError when it has no photo id column.

    A bad row (unparseable, a value out of range or not a number, more fields than the
    header) is reported with its line number and leaves what the catalogue holds for that
    photo untouched; blank cells never overwrite stored values.
    """
    csv_path = Path(csv_path)
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            lines = fh.readlines()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{csv_path} is not UTF-8 text (byte {exc.start}): export or save "
                         "it as UTF-8 (or ASCII) CSV") from exc
    sample = "".join(lines[:200])[:8192]
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    headers: list[str] = []
    for line_no, fields, error in _records(lines, dialect):
        if error is not None:
            raise ValueError(f"line {line_no}: the header is not valid CSV ({error})")
        headers = [h.strip() for h in fields or []]
        break
    else:
        line_no = 0
    records = _records(lines, dialect, line_no, len(headers))
    cols = _map_columns(headers)
    has_mrf = all(k in cols for k in ("mission", "roll", "frame"))
    if "nasa_id" not in cols and not has_mrf:
        raise ValueError(
            f"{csv_path}: no photo id column (expected one of photo_id, MRF, id, ... or "
            f"mission+roll+frame); columns are: "
            f"{', '.join(_short(h) for h in headers[:20]) or 'none'}"
            + (f" and {len(headers) - 20} more" if len(headers) > 20 else "")
        )
    position = {h: j for j, h in enumerate(headers)}
    report = NasaCsvReport()
    rows: list[tuple[str, dict]] = []
    for line, fields, error in records:
        report.rows += 1
        try:
            if error is not None:
                raise ValueError(error)
            assert fields is not None
            if len(fields) > len(headers) and any(f.strip() for f in fields[len(headers):]):
                raise ValueError(f"{len(fields)} fields, but the header has {len(headers)} "
                                 "columns (an unquoted separator inside a value?)")
            row = {key: fields[position[col]] for key, col in cols.items()
                   if position[col] < len(fields)}  # missing trailing cells: blank
            raw_id = row.get("nasa_id") or ""
            if not raw_id.strip() and has_mrf:
                raw_id = "-".join((row.get(k) or "").strip() for k in ("mission", "roll", "frame"))
            nasa_id = normalize_nasa_id(raw_id)
            if nasa_id is None:
                raise ValueError(f"not a NASA photo id: {_short(raw_id)!r}")
            values: dict = {}
            for key in ("center_lat", "center_lon", "nadir_lat", "nadir_lon", "altitude_km",
                        "focal_length_mm", "cloud_pct", "sun_elevation_deg", "sun_azimuth_deg"):
                values[key] = _number(row.get(key), key)
            if values["altitude_km"] is None and "altitude_nmi" in cols:
                nmi = _number(row.get("altitude_nmi"), "altitude_nmi")
                values["altitude_km"] = None if nmi is None else nmi * NAUTICAL_MILE_KM
            if "tilt_deg" in cols:
                values.update(_tilt(row.get("tilt_deg")))
            features = (row.get("features") or "").strip()
            if len(features) > MAX_FEATURES_CHARS:
                raise ValueError(f"features text of {len(features)} characters (at most "
                                 f"{MAX_FEATURES_CHARS})")
            values["features"] = features or None
            if (values["center_lat"] is None) != (values["center_lon"] is None) or (
                    values["nadir_lat"] is None) != (values["nadir_lon"] is None):
                raise ValueError("a latitude without its longitude (or the reverse)")
            # blank cells leave what is stored
            rows.append((nasa_id, {k: v for k, v in values.items() if v is not None}))
        except (ValueError, TypeError) as exc:
            report.errors.append((line, str(exc)))
    with catalog.transaction():
        for nasa_id, values in rows:
            catalog.upsert_nasa_metadata(nasa_id, source=str(csv_path), **values)
            report.stored += 1
            if catalog.photos_by_nasa_id(nasa_id):
                report.attached += 1
    return report
