"""The GUI's background jobs: the app's settings turned into pipeline calls, run in workers.

Qt-free glue only: every localization step goes through the pipeline's one
`LocalizationService` (the CLI calls the same), built here from the app's settings. Each job
is a generator a `gui.workers.Job` drives on a worker thread; it yields the core's
`astroapp.progress.Progress` events unchanged and returns the core's summary. Each job opens
its own `Catalog`, because SQLite connections belong to the thread that opened them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from astroapp.catalog.db import Catalog
from astroapp.gui.workers import Progress, drive

if TYPE_CHECKING:  # the pipeline (OpenCV, torch) is imported by the jobs, off the startup path
    from astroapp.pipeline.service import LocalizationService, LocalizeSettings


def import_job(catalog_path: Path, paths: Sequence[str | Path], cancel: threading.Event) -> Iterator[Progress]:
    """Import files, folders and zip rolls, one event per file; returns the ImportReport."""
    from astroapp.catalog.importer import iter_import

    report: list = []
    with Catalog(catalog_path) as catalog:
        yield from iter_import(catalog, [Path(p) for p in paths], cancel=cancel, report=report)
    return report[0] if report else None


def load_retrieval_model(settings) -> Any:
    """The retrieval model the settings name (bundled by default), on the chosen device."""
    from astroapp.retrieval import load_model

    kwargs: dict[str, Any] = {"weights": settings.weights or None, "device": settings.device or None}
    if settings.model:
        kwargs["name"] = settings.model
    return load_model(**kwargs)


def localize_settings(settings) -> LocalizeSettings:
    """The localization options of the app's settings: re-ranking of `verify_shortlist`
    tiles (0: off), plus any `localize_options` (k, max_candidates, size...)."""
    from astroapp.pipeline.service import LocalizeSettings

    return LocalizeSettings.from_options(settings.localize_options,
                                         rerank=int(settings.verify_shortlist))


def service_for(catalog: Catalog, settings) -> LocalizationService:
    """The localization service as the app's settings configure it. With an index and no
    model named, the index's own model is used (an index built with another model than the
    bundled one is then used, not refused); no index: the demo world's."""
    from astroapp.pipeline.service import LocalizationService

    return LocalizationService(catalog, index=settings.index_dir or None,
                               model=settings.model or None, matcher=settings.matcher or None,
                               settings=localize_settings(settings),
                               weights=settings.weights or None, device=settings.device or None)


def localize_job(catalog_path: Path, photo_ids: Sequence[int], settings,
                 cancel: threading.Event) -> Iterator[Progress]:
    """Retrieval + re-ranking + coregistration of the photos, stored in the catalogue: the
    "localize" events per photo (after the demo world's "index" events the first time the
    bundled index is built); returns the LocalizeSummary.

    The service runs in `drive`'s helper thread (with its own catalogue connection)."""

    def run(progress, cancel):
        with Catalog(catalog_path) as catalog:
            service = service_for(catalog, settings)
            service.ensure_index(progress, cancel)  # no index: the demo world's, built once
            return service.localize(list(photo_ids), progress, cancel)

    return (yield from drive(run, cancel))


def catalog_service(catalog: Catalog) -> LocalizationService:
    """The service on an open catalogue for the steps that need no model (review decisions,
    manual fits, releasing a cancelled batch's photos): nothing is loaded until used."""
    from astroapp.pipeline.service import LocalizationService

    return LocalizationService(catalog)


def release_stuck(catalog: Catalog, photo_ids: Sequence[int]) -> int:
    """Photos of a finished or cancelled batch still in `localizing` go back to `new` (the
    service's guarantee for a batch cancelled or crashed mid-photo); how many."""
    return catalog_service(catalog).release_stuck(photo_ids)


EXPORT_LABELS = {  # format -> (label, writes a folder?, file suffix)
    "geojson": ("GeoJSON footprints (RFC 7946)", False, ".geojson"),
    "geotiff": ("GeoTIFFs per photo (GCPs + warped)", True, ""),
    "html": ("HTML map (offline)", False, ".html"),
    "csv": ("CSV table", False, ".csv"),
}


def available_export_formats() -> list[str]:
    """The formats the export module writes, in its order."""
    from astroapp.export import FORMATS

    return list(FORMATS)


def export_label(fmt: str) -> tuple[str, bool, str]:
    return EXPORT_LABELS.get(fmt, (fmt, False, f".{fmt}"))


def export_job(
    catalog_path: Path,
    fmt: str,
    out: Path,
    status: Sequence[str] | None,
    ids: Sequence[int] | None,
    cancel: threading.Event,
) -> Iterator[Progress]:
    """Export the catalogue's localized photos with the export module (its "export" events);
    returns its ExportResult."""
    from astroapp.export import export_records, records_from_catalog

    with Catalog(catalog_path) as catalog:
        records, skipped = records_from_catalog(catalog, status=list(status) if status else None,
                                                ids=list(ids) if ids else None)
    yield Progress("export", 0, None, item=Path(out).name, message=f"{len(records)} footprints")

    def run(progress, cancel):  # single-file formats take seconds; GeoTIFFs report per photo
        return export_records(records, fmt, out, cancel=cancel, progress=progress)

    result = yield from drive(run, cancel)
    result.skipped = skipped
    return result


def coregister_candidate_job(
    catalog_path: Path,
    photo_id: int,
    candidate_rank: int,
    settings,
    reviewer: str,
    cancel: threading.Event,
) -> Iterator[Progress]:
    """Coregister the photo against one retrieval candidate the reviewer picked, through the
    service (the same frame and store step as localize). Returns the LocalizeOutcome's
    figures as a dict, None when cancelled."""
    from astroapp.matching import CoregCancelled

    with Catalog(catalog_path) as catalog:
        photo = catalog.get_photo(photo_id)
        name = photo.label if photo is not None else ""
        yield Progress("coregister", 0, 1, item=name, photo_id=photo_id,
                       message=f"coregistering with candidate #{candidate_rank}…")
        try:
            out = service_for(catalog, settings).coregister_candidate(
                photo_id, candidate_rank, reviewer=reviewer, cancel=cancel)
        except CoregCancelled:
            return None
        loc = catalog.get_localization(out.localization_id)
    yield Progress("coregister", 1, 1, item=name, photo_id=photo_id, result=out,
                   message=f"candidate #{candidate_rank}: {out.inliers} inliers, confidence "
                           f"{out.confidence:.3f}")
    return {"photo_id": photo_id, "localization_id": out.localization_id,
            "inliers": out.inliers, "confidence": out.confidence,
            "footprint": bool(loc is not None and loc.footprint), "reason": out.reason}
