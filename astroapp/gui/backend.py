"""The core calls the GUI makes, gathered in one place (Qt-free, run inside workers).

Each function opens its own `Catalog` because it runs on a worker thread and SQLite
connections belong to the thread that opened them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from astroapp.catalog.db import Catalog
from astroapp.gui.workers import Progress

ProgressFn = Callable[..., None]


def import_job(catalog_path: Path, paths: Sequence[str | Path], cancel: threading.Event) -> Iterator[Progress]:
    """Import files, folders and zip rolls, one report per file; returns the ImportReport."""
    from astroapp.catalog.importer import iter_import

    report: list = []
    with Catalog(catalog_path) as catalog:
        for res in iter_import(catalog, [Path(p) for p in paths], cancel=cancel, report=report):
            yield Progress(res.done, res.total, Path(res.path).name, res,
                           {"photo_id": res.photo_id, "outcome": res.outcome})
    return report[0] if report else None


def load_retrieval_model(settings) -> Any:
    """The retrieval model the settings name (bundled by default), on the chosen device."""
    from astroapp.retrieval import load_model

    kwargs: dict[str, Any] = {"weights": settings.weights or None, "device": settings.device or None}
    if settings.model:
        kwargs["name"] = settings.model
    return load_model(**kwargs)


def localize(
    catalog_path: Path,
    photo_ids: Sequence[int],
    settings,
    progress: ProgressFn,
    cancel: threading.Event,
) -> Any:
    """Retrieval + coregistration for the photos, recording results in the catalogue.

    Runs on a worker thread: opens its own catalogue connection and loads the model there.
    """
    from astroapp.pipeline.localize import localize_photos

    model = load_retrieval_model(settings)
    with Catalog(catalog_path) as catalog:
        return localize_photos(
            catalog,
            list(photo_ids),
            index_dir=settings.index_dir or None,
            model=model,
            matcher=settings.matcher or None,
            progress=progress,
            cancel=cancel,
            **dict(settings.localize_options or {}),
        )


def release_stuck(catalog: Catalog, photo_ids: Sequence[int]) -> int:
    """Photos of a finished or cancelled batch still in `localizing` go back to `new`.

    The pipeline should never leave any; this is the GUI's guarantee when it was cancelled
    or crashed mid-photo. Returns how many were released.
    """
    if photo_ids:
        stuck = catalog.photos(status="localizing", ids=photo_ids)
        for photo in stuck:
            catalog.set_status(photo.id, "new", "localization was interrupted")
        return len(stuck)
    return 0


EXPORT_FORMATS = {  # key -> (label, writes a folder?, file suffix)
    "geojson": ("GeoJSON footprints (RFC 7946)", False, ".geojson"),
    "geotiff": ("GeoTIFFs per photo (GCPs + warped)", True, ""),
    "html": ("HTML map (offline)", False, ".html"),
    "csv": ("CSV table", False, ".csv"),
}


def available_export_formats() -> list[str]:
    """The formats whose exporter module is present in this installation."""
    import importlib.util

    modules = {"geojson": "astroapp.export.geojson", "geotiff": "astroapp.export.geotiff",
               "html": "astroapp.export.html_map", "csv": "astroapp.export.csv_export"}
    return [k for k, m in modules.items() if importlib.util.find_spec(m) is not None]


def export_job(
    catalog_path: Path,
    fmt: str,
    out: Path,
    status: Sequence[str] | None,
    ids: Sequence[int] | None,
    cancel: threading.Event,
) -> Iterator[Progress]:
    """Export the catalogue's localized photos; returns (written paths, skipped names)."""
    from astroapp.export.records import records_from_catalog

    with Catalog(catalog_path) as catalog:
        records, skipped = records_from_catalog(catalog, status=list(status) if status else None,
                                                ids=list(ids) if ids else None)
    total = len(records)
    yield Progress(0, max(total, 1), f"{total} footprints")
    if cancel.is_set():
        return [], skipped
    written: list[Path] = []
    if fmt == "geojson":
        from astroapp.export.geojson import write_geojson

        written.append(write_geojson(records, out))
    elif fmt == "csv":
        from astroapp.export.csv_export import write_csv

        written.append(write_csv(records, out))
    elif fmt == "html":
        from astroapp.export.html_map import write_html_map

        written.append(write_html_map(records, out))
    elif fmt == "geotiff":
        from astroapp.export.geotiff import export_geotiffs

        for i, rec in enumerate(records):
            if cancel.is_set():
                break
            report = export_geotiffs([rec], out)
            written += report.written
            skipped += [f"{name} ({why})" for name, why in report.failed]
            yield Progress(i + 1, total, rec.file_name)
    else:
        raise ValueError(f"unknown export format {fmt!r}; one of {', '.join(EXPORT_FORMATS)}")
    yield Progress(max(total, 1), max(total, 1), "done")
    return written, skipped
