"""Search latency and recall@10: the compressed index (IVF-PQ + exact re-ranking) vs exact
search (IndexFlatIP), on clustered synthetic 512-D descriptors (default 1M vectors =
250k tiles x 4 rotations), through `TileIndex.search` (rotations folded to distinct tiles).

Descriptors: tiles drawn around 2,000 "places" (cluster centres), each tile a perturbation
of its place, each rotation a perturbation of its tile, unit norm (like real retrieval
descriptors: many near neighbours, not uniform noise). Queries: a random tile's descriptor at
a random rotation plus noise, strong enough that exact search itself ranks another tile of
the same place first for some queries; a retrieval is correct when that tile is among the
top 10 distinct tiles.

    .venv/bin/python -m benchmarks.index_search [--n 1000000] [--dim 512] [--queries 500]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np


def synthetic(n_tiles: int, dim: int, places: int, seed: int, out: Path,
              tile_spread: float = 0.3, rot_spread: float = 0.3) -> np.ndarray:
    """(n_tiles, 4, dim) float16 memmap of clustered unit descriptors, made in blocks."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((places, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    arr = np.lib.format.open_memmap(out, mode="w+", dtype=np.float16, shape=(n_tiles, 4, dim))
    block = 50_000
    for s in range(0, n_tiles, block):
        m = min(block, n_tiles - s)
        place = rng.integers(0, places, m)
        tile = centres[place] + (tile_spread / np.sqrt(dim)) * rng.standard_normal((m, dim), np.float32)
        tile /= np.linalg.norm(tile, axis=1, keepdims=True)
        x = tile[:, None, :] + (rot_spread / np.sqrt(dim)) * rng.standard_normal((m, 4, dim), np.float32)
        x /= np.linalg.norm(x, axis=2, keepdims=True)
        arr[s : s + m] = x.astype(np.float16)
    arr.flush()
    return arr


def refs_for(n_tiles: int) -> list:
    from astroapp.geo.footprint import Footprint

    out = []
    side = int(np.ceil(np.sqrt(n_tiles)))
    for i in range(n_tiles):
        lon = -170 + 340 * (i % side) / side
        lat = -60 + 120 * (i // side) / side
        fp = Footprint.from_bounds(lon, lat, lon + 0.2, lat + 0.2)
        out.append(SimpleNamespace(tile_id=f"t{i}", footprint=fp, zoom=10, row=0, col=0,
                                   year=2021))
    return out


def evaluate(index, queries: np.ndarray, truth: np.ndarray, k: int, single: int):
    t0 = time.perf_counter()
    res = index.search(queries, k=k)
    batch_ms = (time.perf_counter() - t0) * 1000 / len(queries)
    lat = []
    for i in range(single):
        t = time.perf_counter()
        index.search(queries[i : i + 1], k=k)
        lat.append((time.perf_counter() - t) * 1000)
    ids = [[c.index_id for c in cands] for cands in res]
    recall = float(np.mean([t in row for t, row in zip(truth, ids, strict=True)]))
    r1 = float(np.mean([row[:1] == [t] for t, row in zip(truth, ids, strict=True)]))
    return {"recall@1": r1, "recall@10": recall, "batch_ms": batch_ms,
            "p50_ms": float(np.median(lat)), "p95_ms": float(np.percentile(lat, 95)),
            "ids": ids}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="vectors (tiles x 4 rotations)")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--places", type=int, default=2000, help="cluster centres")
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--single", type=int, default=200, help="queries timed one at a time")
    ap.add_argument("--noise", type=float, default=2.5,
                    help="query noise norm (query-truth cosine ~ 1/sqrt(1+noise^2))")
    ap.add_argument("--tile-spread", type=float, default=0.3,
                    help="tiles around their place (neighbouring tiles look alike)")
    ap.add_argument("--rot-spread", type=float, default=0.3, help="rotations around their tile")
    ap.add_argument("--threads", type=int, default=1,
                    help="faiss/BLAS threads (1: per-query latency of one core)")
    ap.add_argument("--nprobe", default="", help="comma list of nprobe values to compare "
                    "(default: the index's own setting only)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args(argv)

    import faiss

    from astroapp.index import ModelFingerprint, TileIndex
    from astroapp.index.build import build_from_descriptors

    faiss.omp_set_num_threads(args.threads)
    n_tiles = args.n // 4
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        desc = synthetic(n_tiles, args.dim, args.places, args.seed, tmp / "desc.npy",
                         args.tile_spread, args.rot_spread)
        refs = refs_for(n_tiles)
        t_gen = time.perf_counter() - t0
        fp = ModelFingerprint("synthetic", "0" * 64, args.dim)
        pre = {"input_size": [0, 0], "note": "synthetic descriptors"}
        times = {}
        for kind in ("flat", "ivfpq"):
            t0 = time.perf_counter()
            build_from_descriptors(tmp / kind, "synthetic", refs, desc, fp, pre,
                                   chunk_size=25_000, index_type=kind, seed=args.seed)
            times[kind] = time.perf_counter() - t0
        rng = np.random.default_rng(args.seed + 1)
        truth = rng.integers(0, n_tiles, args.queries)
        rot = rng.integers(0, 4, args.queries)
        q = np.asarray(desc[truth, rot], dtype=np.float32)
        q += (args.noise / np.sqrt(args.dim)) * rng.standard_normal(q.shape).astype(np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        rows = {}
        index = TileIndex.open(tmp / "flat", fingerprint=fp)
        index.search(q[:2], k=10)  # warm-up (page cache, thread pools)
        rows["exact"] = evaluate(index, q, truth, 10, args.single)
        rows["exact"]["info"] = index.manifest["faiss"]
        del index
        probes = [None] + [int(v) for v in args.nprobe.split(",") if v]
        for nprobe in probes:
            index = TileIndex.open(tmp / "ivfpq", fingerprint=fp, nprobe=nprobe)
            index.search(q[:2], k=10)
            name = f"ivfpq/{nprobe or index.manifest['faiss']['nprobe']}"
            rows[name] = evaluate(index, q, truth, 10, args.single)
            rows[name]["info"] = index.manifest["faiss"]
            if nprobe is None:
                default = name
            del index
    exact, comp = rows["exact"], rows[default]
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in
                       zip(exact["ids"], comp["ids"], strict=True)])
    info = comp["info"]
    print(f"{args.n} synthetic {args.dim}-D descriptors ({n_tiles} tiles x 4 rotations, "
          f"{args.places} places), {args.queries} queries, {args.threads} threads; generated "
          f"in {t_gen:.0f} s")
    print(f"compressed: {info['factory']}, nprobe {info['nprobe']}, exact re-rank of "
          f"{info['refine']} x 4k candidates from the float16 chunks; built in "
          f"{times['ivfpq']:.0f} s (exact: {times['flat']:.0f} s)")
    print(f"\n{'index/nprobe':<13} {'MiB':>7} {'recall@1':>9} {'recall@10':>10} {'ms/query':>9} "
          f"{'p50 1-query':>12} {'p95 1-query':>12}")
    for name, r in rows.items():
        print(f"{name:<13} {r['info']['size_bytes'] / 2**20:>7.0f} {r['recall@1']:>9.3f} "
              f"{r['recall@10']:>10.3f} {r['batch_ms']:>9.2f} {r['p50_ms']:>12.2f} "
              f"{r['p95_ms']:>12.2f}")
    loss = 100 * (exact["recall@10"] - comp["recall@10"])
    print(f"\n{default} (the index's default): recall@10 loss {loss:.2f} points (target <= 1); top-10 overlap with exact "
          f"{overlap:.3f}; single-query p50 {comp['p50_ms']:.1f} ms (target <= 20 ms)")


if __name__ == "__main__":
    main()
