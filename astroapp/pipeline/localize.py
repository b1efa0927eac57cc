"""Localization: retrieval (candidate tiles) -> EarthMatch coregistration -> catalogue.

For each photo: retrieve the top-k tiles, coregister the photo against the surroundings of
the candidates in rank order (photo features computed once), stop at the first confident
one, and record one `localizations` row with the candidates. A confident photo becomes
`localized` (accepted automatically, `accepted_auto = 1`); one with no confident candidate
becomes `review`, with `accepted_auto = 0` and a status reason saying why (the best footprint
found, if any, is stored for the reviewer). Only errors (an
unreadable photo, an unusable source) mark a photo `failed`; the batch goes on. Photos are
`localizing` only while being worked on: a cancel puts the current photo back to its
previous status within about a second (the cancel event is polled between iterations).

Each step is a function here (`read_localization_frame`, `retrieve_shortlist`,
`rerank_candidates`, `coregister_on`, `_store`); `localize_photo` composes them for one photo,
`iter_localize` runs a batch and yields its `Progress` events. Callers (CLI, GUI) go through
`pipeline.service.LocalizationService`, which calls these.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from astroapp.catalog.leases import localizing_reason, release_stale_localizing
from astroapp.catalog.photo_reader import PhotoReadError, read_photo
from astroapp.matching import (
    CoregCancelled,
    CoregResult,
    Matcher,
    PreparedPhoto,
    coregister,
    get_matcher,
)
from astroapp.matching.coregister import DEFAULT_ITERATIONS, DEFAULT_SIZE, coregister_dense
from astroapp.pipeline.rerank import Reranker, tile_reader
from astroapp.pipeline.tiles import SourceCache, candidate_surroundings
from astroapp.progress import Progress, ProgressFn, drain

log = logging.getLogger(__name__)

DEFAULT_K = 10
DEFAULT_MAX_CANDIDATES = 10
# Candidates the dense stage (orientation fields, ~5-15 s each) tries, best first, when
# keypoints accepted none of them: low-detail, hazy or seasonal photos (0: off).
DEFAULT_DENSE_CANDIDATES = 5
GCP_GRID = 5
MAX_STORED_CORRESPONDENCES = 500


@dataclass
class LocalizeOutcome:
    """What happened to one photo."""

    photo_id: int
    outcome: str  # "localized" (confident), "review" (no confident candidate), "failed", "cancelled"
    localization_id: int | None = None
    confidence: float | None = None
    inliers: int | None = None
    tile_id: str | None = None
    rank: int | None = None
    candidates_tried: int = 0
    reason: str | None = None
    seconds: float = 0.0


@dataclass
class LocalizeSummary:
    outcomes: list[LocalizeOutcome] = field(default_factory=list)
    cancelled: bool = False
    seconds: float = 0.0

    def count(self, outcome: str) -> int:
        return sum(1 for o in self.outcomes if o.outcome == outcome)

    @property
    def done(self) -> int:
        return sum(1 for o in self.outcomes if o.outcome != "cancelled")

    def describe(self) -> str:
        text = (f"{self.count('localized')} localized, {self.count('review')} to review, "
                f"{self.count('failed')} failed")
        return text + (" (cancelled)" if self.cancelled else "") + f" in {self.seconds:.1f} s"


def _resolve_model(model: Any, weights: Any = None, index_dir: Any = None,
                   device: str | None = None) -> Any:
    """A retrieval model: `model` itself, or loaded by name (None: the model the index was
    built with, else the bundled one) with `weights` on `device`."""
    if model is None and index_dir and not weights:  # the model the index was built with
        from astroapp.index.manifest import read_manifest

        try:
            model = read_manifest(Path(getattr(index_dir, "folder", index_dir)))["model"]["name"]
        except Exception:  # noqa: BLE001 - no readable manifest: opening the index says why
            model = None
    if model is None or isinstance(model, str):
        from astroapp.retrieval import load_model

        kwargs = {k: v for k, v in (("weights", weights), ("device", device)) if v}
        return load_model(model, **kwargs) if model else load_model(**kwargs)
    return model


def _resolve_index(index_dir: Any, model: Any) -> Any:
    from astroapp.index import TileIndex

    if isinstance(index_dir, TileIndex):
        return index_dir
    if not index_dir:
        from astroapp.index.demo import ensure_demo_index

        index_dir = ensure_demo_index(model)
    return TileIndex.open(index_dir, model=model)


def _resolve_matcher(matcher: Any) -> Matcher:
    if matcher is None or isinstance(matcher, str):
        return get_matcher(matcher or "sift")
    return matcher


def ground_homography(res: CoregResult) -> np.ndarray:
    """The result's homography as photo px (edge coordinates) -> EPSG:3857 metres: the
    surroundings grid's pixel -> metre affine after the photo -> surroundings homography, so
    the stored matrix is usable without the surroundings grid (which is not stored)."""
    xmin, _, _, ymax = res.grid.bounds_3857
    to_metres = np.array([[res.grid.res_x, 0.0, xmin], [0.0, -res.grid.res_y, ymax],
                          [0.0, 0.0, 1.0]])
    hmat = to_metres @ np.asarray(res.homography, dtype=np.float64)
    return hmat / hmat[2, 2]


def _candidate_rows(cands: Sequence[Any]) -> list[dict[str, Any]]:
    """Retrieval candidates (fresh ones or stored ones) as catalogue rows."""
    return [{"rank": c.rank, "tile_id": c.tile_id, "source_id": c.source_id, "angle": c.angle,
             "score": c.score,
             "footprint": c.footprint_list() if hasattr(c, "footprint_list") else c.footprint}
            for c in cands]


def _store(catalog: Any, photo_id: int, best: CoregResult | None, cand: Any, cands: list,
           method: dict, timings: dict) -> int:
    """One localizations row (+ its candidates): the one store step of localize and of a
    reviewer's chosen candidate. `homography` is photo px -> EPSG:3857 metres, GCPs and
    correspondences are photo px -> lon/lat (EPSG:4326), in the displayed (EXIF-upright)
    frame of the photo file."""
    values: dict[str, Any] = {
        "method": method,
        "timings": timings,
        "tile_id": cand.tile_id if cand is not None else None,
        "source_id": cand.source_id if cand is not None else None,
        "angle": (best.angle if best is not None and best.angle is not None
                  else (cand.angle if cand is not None else None)),
        "rank": cand.rank if cand is not None else None,
        "accepted_auto": bool(best is not None and best.accepted),
    }
    if best is not None:
        values.update(confidence=float(best.confidence), inliers=int(best.inliers))
        if best.has_footprint:
            corr = best.correspondences
            if len(corr) > MAX_STORED_CORRESPONDENCES:
                keep = np.linspace(0, len(corr) - 1, MAX_STORED_CORRESPONDENCES).round().astype(int)
                corr = corr[keep]
            # correspondences: photo px -> lon/lat of the matched surroundings point
            lon, lat = best.grid.pixel_to_lonlat(corr[:, 2], corr[:, 3])
            values.update(
                footprint=best.footprint,
                homography=ground_homography(best),
                gcps=[list(g) for g in best.gcps(GCP_GRID)],
                correspondences=[[round(float(a), 2), round(float(b), 2), float(c), float(d)]
                                 for a, b, c, d in zip(corr[:, 0], corr[:, 1], np.ravel(lon),
                                                       np.ravel(lat), strict=True)],
            )
    return store_localization(catalog, photo_id, values, cands)


def store_localization(catalog: Any, photo_id: int, values: dict[str, Any], cands: Sequence[Any]
                       ) -> int:
    """The one store step (automatic, chosen-candidate and manual results): a localizations
    row of `values` (its method marked with the stored frames) plus its candidates, in one
    transaction; it becomes the photo's current localization."""
    from astroapp.catalog.db import GROUND_HOMOGRAPHY

    method = {**(values.get("method") or {}), "homography": GROUND_HOMOGRAPHY,
              "gcps": "photo px -> EPSG:4326 lon/lat"}
    with catalog.transaction():
        loc_id = catalog.add_localization(photo_id, **{**values, "method": method})
        catalog.add_candidates(loc_id, _candidate_rows(cands))
    return loc_id


def _review_reason(best: CoregResult | None, best_cand: Any, tried: int, cands: Sequence[Any]
                   ) -> str | None:
    """Why a localization is not accepted automatically (None when it is)."""
    if best is not None and best.accepted:
        return None
    if best is not None and best.homography is not None:
        return (f"no confident candidate among {tried} (best: rank "
                f"{best_cand.rank}, {best.inliers} inliers < {best.threshold})")
    if cands:
        return f"no candidate of {tried} could be coregistered"
    return "retrieval found no candidate tiles"


def photo_hints(catalog: Any, photo: Any) -> Any:
    """The photo's viewing hints (NASA focal length, tilt, altitude; EXIF focal length and
    camera) for coregistration's scale search."""
    from astroapp.geo.viewing import hints_from_metadata

    return hints_from_metadata(catalog.nasa_metadata(photo.id), photo)


def coregister_candidate(
    catalog: Any,
    photo_id: int,
    candidate_rank: int,
    *,
    index: Any = None,
    matcher: Any = None,
    size: int = DEFAULT_SIZE,
    iterations: int = DEFAULT_ITERATIONS,
    reviewer: str | None = None,
    cancel: threading.Event | None = None,
) -> LocalizeOutcome:
    """Coregister a photo against one of its stored retrieval candidates (a reviewer's pick)
    and store the result like `localize_photo` does (same frame, same store step): a new
    localization with the same candidate list becomes the photo's current one.

    `index`: the tile index (folder or TileIndex) whose sources the candidates come from;
    None opens the candidate's source by its id. A photo a person has already accepted or
    rejected keeps that status; otherwise it becomes `localized` (confident) or `review`.
    Raises CoregCancelled on cancel, ValueError when there is no such candidate.
    """
    t0 = time.perf_counter()
    photo = catalog.get_photo(photo_id)
    loc = catalog.latest_localization(photo_id) if photo is not None else None
    if photo is None or loc is None:
        raise ValueError(f"photo {photo_id} has no retrieval candidates: localize it first")
    stored = catalog.candidates(loc.id)
    chosen = next((c for c in stored if c.rank == candidate_rank), None)
    if chosen is None:
        raise ValueError(f"photo {photo_id} has no candidate of rank {candidate_rank}")
    if index is not None and not hasattr(index, "folder"):
        from astroapp.index import TileIndex

        index = TileIndex.open(index)
    matcher = _resolve_matcher(matcher)
    source = SourceCache(index).get(chosen.source_id or "bluemarble")
    frame = read_photo(photo.path, min_side=2 * size)
    prepared = PreparedPhoto(frame.rgb, matcher, size, frame_size=frame.file_size)
    res = coregister_on(prepared, source, chosen, size, iterations=iterations, cancel=cancel,
                        hints=photo_hints(catalog, photo), stage="both")
    method = dict(loc.method) if isinstance(loc.method, dict) else {}
    method.pop("tried", None)
    cal = getattr(matcher, "calibration", None)
    method.update(stage="coregistration", matcher=res.matcher, size=size, iterations=iterations,
                  coregistration_stage=res.stage,
                  matcher_threshold=res.threshold,
                  matcher_calibrated=getattr(cal, "calibrated", None),
                  chosen_by=reviewer, chosen_rank=candidate_rank)
    timings = {"coregistration_s": round(res.seconds, 4),
               "total_s": round(time.perf_counter() - t0, 4), "candidates_tried": 1}
    loc_id = _store(catalog, photo_id, res, chosen, stored, method, timings)
    reason = _review_reason(res, chosen, 1, stored)
    if reason is not None:
        reason = f"candidate #{candidate_rank} chosen by {reviewer or 'a reviewer'}: {reason}"
    with catalog.transaction():
        current = catalog.get_photo(photo_id)
        if current is not None and current.status not in ("accepted", "rejected"):
            catalog.set_status(photo_id, "localized" if res.accepted else "review", reason)
    return LocalizeOutcome(
        photo_id=photo_id, outcome="localized" if res.accepted else "review",
        localization_id=loc_id, confidence=float(res.confidence), inliers=int(res.inliers),
        tile_id=chosen.tile_id, rank=chosen.rank, candidates_tried=1, reason=reason,
        seconds=time.perf_counter() - t0)


class SurroundingsUnavailable(RuntimeError):
    """A candidate's surroundings could not be read from its source."""


def read_localization_frame(photo: Any, model: Any, size: int) -> Any:
    """The photo decoded once for a localization (retrieval, re-ranking, coregistration):
    a PhotoFrame at least twice the larger of the matcher's and the model's input side."""
    try:
        return read_photo(photo.path, min_side=2 * max(size, *map(int, model.input_size)))
    except PhotoReadError as exc:
        raise RuntimeError(f"retrieval: {exc}") from exc


def shortlist_size(catalog: Any, photo_id: int, index: Any, k: int, reranker: Reranker | None,
                   use_prior: bool = True) -> int:
    """How many candidates retrieval hands on: `k`, or with a reranker its budget for the
    photo's search area (every tile of a small area is verified)."""
    if reranker is None:
        return k
    from astroapp.pipeline.retrieve import SearchPrior, photo_prior

    prior = photo_prior(catalog, photo_id) if use_prior else SearchPrior()
    n_area = (len(index.tiles_in_region(prior.region, prior.width_km))
              if prior.region is not None else len(index))
    return max(k, reranker.budget(n_area))


def retrieve_shortlist(catalog: Any, photo_id: int, frame: Any, index: Any, model: Any, k: int,
                       use_prior: bool = True) -> Any:
    """The retrieval step for one decoded photo: its RetrievalResult (not stored); raises
    RuntimeError with retrieval's reason when it failed."""
    from astroapp.pipeline.retrieve import retrieve_candidates

    found = retrieve_candidates(catalog, [photo_id], index, model, k=k, use_prior=use_prior,
                                store=False, frames={photo_id: frame})
    if not found or found[0].error:
        raise RuntimeError(found[0].error if found else "retrieval returned nothing")
    return found[0]


def rerank_candidates(reranker: Reranker, frame: Any, found: Any, sources: SourceCache, *,
                      budget: int | None = None, cancel: threading.Event | None = None
                      ) -> list[Any]:
    """The re-ranking step: retrieval's candidates in the order geometric verification
    gives them; raises CoregCancelled on cancel."""
    width = found.width_km
    cands = reranker.rerank(frame.rgb, list(found.candidates), tile_reader(sources, reranker.size),
                            cancel=cancel, budget=budget,
                            photo_width_km=math.sqrt(width[0] * width[1]) if width else None)
    if cancel is not None and cancel.is_set():
        raise CoregCancelled()
    return cands


def _better(res: CoregResult, best: CoregResult | None) -> bool:
    """Whether `res` replaces the best result so far: any footprint beats none; inlier
    counts compare within a stage, confidences (calibrated per stage) across stages."""
    if best is None:
        return True
    if res.homography is None:
        return False
    if best.homography is None:
        return True
    if res.stage == best.stage:
        return res.inliers > best.inliers
    return res.accepted or res.confidence > best.confidence


def coregister_on(prepared: PreparedPhoto, source: Any, cand: Any, size: int, *,
                  iterations: int = DEFAULT_ITERATIONS, cancel: threading.Event | None = None,
                  hints: Any = None, stage: str = "keypoints") -> CoregResult:
    """The coregistration step: the prepared photo against one candidate's 3x3 surroundings
    (read from `source`); SurroundingsUnavailable when they cannot be read, CoregCancelled
    on cancel. `stage`: "keypoints" (the matcher's), "dense" (orientation fields only) or
    "both" (dense when keypoints accept nothing)."""
    try:
        surr, grid = candidate_surroundings(source, cand, size)
    except Exception as exc:  # noqa: BLE001 - any source failure: the caller decides
        raise SurroundingsUnavailable(str(exc)) from exc
    if cancel is not None and cancel.is_set():
        raise CoregCancelled()
    if stage == "dense":
        return coregister_dense(prepared, surr, grid=grid, cancel=cancel, hints=hints)
    return coregister(prepared, surr, grid=grid, angle=cand.angle, iterations=iterations,
                      cancel=cancel, hints=hints, dense=stage == "both")


def localize_photo(
    catalog: Any,
    photo_id: int,
    index: Any,
    model: Any,
    matcher: Matcher,
    sources: SourceCache,
    *,
    k: int = DEFAULT_K,
    max_candidates: int = DEFAULT_MAX_CANDIDATES,
    size: int = DEFAULT_SIZE,
    iterations: int = DEFAULT_ITERATIONS,
    use_prior: bool = True,
    reranker: Reranker | None = None,
    cancel: threading.Event | None = None,
    dense_candidates: int = DEFAULT_DENSE_CANDIDATES,
) -> LocalizeOutcome:
    """Localize one photo (status already `localizing`); raises CoregCancelled on cancel.

    With a `reranker`, its shortlist is retrieved and verified geometrically first; the
    best `k` of the new order are kept and coregistered in that order. When keypoints
    accept no candidate, the dense stage tries the first `dense_candidates` of them.
    """
    t0 = time.perf_counter()
    photo = catalog.get_photo(photo_id)
    if photo is None:
        raise KeyError(f"no photo with id {photo_id} in the catalogue")
    shortlist = shortlist_size(catalog, photo_id, index, k, reranker, use_prior)
    frame = read_localization_frame(photo, model, size)
    found = retrieve_shortlist(catalog, photo_id, frame, index, model, shortlist, use_prior)
    cands = list(found.candidates)
    if cancel is not None and cancel.is_set():
        raise CoregCancelled()
    t_retrieval = time.perf_counter() - t0
    if reranker is not None and cands:
        cands = rerank_candidates(reranker, frame, found, sources, budget=shortlist, cancel=cancel)
    cands = cands[:k]
    t_rerank = time.perf_counter() - t0 - t_retrieval
    prepared = PreparedPhoto(frame.rgb, matcher, size, frame_size=frame.file_size)
    hints = photo_hints(catalog, photo)
    best: CoregResult | None = None
    best_cand = None
    tried = 0
    per_candidate: list[dict[str, Any]] = []
    t1 = time.perf_counter()
    # Keypoints on every candidate first (fast, and what most photos need); then, when none
    # is accepted, the dense stage on the best few.
    dense = cands[:min(max_candidates, dense_candidates)]
    passes = [("keypoints", cands[:max_candidates]), ("dense", dense)]
    for stage, todo in passes:
        if best is not None and best.accepted:
            break
        for cand in todo:
            if cancel is not None and cancel.is_set():
                raise CoregCancelled()
            tried += stage == "keypoints"
            try:
                res = coregister_on(prepared, sources.get(cand.source_id), cand, size,
                                    iterations=iterations, cancel=cancel, hints=hints, stage=stage)
            except SurroundingsUnavailable as exc:  # an unreadable candidate: try the next one
                log.warning("photo %s: candidate %s unavailable: %s", photo_id, cand.tile_id, exc)
                per_candidate.append({"rank": cand.rank, "tile_id": cand.tile_id, "stage": stage,
                                      "error": f"surroundings unavailable: {exc}"})
                continue
            per_candidate.append({"rank": cand.rank, "tile_id": cand.tile_id, "stage": stage,
                                  "inliers": res.inliers, "confidence": round(res.confidence, 6),
                                  "reason": res.reason, "seconds": round(res.seconds, 3)})
            if _better(res, best):
                best, best_cand = res, cand
            if res.accepted:
                break
    t_coreg = time.perf_counter() - t1
    errors = [c["error"] for c in per_candidate if "error" in c]
    if errors and len(errors) == len(per_candidate):
        raise RuntimeError(f"no candidate's surroundings could be read ({errors[0]})")
    if best_cand is None and cands:
        best_cand = cands[0]
    cal = getattr(matcher, "calibration", None)
    method = {
        "stage": "coregistration",
        "model": index.fingerprint.name,
        "index": str(index.folder),
        # the result's own (a dense result's are the dense stage's)
        "matcher": best.matcher if best is not None else matcher.name,
        "matcher_threshold": best.threshold if best is not None else getattr(cal, "threshold", None),
        "matcher_calibrated": getattr(cal, "calibrated", None),
        "coregistration_stage": best.stage if best is not None else None,
        "dense_candidates": len(dense),
        "size": size,
        "iterations": iterations,
        "k": k,
        "rerank": None if reranker is None else {
            **reranker.settings(), "inliers": [c.inliers for c in cands]},
        "tried": per_candidate,
    }
    timings = {"retrieval_s": round(t_retrieval, 4), "rerank_s": round(t_rerank, 4),
               "coregistration_s": round(t_coreg, 4),
               "total_s": round(time.perf_counter() - t0, 4), "candidates_tried": tried}
    loc_id = _store(catalog, photo_id, best, best_cand, cands, method, timings)
    accepted = best is not None and best.accepted
    reason = _review_reason(best, best_cand, tried, cands)
    catalog.set_status(photo_id, "localized" if accepted else "review", reason)
    return LocalizeOutcome(
        photo_id=photo_id,
        outcome="localized" if accepted else "review",
        localization_id=loc_id,
        confidence=float(best.confidence) if best is not None else None,
        inliers=int(best.inliers) if best is not None else None,
        tile_id=best_cand.tile_id if best_cand is not None else None,
        rank=best_cand.rank if best_cand is not None else None,
        candidates_tried=tried,
        reason=reason,
        seconds=time.perf_counter() - t0,
    )


def iter_localize(
    catalog: Any,
    photo_ids: Sequence[int],
    index_dir: Any = None,
    model: Any = None,
    matcher: Any = None,
    cancel: threading.Event | None = None,
    *,
    k: int = DEFAULT_K,
    max_candidates: int = DEFAULT_MAX_CANDIDATES,
    size: int = DEFAULT_SIZE,
    iterations: int = DEFAULT_ITERATIONS,
    use_prior: bool = True,
    rerank: bool | Reranker = True,
    weights: Any = None,
    dense_candidates: int = DEFAULT_DENSE_CANDIDATES,
) -> Generator[Progress, None, LocalizeSummary]:
    """Localize photos one by one, recording each result in the catalogue; returns the
    LocalizeSummary (superqt's `thread_worker` drives this generator directly).

    Yields two `Progress` events (stage "localize") per photo, `item` the photo's name (NASA
    id, else file name) and `photo_id` its id: one as it starts (`done` = photos finished
    before it, message "localizing") and one when it is finished (`done` counting it, message
    its outcome, `result` its LocalizeOutcome).

    `index_dir`: a tile index folder or open TileIndex (None: the demo world's index);
    `model`: a retrieval model or its name (None: the bundled one); `matcher`: a Matcher or
    its name (None: "sift"); `weights`: the weights file when `model` is a name; `rerank`:
    verify a shortlist geometrically before coregistration (True: `Reranker()` defaults);
    `dense_candidates`: how many candidates the dense stage tries when keypoints accept none.
    `cancel` set -> stops within about a second, the current photo back to its old status.
    """
    t0 = time.perf_counter()
    ids = [int(p) for p in photo_ids]
    total = len(ids)
    summary = LocalizeSummary()
    model = _resolve_model(model, weights, index_dir)
    index = _resolve_index(index_dir, model)
    matcher = _resolve_matcher(matcher)
    sources = SourceCache(index)
    reranker = (Reranker() if rerank is True else rerank) or None
    release_stale_localizing(catalog)  # photos a killed worker left in `localizing`
    for n, pid in enumerate(ids):
        if cancel is not None and cancel.is_set():
            summary.cancelled = True
            break
        photo = catalog.get_photo(pid)
        if photo is None:
            out = LocalizeOutcome(pid, "failed", reason=f"no photo with id {pid}")
            summary.outcomes.append(out)
            yield _finished(n + 1, total, f"photo {pid}", out)
            continue
        name = photo.label
        previous = photo.status
        previous_reason = getattr(photo, "status_reason", None)
        catalog.set_status(pid, "localizing", localizing_reason())  # the lease: who works on it
        yield Progress("localize", n, total, item=name, message="localizing", photo_id=pid)
        try:
            out = localize_photo(catalog, pid, index, model, matcher, sources, k=k,
                                 max_candidates=max_candidates, size=size,
                                 iterations=iterations, use_prior=use_prior, reranker=reranker,
                                 cancel=cancel, dense_candidates=dense_candidates)
        except CoregCancelled:
            catalog.set_status(pid, previous, previous_reason)
            summary.outcomes.append(LocalizeOutcome(pid, "cancelled"))
            summary.cancelled = True
            break
        except Exception as exc:  # noqa: BLE001 - one bad photo must not stop the batch
            reason = f"localization: {exc}"
            log.warning("photo %s failed: %s", pid, exc, exc_info=log.isEnabledFor(logging.DEBUG))
            catalog.set_status(pid, "failed", reason)
            out = LocalizeOutcome(pid, "failed", reason=reason)
        summary.outcomes.append(out)
        yield _finished(n + 1, total, name, out)
    summary.seconds = time.perf_counter() - t0
    return summary


def localize_photos(
    catalog: Any,
    photo_ids: Sequence[int],
    index_dir: Any = None,
    model: Any = None,
    matcher: Any = None,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    **options: Any,
) -> LocalizeSummary:
    """`iter_localize` with its events handed to `progress` (see there for the events and
    the keyword options k, max_candidates, size, iterations, use_prior, rerank, weights)."""
    return drain(iter_localize(catalog, photo_ids, index_dir, model, matcher, cancel, **options),
                 progress)


def outcome_text(out: LocalizeOutcome) -> str:
    """What happened to a photo, in a few words: 'localized (87 inliers, rank 2)'."""
    if out.outcome == "localized":
        return f"localized ({out.inliers} inliers, rank {out.rank})"
    if out.outcome == "review":
        return f"to review: {out.reason}"
    return f"{out.outcome}: {out.reason}" if out.reason else out.outcome


def _finished(done: int, total: int, name: str, out: LocalizeOutcome) -> Progress:
    return Progress("localize", done, total, item=name, message=outcome_text(out),
                    photo_id=out.photo_id, result=out)
