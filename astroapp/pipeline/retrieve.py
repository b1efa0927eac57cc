"""Retrieval stage: embed catalogue photos (at 0 degrees), search the tile index, store the
top-k candidate tiles in the catalogue.

Each processed photo gets one `localizations` row (method.stage = "retrieval", the top
candidate's tile/angle in tile_id/source_id/angle/rank=1, no footprint or confidence: a
retrieval is not a verified localization) and its candidates in `candidates`
(rank, tile_id, source_id, angle, score, footprint). Coregistration (`astroapp localize`)
reads them back with `catalog.candidates(result.localization_id)` or uses the returned
`RetrievalResult.candidates` directly.

    from astroapp.pipeline.retrieve import retrieve_candidates
    results = retrieve_candidates(catalog, photo_ids, "idx/", model, k=10)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from astroapp.catalog.photo_reader import PhotoFrame, read_photo
from astroapp.index import Candidate, Region, TileIndex, describe_queries
from astroapp.progress import Progress, ProgressFn

log = logging.getLogger(__name__)

DEFAULT_MAX_TILT_DEG = 50.0


@dataclass
class RetrievalResult:
    photo_id: int
    candidates: list[Candidate] = field(default_factory=list)
    localization_id: int | None = None   # the catalogue row holding the candidates
    region: Region | None = None         # the geographic prior used, if any
    width_km: tuple[float, float] | None = None  # the photo's expected ground width, if known
    error: str | None = None             # why this photo could not be processed
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def photo_region(catalog: Any, photo_id: int,
                 max_tilt_deg: float = DEFAULT_MAX_TILT_DEG) -> Region | None:
    """The circle around the photo's nadir (NASA metadata) reachable at max_tilt_deg (or at
    NASA's own tilt estimate + 10 degrees, when that is larger: the top of the range for a
    tilt code, NV / LO / HO)."""
    from astroapp.geo.viewing import tilt_range

    meta = catalog.nasa_metadata(photo_id)
    if meta is None or meta.nadir_lon is None or meta.nadir_lat is None:
        return None
    alt = meta.altitude_km if meta.altitude_km and meta.altitude_km > 100 else 420.0
    tilt = max_tilt_deg
    tilts = tilt_range(meta.tilt_deg) or tilt_range(getattr(meta, "tilt_code", None))
    if tilts is not None:
        tilt = max(tilt, min(tilts[1] + 10.0, 89.0))
    try:
        return Region.around_nadir(float(meta.nadir_lon), float(meta.nadir_lat), alt, tilt)
    except ValueError as exc:
        log.warning("photo %s: ignoring NASA nadir point (%s)", photo_id, exc)
        return None


@dataclass(frozen=True)
class SearchPrior:
    """What the catalogue says about where to search for a photo: the circle around its
    nadir and its expected ground width (km, min-max; picks the zooms that fit)."""

    region: Region | None = None
    width_km: tuple[float, float] | None = None


def photo_prior(catalog: Any, photo_id: int,
                max_tilt_deg: float = DEFAULT_MAX_TILT_DEG) -> SearchPrior:
    """The photo's search circle (`photo_region`) and expected ground width from NASA's focal
    length, tilt and altitude or the photo's EXIF focal length (`geo.viewing`)."""
    from astroapp.geo.viewing import hints_from_metadata

    width = hints_from_metadata(catalog.nasa_metadata(photo_id),
                                catalog.get_photo(photo_id)).ground_width_km()
    return SearchPrior(photo_region(catalog, photo_id, max_tilt_deg), width)


def retrieve_candidates(
    catalog: Any,
    photo_ids: Sequence[int],
    index: TileIndex | str | Path,
    model: Any,
    k: int = 10,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    *,
    use_prior: bool = True,
    max_tilt_deg: float = DEFAULT_MAX_TILT_DEG,
    batch_size: int = 16,
    store: bool = True,
    frames: Mapping[int, PhotoFrame] | None = None,
) -> list[RetrievalResult]:
    """Top-k candidate tiles for each photo, stored in the catalogue (when `store`).

    `index`: an open TileIndex or its folder (opened here, refusing another model).
    `use_prior`: restrict to the circle around the NASA nadir point when the photo has one.
    A photo that cannot be read is marked failed (with the reason) and the rest go on.
    `frames`: photos the caller already decoded (by id), so that a photo is decoded once.
    `progress` gets one `Progress` per photo after its batch (stage "retrieve", `item` the
    photo's name, `photo_id`, `result` its RetrievalResult); `cancel` set -> stops between
    batches (the photos done so far are stored). Returns one result per processed photo.
    """
    if not isinstance(index, TileIndex):
        index = TileIndex.open(index, model=model)
    else:
        index.adapt_model(model)
    if index.fingerprint.name != getattr(model, "name", index.fingerprint.name) or (
            index.dim != int(model.descriptor_dim)):
        from astroapp.index.manifest import model_fingerprint
        index.fingerprint.check_same(model_fingerprint(model), f"the index in {index.folder}")
    target = max(int(s) for s in model.input_size)
    method = {
        "stage": "retrieval",
        "model": index.fingerprint.name,
        "weights_sha256": index.fingerprint.weights_sha256,
        "index": str(index.folder),
        "index_type": index.index_type,
        "k": int(k),
    }
    ids = [int(p) for p in photo_ids]
    results: list[RetrievalResult] = []
    done = 0
    for start in range(0, len(ids), batch_size):
        if cancel is not None and cancel.is_set():
            break
        batch = ids[start : start + batch_size]
        t0 = time.perf_counter()
        images, ok_ids = [], []
        first = len(results)
        names: dict[int, str] = {}
        for pid in batch:
            photo = catalog.get_photo(pid)
            names[pid] = photo.label if photo is not None else f"photo {pid}"
            try:
                if photo is None:
                    raise KeyError(f"no photo with id {pid} in the catalogue")
                frame = (frames or {}).get(pid) or read_photo(photo.path, min_side=2 * target)
                images.append(frame.rgb)
                ok_ids.append(pid)
            except (OSError, ValueError, KeyError) as exc:
                reason = f"retrieval: {exc}"
                results.append(RetrievalResult(pid, error=reason))
                if photo is not None and store:
                    catalog.set_status(pid, "failed", reason)
                log.warning("photo %s: %s", pid, exc)
        if ok_ids:
            desc = describe_queries(model, images, batch_size=batch_size)
            priors = [photo_prior(catalog, pid, max_tilt_deg) if use_prior else SearchPrior()
                      for pid in ok_ids]
            found = index.search(desc, k=k, region=[p.region for p in priors],
                                 width_km=[p.width_km for p in priors])
            per_photo = (time.perf_counter() - t0) / len(ok_ids)
            for pid, cands, prior in zip(ok_ids, found, priors, strict=True):
                reg = prior.region
                res = RetrievalResult(pid, cands, region=reg, width_km=prior.width_km,
                                      seconds=per_photo)
                if store:
                    res.localization_id = _store(catalog, pid, cands, reg, method, per_photo)
                results.append(res)
        for res in results[first:]:
            done += 1
            if progress is not None:
                progress(Progress("retrieve", done, len(ids), item=names[res.photo_id],
                                  message=res.error or f"{len(res.candidates)} candidates",
                                  photo_id=res.photo_id, result=res))
    return results


def _store(catalog: Any, photo_id: int, cands: list[Candidate], region: Region | None,
           method: dict, seconds: float) -> int:
    m = dict(method)
    if region is not None:
        m["prior"] = {"lon": region.lon, "lat": region.lat, "radius_km": region.radius_km}
    top = cands[0] if cands else None
    with catalog.transaction():
        loc_id = catalog.add_localization(
            photo_id,
            method=m,
            tile_id=top.tile_id if top else None,
            source_id=top.source_id if top else None,
            angle=top.angle if top else None,
            rank=1 if top else None,
            timings={"retrieval_s": round(seconds, 4)},
        )
        catalog.add_candidates(loc_id, [
            {"rank": c.rank, "tile_id": c.tile_id, "source_id": c.source_id, "angle": c.angle,
             "score": c.score, "footprint": c.footprint_list()} for c in cands])
    return loc_id
