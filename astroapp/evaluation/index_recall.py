"""Retrieval recall of a model + tile index on photos with known footprints (EarthLoc's
criterion: a candidate is correct when its footprint intersects the photo's), optionally after
geometric re-ranking; what `astroapp index eval` and `benchmarks/rerank_speed.py` report."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from astroapp.index.embed import describe_queries
from astroapp.index.region import Region


@dataclass
class Query:
    image: np.ndarray               # RGB uint8
    footprint: Any                  # geo Footprint: the truth
    nadir: tuple[float, float] | None = None
    altitude_km: float = 420.0


def retrieval_recall(index: Any, model: Any, queries: Sequence[Query],
                     ks: Sequence[int] = (1, 10), use_prior: bool = False,
                     max_tilt_deg: float = 50.0, reranker: Any = None) -> dict[str, float]:
    """recall@k for each k, and time per query (embedding excluded): the search, plus the
    geometric re-ranking of its shortlist when a `reranker` is given."""
    if not queries:
        raise ValueError("no queries to evaluate")
    kmax = max(ks)
    desc = describe_queries(model, [q.image for q in queries])
    regions = [Region.around_nadir(*q.nadir, altitude_km=q.altitude_km, max_tilt_deg=max_tilt_deg)
               if use_prior and q.nadir is not None else None for q in queries]
    t0 = time.perf_counter()
    found = index.search(desc, k=max(kmax, reranker.shortlist if reranker else 0), region=regions)
    if reranker is not None:
        from astroapp.pipeline.rerank import tile_reader

        read_tile = tile_reader(index, reranker.size)
        found = [reranker.rerank(q.image, cands, read_tile) for q, cands in zip(queries, found, strict=True)]
    ms = (time.perf_counter() - t0) * 1000 / len(queries)
    first_hit = []
    for q, cands in zip(queries, found, strict=True):
        hit = next((c.rank for c in cands if c.footprint.intersects(q.footprint)), None)
        first_hit.append(hit)
    out = {f"recall@{k}": float(np.mean([h is not None and h <= k for h in first_hit]))
           for k in ks}
    out["queries"] = len(queries)
    out["ms_per_query"] = ms
    return out


def render_queries(n: int = 100, seed: int = 0, size: int = 512, source: Any = None) -> list[Query]:
    """Synthetic ISS photos of test places (never seen in training) over the bundled world."""
    from astroapp.geo.render import random_camera, render_photo
    from astroapp.geo.sources.bluemarble import BlueMarbleSource

    source = source or BlueMarbleSource()
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        cam = random_camera(rng, source, split="test")
        r = render_photo(source, cam, size, rng)
        out.append(Query(r.image, r.footprint, (cam.lon, cam.lat), cam.altitude_km))
    return out


def read_roll(folder: Path) -> list[Query]:
    """A folder of rendered photos with a `truth.json` / `roll.json` listing, per photo, the
    file name and its footprint (and optionally the camera with its nadir lon/lat)."""
    from astroapp.catalog.photo_reader import read_photo
    from astroapp.geo.footprint import Footprint

    folder = Path(folder)
    listing = next((folder / n for n in ("truth.json", "roll.json", "manifest.json")
                    if (folder / n).is_file()), None)
    if listing is None:
        raise ValueError(f"{folder}: no truth.json/roll.json listing the photos' footprints")
    data = json.loads(listing.read_text())
    items = data.get("photos", data) if isinstance(data, dict) else data
    out = []
    for it in items:
        fp = Footprint.from_list(it["footprint"])
        cam = it.get("camera") or {}
        nadir = (cam["lon"], cam["lat"]) if "lon" in cam and "lat" in cam else None
        name = it.get("file") or it.get("path") or it.get("name")
        out.append(Query(read_photo(folder / name).rgb, fp, nadir,
                         float(cam.get("altitude_km", 420.0))))
    return out


def demo_queries(roll: Path | None = None, n: int | None = None,
                 seed: int = 0) -> tuple[list[Query], str]:
    """Queries with their true footprints: `n` fresh renders of test places when `n` is given,
    else the roll folder `roll`, else the bundled demo roll (rendered once, then cached).
    Returns (queries, description)."""
    if n:
        return render_queries(n, seed), f"{n} fresh renders of test places (seed {seed})"
    if roll is not None:
        return read_roll(roll), str(roll)
    from astroapp.geo.demo import prepare_demo

    paths = prepare_demo()
    return read_roll(paths.roll_dir), f"the demo roll ({paths.roll_dir})"
