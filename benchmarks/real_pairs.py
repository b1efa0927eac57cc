"""Coregistration under real conditions: the real ISS pairs, their cross pairs, and a sweep of
renders by condition (scale gap, clouds, haze, tilt).

    .venv/bin/python -m benchmarks.real_pairs [--n 4] [--matcher sift] [--skip-sweep]
                                               [--skip-real] [--baseline] [--only TEXT]

1. Real pairs (../shared/data/real_pairs, skipped when absent): accepted, inliers, NCC of our
   warp against the published one (where there is one), structure agreement (gradient NCC)
   of our warp and of the published one with the photo, seconds; without hints and with the
   NASA focal length and tilt from meta.json (the surroundings' ground width is not known
   there, so the hints cannot narrow the scales: the same pyramid is searched).
2. Cross pairs: every photo against every other photo's surroundings; false accepts.
3. Render sweep over the bundled world: per condition, `--n` photos against surroundings
   `ratio` times as wide as their footprint (placed at random inside), with hints (focal,
   tilt, altitude; the surroundings' width from their grid) and without; completion = accepted
   with the right footprint (IoU >= 0.5); false accepts = an accepted wrong footprint or an
   accepted pair of the photo with far-away surroundings.

`--baseline` adds EarthMatch's loop alone (central-tile start, no window search) for
comparison. Seconds are wall and CPU (all threads of this process); on a shared machine wall
time includes waiting for the CPU. A real pair's seconds are the photo-candidate pair's (the
photo prepared beforehand, as `localize` does once per photo; its own CPU is shown apart).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from astroapp.geo.viewing import ViewingHints
from astroapp.matching import PreparedPhoto, coregister, get_matcher
from astroapp.matching.imageio import read_rgb
from astroapp.matching.render_pairs import (
    Condition,
    condition_pair,
    is_correct_localization,
    shifted_wrong_pair,
)
from astroapp.matching.warp_check import gradient_ncc, ncc, warp_to_photo

SHARED = Path(os.environ.get("ASTROAPP_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))

SWEEP = (
    [Condition(ratio=r) for r in (1.0, 2.0, 4.0, 6.0, 8.0, 10.0)]
    + [Condition(ratio=3.0, cloud=c) for c in (0.15, 0.3, 0.5)]
    + [Condition(ratio=3.0, haze=h) for h in (0.3, 0.6)]
    + [Condition(ratio=3.0, tilt=t) for t in (25.0, 40.0, 50.0)]
    + [Condition(ratio=8.0, cloud=0.3, haze=0.3, tilt=30.0)]
)


def _timed(fn, *args, **kwargs):
    w, c = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - w, time.process_time() - c


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _table(header: list[str], rows: list[list]) -> None:
    text = [[str(v) for v in r] for r in [header, *rows]]
    widths = [max(len(r[i]) for r in text) for i in range(len(header))]
    for j, r in enumerate(text):
        print("  ".join(v.ljust(widths[i]) for i, v in enumerate(r)))
        if j == 0:
            print("  ".join("-" * w for w in widths))
    print()


def real_pairs(matcher, baseline: bool) -> list[dict]:
    root = SHARED / "data" / "real_pairs"
    if not root.is_dir():
        print(f"{root} is absent: real pairs skipped\n")
        return []
    dirs = sorted(p for p in root.iterdir() if p.is_dir())
    photos = {d.name: read_rgb(d / "query.jpg") for d in dirs}
    surr = {d.name: read_rgb(d / "surroundings.jpg") for d in dirs}
    modes = [("search", {}), ("search+hints", None)]
    if baseline:
        modes.insert(0, ("loop only", {"search": False}))
    rows, records = [], []
    for d in dirs:
        meta = json.loads((d / "meta.json").read_text())
        ref = read_rgb(d / "reference_warp.jpg") if (d / "reference_warp.jpg").is_file() else None
        for mode, kwargs in modes:
            if kwargs is None:
                kwargs = {"hints": ViewingHints.create(meta.get("focal_mm"), meta.get("tilt_deg"))}
            # The photo is prepared once per photo (localize reuses it for every candidate):
            # timed apart from the photo-candidate pair.
            prepared, _, prep_cpu = _timed(PreparedPhoto, photos[d.name], matcher)
            res, wall, cpu = _timed(coregister, prepared, surr[d.name], **kwargs)
            agree = ours_s = ref_s = None
            if res.homography is not None:
                h, w = photos[d.name].shape[:2]
                ours = warp_to_photo(surr[d.name], res.homography, res.photo_size, (w, h))
                ours_s = gradient_ncc(ours, photos[d.name])
                if ref is not None:
                    agree = ncc(ours, ref)
            if ref is not None:
                ref_s = gradient_ncc(ref, photos[d.name])
            rows.append([d.name, mode, "yes" if res.accepted else "no", res.inliers,
                         res.reason or "", _fmt(agree), _fmt(ours_s), _fmt(ref_s),
                         f"{prep_cpu:.2f}", f"{wall:.2f}", f"{cpu:.2f}"])
            records.append({"pair": d.name, "mode": mode, "accepted": res.accepted,
                            "inliers": res.inliers, "ncc": agree, "wall": wall, "cpu": cpu,
                            "prep_cpu": prep_cpu})
    print("Real ISS pairs (photo vs its own surroundings)")
    _table(["pair", "mode", "accepted", "inliers", "reason", "NCC vs published",
            "structure ours", "structure published", "photo prep cpu s", "pair wall s",
            "pair cpu s"], rows)

    wrong = []
    for a in dirs:
        prepared = PreparedPhoto(photos[a.name], matcher)
        for b in dirs:
            if a != b:
                res, wall, cpu = _timed(coregister, prepared, surr[b.name])
                wrong.append((a.name, b.name, res.accepted, res.inliers, wall, cpu))
    fa = [w for w in wrong if w[2]]
    print(f"Cross pairs: {len(fa)} false accepts of {len(wrong)}; most inliers "
          f"{max(w[3] for w in wrong)} (threshold {res.threshold}); per pair median wall "
          f"{np.median([w[4] for w in wrong]):.2f} s, cpu {np.median([w[5] for w in wrong]):.2f} s")
    for w in fa:
        print(f"  FALSE ACCEPT: {w[0]} against {w[1]}'s surroundings, {w[3]} inliers")
    print()
    return records


def sweep(matcher, n: int, baseline: bool, seed: int, only: list[str] | None = None) -> None:
    from astroapp.geo.sources import open_source

    src = open_source("bluemarble")
    modes = [("search", False), ("search+hints", True)]
    if baseline:
        modes.insert(0, ("loop only", None))
    rows = []
    for ci, cond in enumerate(SWEEP):
        if only and not any(o in cond.label() for o in only):
            continue
        rng = np.random.default_rng(seed + ci)
        stats = {m: {"done": 0, "false": 0, "wall": [], "cpu": []} for m, _ in modes}
        wrong_accepts = wrong_total = 0
        for _ in range(n):
            pair, cam = condition_pair(src, cond, rng)
            hints = ViewingHints(focal_mm=cam.effective_focal_mm, tilt_deg=(cond.tilt, cond.tilt),
                                 altitude_km=cam.altitude_km)
            prepared = {m: PreparedPhoto(pair.photo, matcher) for m, _ in modes}
            for mode, use_hints in modes:
                kwargs = {"search": False} if use_hints is None else (
                    {"hints": hints} if use_hints else {})
                res, wall, cpu = _timed(coregister, prepared[mode], pair.surroundings,
                                        grid=pair.grid, **kwargs)
                st = stats[mode]
                st["wall"].append(wall)
                st["cpu"].append(cpu)
                if res.accepted:
                    if is_correct_localization(res.footprint, pair.truth):
                        st["done"] += 1
                    else:
                        st["false"] += 1
            other = shifted_wrong_pair(src, pair, rng)
            if other is not None:  # None: surroundings too wide for a far-away place
                res = coregister(prepared["search"], other.surroundings, grid=other.grid)
                wrong_total += 1
                wrong_accepts += int(res.accepted)
        for mode, _ in modes:
            st = stats[mode]
            rows.append([cond.label(), mode, f"{st['done']}/{n}", st["false"],
                         f"{np.median(st['wall']):.2f}", f"{np.median(st['cpu']):.2f}",
                         f"{wrong_accepts}/{wrong_total}" if mode == "search" else ""])
        print(f"  done: {cond.label()}", flush=True)
    print(f"\nRender sweep over the bundled world ({n} photos per condition, seed {seed})")
    _table(["condition", "mode", "completed", "wrong footprint accepted", "median wall s",
            "median cpu s", "far-away pairs accepted"], rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4, help="renders per sweep condition (default 4)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--matcher", default="sift")
    ap.add_argument("--baseline", action="store_true",
                    help="also EarthMatch's loop alone (no window search)")
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--skip-sweep", action="store_true")
    ap.add_argument("--only", action="append", metavar="TEXT",
                    help="sweep only conditions whose label contains TEXT (repeatable), "
                    "e.g. --only 'ratio 8,' --only 'tilt 50'")
    args = ap.parse_args(argv)
    matcher = get_matcher(args.matcher)
    print(f"matcher {matcher.name}, cpu count {os.cpu_count()}, load {os.getloadavg()[0]:.1f}\n")
    if not args.skip_real:
        real_pairs(matcher, args.baseline)
    if not args.skip_sweep:
        sweep(matcher, args.n, args.baseline, args.seed, args.only)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
