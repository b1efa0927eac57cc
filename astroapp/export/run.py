"""One entry point for every export format, shared by the CLI and the GUI."""

from __future__ import annotations

import threading
from collections.abc import Sequence
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
from astroapp.progress import Progress, ProgressFn, ignore


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
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    **options: Any,
) -> ExportResult:
    """Write `records` as `fmt` to `out` (a file; a directory for GeoTIFFs).

    `progress` gets stage "export" events: per photo for GeoTIFFs (see `export_geotiffs`),
    else one as the file starts (0/1, `item` its name) and one when it is written (1/1,
    `result` its path). `cancel` is honoured by the (long) GeoTIFF export between row strips; single-file
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
    emit = progress or ignore
    emit(Progress("export", 0, 1, item=out.name, message=f"{len(records)} footprints"))
    result.written.append(writer(records, out, **options))
    emit(Progress("export", 1, 1, item=out.name, message="written", result=result.written[-1]))
    result.exported = len(records)
    return result


def export_catalog(
    catalog: Any,
    fmt: str,
    out: str | Path,
    status: str | Sequence[str] | None = None,
    ids: Sequence[int] | None = None,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    **options: Any,
) -> ExportResult:
    """Export the catalogue's localized photos (optionally only some statuses / ids);
    `progress` as for `export_records`."""
    records, skipped = records_from_catalog(catalog, status=status, ids=ids)
    result = export_records(records, fmt, out, progress=progress, cancel=cancel, **options)
    result.skipped = skipped + result.skipped
    return result
