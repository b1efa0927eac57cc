"""Recall@k of a retrieval model on renders of held-out places of the bundled world, with and
without geometric re-ranking (`astroapp.pipeline.rerank`); what `astroapp model eval` reports.

The protocol and its primitives (EarthLoc's: database at four rotations, footprint
intersection is correct) are `astroapp.retrieval.recall`'s.

    python -m astroapp.evaluation.model_recall [--model astroapp-small] [--weights FILE] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from astroapp.config import DEFAULT_RETRIEVAL_MODEL
from astroapp.pipeline.rerank import Reranker, verified_order
from astroapp.retrieval import load_model
from astroapp.retrieval.dataset import RENDER_SIZE, load_blocks, load_world_set, subset
from astroapp.retrieval.recall import (
    Embedder,
    EvalResult,
    colour_histogram,
    distinct_blocks,
    embed_database,
    evaluate_embedder,
    model_embedder,
    recalls,
    search,
)

log = logging.getLogger(__name__)


def evaluate_reranked(name: str, embed: Embedder, blocks: np.ndarray, queries: np.ndarray,
                      positives: Sequence[set[int]], reranker: Any, blocks_hi: np.ndarray,
                      queries_hi: np.ndarray, ks: Sequence[int] = (1, 10, 100)) -> EvalResult:
    """Recall after geometric re-ranking (`astroapp.pipeline.rerank`) of each query's first
    `reranker.shortlist` distinct blocks; `blocks_hi`/`queries_hi`: the same images at (or
    above) the re-ranking size."""
    t0 = time.perf_counter()
    db = embed_database(embed, blocks)
    pred = search(db, embed(queries), 4 * max(max(ks), reranker.shortlist))
    ranked = distinct_blocks(pred, len(blocks), max(max(ks), reranker.shortlist))
    out = ranked.copy()
    for i, row in enumerate(ranked):
        head = row[: reranker.shortlist]
        head = head[head >= 0]
        checks = reranker.verify_all(reranker.features(queries_hi[i]), head.tolist(),
                                     lambda j, head=head: blocks_hi[head[j]])
        out[i, : len(head)] = head[verified_order([c.inliers if c else 0 for c in checks], reranker.min_inliers)]
    label = f"{name} + {reranker.matcher.name} re-ranking of top {reranker.shortlist}"
    return EvalResult(label, recalls(out, len(blocks), positives, ks), len(queries), len(blocks),
                      time.perf_counter() - t0)


def evaluate_bundled_world(model_name: str = DEFAULT_RETRIEVAL_MODEL, weights: str | None = None, device: str | None = None,
                           split: str = "test", n_queries: int | None = None, baseline: bool = True,
                           rerank: int = 0) -> list[EvalResult]:
    """Model (and colour-histogram baseline) on the held-out renders of the bundled world;
    with `rerank` > 0 also each followed by SIFT re-ranking of its top `rerank` blocks."""
    model = load_model(model_name, weights=weights, device=device)
    data = load_world_set(split, size=max(model.input_size))
    if n_queries:
        data = subset(data, n_queries)
    embedders: list[tuple[str, Embedder]] = [(model.name, model_embedder(model))]
    if baseline:
        embedders.append(("colour-histogram", colour_histogram))
    results = [evaluate_embedder(name, embed, data.blocks, data.block_fps, data.queries, data.query_fps,
                                 positives=data.positives) for name, embed in embedders]
    if rerank:
        reranker = Reranker(shortlist=rerank, cache_tiles=len(data.blocks))  # every block once
        hi = load_world_set(split, size=RENDER_SIZE)
        queries_hi = hi.queries[: len(data.queries)]
        blocks_hi, _, _ = load_blocks(reranker.size)
        for name, embed in embedders:  # the same verification after each shortlist
            results.append(evaluate_reranked(name, embed, data.blocks, data.queries, data.positives,
                                             reranker, blocks_hi, queries_hi))
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Recall@k on held-out renders of the bundled world")
    ap.add_argument("--model", default=DEFAULT_RETRIEVAL_MODEL)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--device", default=None)
    ap.add_argument("--split", default="test", choices=["test", "train"])
    ap.add_argument("--queries", type=int, default=None, help="use only the first N queries")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--rerank", type=int, default=0, metavar="N",
                    help="also report recall after SIFT re-ranking of the top N blocks (e.g. 100)")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    results = evaluate_bundled_world(args.model, args.weights, args.device, args.split, args.queries,
                                     not args.no_baseline, args.rerank)
    for r in results:
        print(r.line())
    if args.json:
        with open(args.json, "w") as f:
            json.dump([r.__dict__ for r in results], f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
