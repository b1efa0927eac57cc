"""Exports of localized photos: GeoJSON, CSV, GeoTIFF (GCPs + warped) and an offline HTML map.

Every file is written atomically (`atomic.atomic_path`). Exporters work on `ExportRecord`s;
`export_catalog` reads them from the catalogue and dispatches on the format, so the CLI and
the GUI share one entry point.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from astroapp.export.atomic import atomic_path, atomic_text
from astroapp.export.csv_export import write_csv
from astroapp.export.geojson import feature_collection, write_geojson
from astroapp.export.geotiff import (
    ExportCancelled,
    export_geotiffs,
    write_gcp_geotiff,
    write_warped_geotiff,
)
from astroapp.export.html_map import render_html, write_html_map
from astroapp.export.records import PROPERTY_NAMES, ExportRecord, records_from_catalog

FORMATS = ("geojson", "geotiff", "html", "csv")


@dataclass
class ExportResult:
    """What one export produced: files written, photos skipped (no footprint) or failed."""

    format: str
    written: list[Path] = field(default_factory=list)
    exported: int = 0
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    cancelled: bool = False


def export_records(
    records: Sequence[ExportRecord],
    fmt: str,
    out: str | Path,
    progress: Callable[[int, ExportRecord], None] | None = None,
    cancel: threading.Event | None = None,
    **options: Any,
) -> ExportResult:
    """Write `records` as `fmt` to `out` (a file; a directory for GeoTIFFs).

    `cancel` is honoured by the (long) GeoTIFF export between row strips; single-file
    formats take seconds and are written whole or not at all.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; one of {', '.join(FORMATS)}")
    out = Path(out)
    result = ExportResult(fmt)
    if fmt == "geotiff":
        report = export_geotiffs(records, out, progress=progress, cancel=cancel, **options)
        result.written, result.failed = report.written, report.failed
        result.cancelled = report.cancelled
        done = {p.name for p in report.written if p.name.endswith("_gcps.tif")}
        result.exported = len(done)
        return result
    writer = {"geojson": write_geojson, "csv": write_csv, "html": write_html_map}[fmt]
    result.written.append(writer(records, out, **options))
    result.exported = len(records)
    return result


def export_catalog(
    catalog: Any,
    fmt: str,
    out: str | Path,
    status: str | Sequence[str] | None = None,
    ids: Sequence[int] | None = None,
    progress: Callable[[int, ExportRecord], None] | None = None,
    cancel: threading.Event | None = None,
    **options: Any,
) -> ExportResult:
    """Export the catalogue's localized photos (optionally only some statuses / ids)."""
    records, skipped = records_from_catalog(catalog, status=status, ids=ids)
    result = export_records(records, fmt, out, progress=progress, cancel=cancel, **options)
    result.skipped = skipped
    return result


__all__ = [
    "FORMATS",
    "ExportCancelled",
    "PROPERTY_NAMES",
    "ExportRecord",
    "ExportResult",
    "atomic_path",
    "atomic_text",
    "export_catalog",
    "export_geotiffs",
    "export_records",
    "feature_collection",
    "records_from_catalog",
    "render_html",
    "write_csv",
    "write_gcp_geotiff",
    "write_geojson",
    "write_html_map",
    "write_warped_geotiff",
]
