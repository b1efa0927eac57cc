"""CSV of the export properties plus the footprint as WKT (spreadsheets, GDAL's CSV driver)."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

from astroapp.atomic import atomic_text
from astroapp.export.geojson import feature_bbox, wkt
from astroapp.export.records import PROPERTY_NAMES, ExportRecord

COLUMNS = (*PROPERTY_NAMES, "bbox_west", "bbox_south", "bbox_east", "bbox_north", "wkt")


def write_csv(records: Iterable[ExportRecord], out: str | Path) -> Path:
    """One row per photo; empty cells for unknown values; written atomically."""
    with atomic_text(out, newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for rec in records:
            props = rec.properties()
            row = ["" if props[k] is None else props[k] for k in PROPERTY_NAMES]
            writer.writerow([*row, *feature_bbox(rec), wkt(rec)])
    return Path(out)
