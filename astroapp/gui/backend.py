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
from astroapp.gui.workers import Progress, drive

ProgressFn = Callable[..., None]


def import_job(catalog_path: Path, paths: Sequence[str | Path], cancel: threading.Event) -> Iterator[Progress]:
    """Import files, folders and zip rolls, one report per file; returns the ImportReport."""
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

    index_dir = settings.index_dir or None
    # With an index and no model named, the index's own model (localize reads its manifest):
    # an index built with another model than the bundled one is then used, not refused.
    model = None
    if index_dir is None or settings.model or settings.weights:
        model = load_retrieval_model(settings)
    if index_dir is None:  # the bundled default: the demo world's index, built on first use
        from astroapp.index.demo import ensure_demo_index

        index_dir = ensure_demo_index(model, cancel=cancel, progress=progress)
    with Catalog(catalog_path) as catalog:
        return localize_photos(
            catalog,
            list(photo_ids),
            index_dir=index_dir,
            model=model,
            matcher=settings.matcher or None,
            progress=progress,
            cancel=cancel,
            **{"rerank": _reranker(settings), **dict(settings.localize_options or {})},
        )


def _reranker(settings: Any) -> Any:
    """The re-ranking the settings ask for (False: off)."""
    if settings.verify_shortlist <= 0:
        return False
    from astroapp.pipeline.rerank import Reranker

    return Reranker(shortlist=settings.verify_shortlist)


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
    """Export the catalogue's localized photos with the export module; returns its ExportResult."""
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
    pipeline's `coregister_candidate` (the same frame and store step as localize). Returns
    the LocalizeOutcome's figures as a dict, None when cancelled."""
    from astroapp.matching import CoregCancelled
    from astroapp.pipeline.localize import coregister_candidate

    yield Progress("coregister", 0, 1, message=f"coregistering with candidate #{candidate_rank}…",
                   photo_id=photo_id)
    opts = dict(settings.localize_options or {})
    kwargs = {k: int(opts[k]) for k in ("size", "iterations") if k in opts}
    with Catalog(catalog_path) as catalog:
        try:
            out = coregister_candidate(catalog, photo_id, candidate_rank,
                                       index=settings.index_dir or None,
                                       matcher=settings.matcher or None, reviewer=reviewer,
                                       cancel=cancel, **kwargs)
        except CoregCancelled:
            return None
        loc = catalog.get_localization(out.localization_id)
    yield Progress("coregister", 1, 1, message=f"candidate #{candidate_rank}: {out.inliers} "
                   f"inliers, confidence {out.confidence:.3f}", photo_id=photo_id, result=out)
    return {"photo_id": photo_id, "localization_id": out.localization_id,
            "inliers": out.inliers, "confidence": out.confidence,
            "footprint": bool(loc is not None and loc.footprint), "reason": out.reason}
