"""Training/evaluation data on the bundled world: database blocks + rendered photos, cached.

A `WorldSet` holds the bluemarble database blocks (north-up, resized to the model's input),
synthetic astronaut photos rendered by `astroapp.geo.render` at places of one split (train
and test places are disjoint), and for each photo the blocks its footprint intersects
(EarthLoc's correctness test), the best-overlapping blocks (training positives) and the
multiple of 90 degrees that best aligns a north-up block with the photo.

Renders are slow relative to training steps, so they are cached as .npz under
`<data dir>/cache/retrieval/`, keyed by split, size, count and seed.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from astroapp import config
from astroapp.atomic import atomic_path
from astroapp.geo.footprint import Footprint, wrap_lon

log = logging.getLogger(__name__)

CACHE_VERSION = 1
DEFAULT_COUNTS = {"train": 3000, "test": 400}
SEEDS = {"train": 1, "test": 2}
RENDER_SIZE = 160  # renders are cached at this side (or larger when asked for)


@dataclass
class WorldSet:
    blocks: np.ndarray  # (N, S, S, 3) uint8, north-up
    block_ids: list[str]
    block_fps: list[Footprint]
    queries: np.ndarray  # (Q, S, S, 3) uint8
    query_fps: list[Footprint]
    query_places: list[str]
    positives: list[set[int]]  # blocks intersecting each query
    best: list[np.ndarray]  # best-overlapping blocks (IoU >= half the best IoU)
    best_angle: np.ndarray  # (Q,) CCW degrees that turn a north-up block like the photo
    description: dict = field(default_factory=dict)


def up_azimuth(fp: Footprint) -> float:
    """Compass direction (degrees clockwise from north) that the photo's top edge faces."""
    tl, tr, br, bl = fp.corners
    lat0 = math.radians(sum(c[1] for c in fp.corners) / 4)
    top = ((tl[0] + wrap_lon(tr[0] - tl[0]) / 2), (tl[1] + tr[1]) / 2)
    bot = ((bl[0] + wrap_lon(br[0] - bl[0]) / 2), (bl[1] + br[1]) / 2)
    east = wrap_lon(top[0] - bot[0]) * math.cos(lat0)
    north = top[1] - bot[1]
    return math.degrees(math.atan2(east, north)) % 360.0


def aligning_angle(fp: Footprint) -> int:
    """The database rotation (0/90/180/270, CCW as `np.rot90`) closest to the photo's orientation.

    A photo whose top faces east shows the north-up map turned 90 degrees counter-clockwise.
    """
    return int(round(up_azimuth(fp) / 90.0) % 4) * 90


def _overlaps(query_fps: list[Footprint], block_fps: list[Footprint]) -> tuple[list[set[int]], list[np.ndarray]]:
    import shapely

    polys = [b.polygon() for b in block_fps]
    tree = shapely.STRtree(polys)
    positives, best = [], []
    for q in query_fps:
        qp = q.polygon()
        hits = tree.query(qp, predicate="intersects")
        positives.append(set(hits.tolist()))
        if len(hits) == 0:
            best.append(np.zeros(0, np.int64))
            continue
        # IoU in lon/lat degrees is enough to rank blocks of one query (same latitude band)
        inter = np.array([qp.intersection(polys[h]).area for h in hits])
        union = np.array([qp.area + polys[h].area for h in hits]) - inter
        iou = inter / np.maximum(union, 1e-12)
        best.append(hits[iou >= 0.5 * iou.max()][np.argsort(-iou[iou >= 0.5 * iou.max()])])
    return positives, best


def load_blocks(size: int) -> tuple[np.ndarray, list[str], list[Footprint]]:
    from astroapp.geo.sources.bluemarble import BlueMarbleSource

    source = BlueMarbleSource()
    refs = list(source.tiles())
    images = np.stack([source.load(r, size) for r in refs])
    return images, [r.tile_id for r in refs], [r.footprint for r in refs]


def resized(ws: WorldSet, size: int) -> WorldSet:
    """The same set with blocks and photos shrunk to `size` (area averaging)."""
    import cv2

    def shrink(stack: np.ndarray) -> np.ndarray:
        return np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in stack])

    return replace(ws, blocks=shrink(ws.blocks), queries=shrink(ws.queries),
                   description={**ws.description, "size": size})


def subset(ws: WorldSet, n: int) -> WorldSet:
    """The first `n` photos of a set (same blocks)."""
    return replace(ws, queries=ws.queries[:n], query_fps=ws.query_fps[:n], query_places=ws.query_places[:n],
                   positives=ws.positives[:n], best=ws.best[:n], best_angle=ws.best_angle[:n])


def _cache_path(split: str, size: int, n: int, seed: int) -> Path:
    return config.data_dir() / "cache" / "retrieval" / f"renders_v{CACHE_VERSION}_{split}_{size}px_{n}_s{seed}.npz"


def load_world_set(split: str, size: int = 160, n_queries: int | None = None, seed: int | None = None,
                   cache: bool = True) -> WorldSet:
    """The bluemarble blocks and `n_queries` renders of `split` places ("train" or "test").

    Only the renders are cached: the blocks are cut from the world in seconds, so a change of
    the database (zooms, land filter) never needs a re-render.
    """
    if split not in DEFAULT_COUNTS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    n = n_queries or DEFAULT_COUNTS[split]
    seed = SEEDS[split] if seed is None else seed
    if size < RENDER_SIZE:  # one cached render set serves every smaller model input
        return resized(load_world_set(split, RENDER_SIZE, n, seed, cache), size)
    path = _cache_path(split, size, n, seed)
    t0 = time.time()
    if cache and path.is_file():
        queries, qfps, places, meta = _read_renders(path)
    else:
        queries, qfps, places, meta = render_queries(split, n, size, seed)
        meta["render_seconds"] = round(time.time() - t0, 1)
        if cache:
            _write_renders(path, queries, qfps, places, meta)
    blocks, ids, fps = load_blocks(size)
    positives, best = _overlaps(qfps, fps)
    keep = [i for i, b in enumerate(best) if len(b)]
    if len(keep) < len(qfps):
        log.warning("%d renders intersect no block (dropped)", len(qfps) - len(keep))
    return WorldSet(
        blocks, ids, fps, queries[keep], [qfps[i] for i in keep], [places[i] for i in keep],
        [positives[i] for i in keep], [best[i] for i in keep],
        np.array([aligning_angle(qfps[i]) for i in keep], np.int64),
        {"split": split, "size": size, "renders": len(keep), "seed": seed, "blocks": len(ids),
         "seconds": round(time.time() - t0, 1), **meta},
    )


def _write_renders(path: Path, queries: np.ndarray, fps: list[Footprint], places: list[str], meta: dict) -> None:
    with atomic_path(path) as tmp:  # keeps the .npz suffix: np.savez adds none
        np.savez(tmp, queries=queries, query_fps=np.array([f.to_list() for f in fps], np.float64),
                 query_places=np.array(places), description=np.array(json.dumps(meta)))


def _read_renders(path: Path) -> tuple[np.ndarray, list[Footprint], list[str], dict]:
    z = np.load(path, allow_pickle=False)
    return (z["queries"], [Footprint.from_list(f) for f in z["query_fps"]], z["query_places"].tolist(),
            json.loads(str(z["description"])))


def render_queries(split: str, n: int, size: int, seed: int) -> tuple[np.ndarray, list[Footprint], list[str], dict]:
    """`n` synthetic photos at places of `split`: images (n,size,size,3), footprints, place cells.

    Square renders show the whole 3:2 frame squashed, as EarthLoc feeds real photos.
    """
    from astroapp.geo.places import place_cell
    from astroapp.geo.render import random_camera, render_photo
    from astroapp.geo.sources.bluemarble import BlueMarbleSource

    source = BlueMarbleSource()
    rng = np.random.default_rng(seed)
    images, fps, places = [], [], []
    t0 = time.time()
    for i in range(n):
        cam = random_camera(rng, source, split=split)  # type: ignore[arg-type]
        r = render_photo(source, cam, size, rng)
        images.append(r.image)
        fps.append(r.footprint)
        places.append("{}_{}".format(*place_cell(*r.footprint.centroid())))
        if (i + 1) % 500 == 0:
            log.info("rendered %d/%d %s photos (%.0fs)", i + 1, n, split, time.time() - t0)
    meta = {"source": "bluemarble", "renderer": "astroapp.geo.render.random_camera + render_photo",
            "places": "astroapp.geo.places.place_split (20-degree cells)",
            "place_cells": len(set(places))}
    return np.stack(images), fps, places, meta
