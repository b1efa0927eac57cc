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
from dataclasses import dataclass, field
from pathlib import Path

from astroapp.catalog.db import Catalog
from astroapp.catalog.nasa_ids import normalize_nasa_id

NAUTICAL_MILE_KM = 1.852

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
    "cloud_pct": (0, 100), "tilt_deg": (0, 180), "focal_length_mm": (0, 100_000),
    "altitude_km": (0, 1_000_000),
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
    if text is None or not str(text).strip() or str(text).strip().lower() in ("na", "n/a", "none", "null", "-"):
        return None
    value = float(str(text).strip().rstrip("%"))
    if not math.isfinite(value):
        raise ValueError(f"{key} is not a finite number: {text!r}")
    lo, hi = _RANGES.get(key, (-math.inf, math.inf))
    if not lo <= value <= hi:
        raise ValueError(f"{key} {value} outside [{lo}, {hi}]")
    if key.endswith("_lon") and value > 180:
        value -= 360
    return value


def import_nasa_csv(catalog: Catalog, csv_path: str | Path) -> NasaCsvReport:
    """Store every valid row of the CSV; raises ValueError when it has no photo id column."""
    csv_path = Path(csv_path)
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        sample = fh.read(8192)
        fh.seek(0)
        try:
            dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
        except csv.Error:
            dialect = csv.excel
        reader = csv.DictReader(fh, dialect=dialect)
        headers = list(reader.fieldnames or [])
        cols = _map_columns(headers)
        has_mrf = all(k in cols for k in ("mission", "roll", "frame"))
        if "nasa_id" not in cols and not has_mrf:
            raise ValueError(
                f"{csv_path}: no photo id column (expected one of photo_id, MRF, id, ... or "
                f"mission+roll+frame); columns are: {', '.join(headers) or 'none'}"
            )
        report = NasaCsvReport()
        rows: list[tuple[str, dict]] = []
        for row in reader:
            report.rows += 1
            line = reader.line_num
            try:
                raw_id = (row.get(cols["nasa_id"]) or "") if "nasa_id" in cols else ""
                if not raw_id.strip() and has_mrf:
                    raw_id = "-".join((row.get(cols[k]) or "").strip() for k in ("mission", "roll", "frame"))
                nasa_id = normalize_nasa_id(raw_id)
                if nasa_id is None:
                    raise ValueError(f"not a NASA photo id: {raw_id!r}")
                values: dict = {}
                for key in ("center_lat", "center_lon", "nadir_lat", "nadir_lon", "altitude_km",
                            "focal_length_mm", "tilt_deg", "cloud_pct", "sun_elevation_deg",
                            "sun_azimuth_deg"):
                    if key in cols:
                        values[key] = _number(row.get(cols[key]), key)
                if values.get("altitude_km") is None and "altitude_nmi" in cols:
                    nmi = _number(row.get(cols["altitude_nmi"]), "altitude_nmi")
                    values["altitude_km"] = None if nmi is None else nmi * NAUTICAL_MILE_KM
                if "features" in cols:
                    values["features"] = (row.get(cols["features"]) or "").strip() or None
                rows.append((nasa_id, values))
            except (ValueError, TypeError) as exc:
                report.errors.append((line, str(exc)))
    with catalog.transaction():
        for nasa_id, values in rows:
            catalog.upsert_nasa_metadata(nasa_id, source=str(csv_path), **values)
            report.stored += 1
            if catalog.photos_by_nasa_id(nasa_id):
                report.attached += 1
    return report
