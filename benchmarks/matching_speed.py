"""Seconds per photo-candidate pair of EarthMatch coregistration on the CPU, per matcher.

    .venv/bin/python -m benchmarks.matching_speed [--size 512] [--iterations 4] [--repeat 2]

One pair = the 4-iteration loop of one photo against one candidate's surroundings (the
photo's own features are computed once per photo and reported apart, as the pipeline reuses
them across candidates). Pairs: the real ISS pairs of ../shared/data/real_pairs when present
(each photo against its own and another photo's surroundings), else renders of the bundled
world. Target for the default matcher: <= 2 s per pair at 512 px on 2 cores (SIFT+LightGlue's
published CPU time is 2.8 s). Wall time on a shared machine includes waiting for the CPU;
CPU time (all threads of this process) is reported beside it.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from astroapp.matching import (
    MatcherUnavailable,
    PreparedPhoto,
    coregister,
    get_matcher,
    matcher_names,
)
from astroapp.matching.calibration import uncalibrated
from astroapp.matching.imageio import read_rgb

SHARED = Path(os.environ.get("ASTROAPP_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))


def load_pairs(n_renders: int) -> tuple[str, list[tuple[np.ndarray, list[np.ndarray]]]]:
    """[(photo, [its surroundings, another photo's surroundings])]."""
    root = SHARED / "data" / "real_pairs"
    if root.is_dir():
        dirs = sorted(p for p in root.iterdir() if p.is_dir())
        photos = [read_rgb(d / "query.jpg") for d in dirs]
        surr = [read_rgb(d / "surroundings.jpg") for d in dirs]
        out = [(photos[i], [surr[i], surr[(i + 1) % len(dirs)]]) for i in range(len(dirs))]
        return f"{len(dirs)} real ISS pairs (1024 px photos, 1024 px surroundings)", out
    from astroapp.geo.sources import open_source
    from astroapp.matching.render_pairs import render_pairs

    src = open_source("bluemarble")
    out = [(pairs[0].photo, [p.surroundings for p in pairs])
           for pairs in render_pairs(src, n_renders, seed=123, wrong_per_photo=1, split="test")]
    return f"{n_renders} renders of the bundled world", out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--iterations", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=2, help="timed passes over the pairs")
    ap.add_argument("--renders", type=int, default=6, help="renders when real pairs are absent")
    ap.add_argument("--matchers", default=",".join(matcher_names()))
    args = ap.parse_args(argv)

    what, data = load_pairs(args.renders)
    print(f"pairs: {what}; S = {args.size}, {args.iterations} iterations; "
          f"{os.cpu_count()} CPU cores, OpenCV threads {cv2.getNumThreads()}, "
          f"{platform.processor() or platform.machine()}; load avg {os.getloadavg()[0]:.1f}")
    header = (f"{'matcher':10} {'pairs':>5} {'wall s/pair':>12} {'p90':>6} {'CPU s/pair':>11} "
              f"{'photo feats s':>14} {'own wall':>9} {'own CPU':>8} {'other wall':>10}  "
              f"target <= 2 s")
    print(header)
    print("-" * len(header))
    for name in args.matchers.split(","):
        try:
            matcher = get_matcher(name, calibrated=False)
        except MatcherUnavailable as exc:
            print(f"{name:10} unavailable: {str(exc).split(';')[0]}")
            continue
        cal = uncalibrated(name)
        walls, cpus, feats = [], [], []
        per_kind: dict[bool, list[float]] = {True: [], False: []}
        cpu_kind: dict[bool, list[float]] = {True: [], False: []}
        for rep in range(args.repeat):
            for photo, surrs in data:
                t0, c0 = time.perf_counter(), time.process_time()
                prepared = PreparedPhoto(photo, matcher, args.size)
                prepared.features(0)
                feats.append(time.perf_counter() - t0)
                for j, surr in enumerate(surrs):
                    t0, c0 = time.perf_counter(), time.process_time()
                    coregister(prepared, surr, iterations=args.iterations, calibration=cal)
                    walls.append(time.perf_counter() - t0)
                    cpus.append(time.process_time() - c0)
                    if rep == args.repeat - 1:
                        per_kind[j == 0].append(walls[-1])
                        cpu_kind[j == 0].append(cpus[-1])
        p90 = float(np.percentile(walls, 90))
        ok = "yes" if statistics.median(walls) <= 2.0 else "NO"
        print(f"{name:10} {len(walls):5d} {statistics.median(walls):12.3f} {p90:6.2f} "
              f"{statistics.median(cpus):11.3f} {statistics.median(feats):14.3f} "
              f"{statistics.median(per_kind[True]):9.3f} {statistics.median(cpu_kind[True]):8.3f} "
              f"{statistics.median(per_kind[False]):10.3f}  {ok}")
    print("(own: each photo against its own surroundings, which runs all iterations when it "
          "matches; other: against another photo's, usually rejected at the first)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
