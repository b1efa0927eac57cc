"""Seconds per photo of geometric re-ranking, and the recall it buys, on the demo roll.

    .venv/bin/python -m benchmarks.rerank_speed [--shortlists 25 50 100] [--prior]

The demo roll's photos are retrieved from the bundled world's index with the bundled model
(without the NASA nadir prior unless --prior), then each shortlist is verified with SIFT at
256 px (`astroapp.pipeline.rerank`): once with an empty tile-feature cache (cold: every tile
is read and described) and once more with the same re-ranker (warm: a roll over one area
reuses its tiles). Rows with and without the early stop at a sure match. Wall time on a
shared 2-core machine includes waiting for the CPU.
"""

from __future__ import annotations

import argparse

from astroapp.evaluation.index_recall import demo_queries, retrieval_recall
from astroapp.index import TileIndex
from astroapp.index.demo import ensure_demo_index
from astroapp.pipeline.rerank import STOP_INLIERS, Reranker
from astroapp.retrieval import load_model


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shortlists", type=int, nargs="+", default=[25, 50, 100])
    ap.add_argument("--prior", action="store_true", help="use the NASA nadir prior")
    args = ap.parse_args(argv)
    model = load_model(device="cpu")
    index = TileIndex.open(ensure_demo_index(model), model=model)
    queries, what = demo_queries()
    base = retrieval_recall(index, model, queries, ks=(1, 10), use_prior=args.prior)
    print(f"{len(queries)} photos of {what}, {len(index)} tiles"
          + (", NASA nadir prior" if args.prior else ", no prior"))
    print(f"{'shortlist':>9} {'stop at':>8} {'R@1':>6} {'R@10':>6} {'cold s/photo':>13} {'warm s/photo':>13}")
    print(f"{'-':>9} {'-':>8} {base['recall@1']:>6.3f} {base['recall@10']:>6.3f} {'-':>13} {'-':>13}")
    for n in args.shortlists:
        for stop in (STOP_INLIERS, None):
            reranker = Reranker(shortlist=n, stop_inliers=stop)
            cold = retrieval_recall(index, model, queries, ks=(1, 10), use_prior=args.prior, reranker=reranker)
            warm = retrieval_recall(index, model, queries, ks=(1, 10), use_prior=args.prior, reranker=reranker)
            print(f"{n:>9} {stop or 'never':>8} {cold['recall@1']:>6.3f} {cold['recall@10']:>6.3f} "
                  f"{cold['ms_per_query'] / 1000:>13.2f} {warm['ms_per_query'] / 1000:>13.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
