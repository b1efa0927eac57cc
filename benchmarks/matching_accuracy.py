"""Coregistration accuracy on renders of the bundled world, with the calibrated threshold.

    .venv/bin/python -m benchmarks.matching_accuracy [--n 60] [--wrong 2] [--seed 2024]

Synthetic astronaut photos of held-out places (the "test" split of astroapp.geo.places;
`astroapp calibrate` renders "train" places) are coregistered against the surroundings of
the database block containing them (what a correct retrieval returns) and against the
surroundings of far-away blocks (wrong candidates). Printed per matcher:
- localized: share of photos accepted on their correct block with a correct footprint
  (IoU >= 0.5 with the true footprint);
- median / p90 corner error (km) of the accepted correct localizations, and the same as a
  fraction of the footprint's size;
- false accepts: share of wrong pairs accepted (plus correct-block pairs accepted with a
  wrong footprint);
- the calibrated threshold T (inliers) in use.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np

from astroapp.matching import MatcherUnavailable, PreparedPhoto, coregister, get_matcher
from astroapp.matching.render_pairs import (
    corner_errors_km,
    is_correct_localization,
    render_pairs,
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60, help="rendered photos")
    ap.add_argument("--wrong", type=int, default=2, help="wrong candidates per photo")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--matchers", default="sift,sift-nn")
    args = ap.parse_args(argv)

    from astroapp.geo.sources import open_source

    src = open_source("bluemarble")
    t0 = time.perf_counter()
    data = list(render_pairs(src, args.n, seed=args.seed, wrong_per_photo=args.wrong,
                             split="test", side=args.size))
    print(f"{args.n} renders of the bundled world (test places, seed {args.seed}), "
          f"{sum(len(p) - 1 for p in data)} wrong pairs; rendered in {time.perf_counter() - t0:.0f} s")
    header = (f"{'matcher':8} {'T':>5} {'calibrated':>10} {'localized':>10} {'median km':>10} "
              f"{'p90 km':>7} {'median rel':>10} {'false acc':>10} {'wrong-geom':>10} {'s/pair':>7}")
    print(header)
    print("-" * len(header))
    for name in args.matchers.split(","):
        try:
            matcher = get_matcher(name)
        except MatcherUnavailable as exc:
            print(f"{name:8} unavailable: {str(exc).split(';')[0]}")
            continue
        cal = matcher.calibration
        localized = 0
        errors_km, rel = [], []
        wrong_total = wrong_acc = geom_bad = 0
        secs = []
        for pairs in data:
            prepared = PreparedPhoto(pairs[0].photo, matcher, args.size)
            for pair in pairs:
                res = coregister(prepared, pair.surroundings, grid=pair.grid)
                secs.append(res.seconds)
                if pair.correct:
                    if res.accepted and is_correct_localization(res.footprint, pair.truth):
                        localized += 1
                        err = corner_errors_km(res.footprint, pair.truth)
                        errors_km.extend(err.tolist())
                        rel.extend((err / math.sqrt(pair.truth.area_km2())).tolist())
                    elif res.accepted:
                        geom_bad += 1
                else:
                    wrong_total += 1
                    wrong_acc += int(res.accepted)
        med = statistics.median(errors_km) if errors_km else float("nan")
        p90 = float(np.percentile(errors_km, 90)) if errors_km else float("nan")
        mrel = statistics.median(rel) if rel else float("nan")
        print(f"{name:8} {cal.threshold:5d} {str(cal.calibrated):>10} "
              f"{100 * localized / len(data):9.1f}% {med:10.1f} {p90:7.1f} {100 * mrel:9.1f}% "
              f"{100 * wrong_acc / max(wrong_total, 1):9.2f}% {geom_bad:10d} "
              f"{statistics.median(secs):7.2f}")
    print("(median rel: corner error / sqrt(true footprint area); wrong-geom: correct block "
          "accepted with a footprint of IoU < 0.5)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
