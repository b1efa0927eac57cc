"""One entry point for every export format, shared by the CLI and the GUI."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from astroapp.export.csv_export import write_csv
from astroapp.export.formats import FORMATS
from astroapp.export.geojson import drop_unusable, write_geojson
from astroapp.export.geotiff import (
    export_geotiffs,
)
from astroapp.export.html_map import write_html_map
from astroapp.export.records import ExportRecord, records_from_catalog


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
    records, result.skipped = drop_unusable(records)  # one bad footprint must not abort all
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
    result.skipped = skipped + result.skipped
    return result
