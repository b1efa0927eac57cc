"""Oblique real photos: the real pairs that coregister at nadir, foreshortened further, with and
without the tilt simulation (ASIFT, astroapp.matching.tilt); and the cross pairs with hints
that make every photo oblique, for false accepts.

    .venv/bin/python -m benchmarks.oblique_real [--factors 1.6,2.2] [--angles 20,65,110,155]

Each photo accepted on its own surroundings (without hints) is compressed by 1/factor along
each angle (a camera `acos(1/factor)` off nadir looking that way, on top of the photo's own
view) and coregistered with the hints' tilt set to that angle off nadir. Correct = accepted
with every corner within 12 px of the unmodified photo's result composed with the
compression (surroundings of 1024 px). Cross pairs: every photo against every other photo's
surroundings with a 60 deg tilt hint (so the stretched searches run on all of them).
"""

from __future__ import annotations

import argparse
import math
import time

import cv2
import numpy as np

from astroapp.geo.viewing import ViewingHints
from astroapp.matching import PreparedPhoto, coregister, get_matcher, tilt
from astroapp.matching.geometry import CENTRE_TO_EDGE, EDGE_TO_CENTRE, apply_h, edge_corners
from astroapp.matching.imageio import read_rgb
from benchmarks.real_pairs import SHARED, _table

MAX_CORNER_ERROR_PX = 12.0


def _run(photo: np.ndarray, surr: np.ndarray, matcher, hints: ViewingHints, simulate: bool):
    """Coregistration with the tilt simulation on or off, and its wall seconds."""
    saved = tilt.stretch_factors
    if not simulate:
        tilt.stretch_factors = lambda _tilt: ()  # the search as it was without ASIFT
    try:
        t0 = time.perf_counter()
        res = coregister(PreparedPhoto(photo, matcher), surr, hints=hints)
        return res, time.perf_counter() - t0
    finally:
        tilt.stretch_factors = saved


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--factors", default="1.6,2.2")
    ap.add_argument("--angles", default="20,65,110,155")
    ap.add_argument("--skip-cross", action="store_true")
    args = ap.parse_args(argv)
    root = SHARED / "data" / "real_pairs"
    if not root.is_dir():
        print(f"{root} is absent: nothing to measure")
        return 0
    matcher = get_matcher("sift")
    dirs = sorted(p for p in root.iterdir() if p.is_dir())
    photos = {d.name: read_rgb(d / "query.jpg") for d in dirs}
    surrs = {d.name: read_rgb(d / "surroundings.jpg") for d in dirs}
    rows = []
    totals = {False: [0, 0, 0, []], True: [0, 0, 0, []]}  # correct, wrong, cases, seconds
    for d in dirs:
        photo, surr = photos[d.name], surrs[d.name]
        base = coregister(PreparedPhoto(photo, matcher), surr)
        if not base.accepted:
            continue
        side = photo.shape[0]
        if photo.shape[1] != side:
            photo = cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA)
        for factor in (float(v) for v in args.factors.split(",")):
            off_nadir = math.degrees(math.acos(1.0 / factor))
            hints = ViewingHints(tilt_deg=(off_nadir, off_nadir))
            for angle in (float(v) for v in args.angles.split(",")):
                a = tilt.stretch(side, angle, factor)  # oblique photo centres -> photo centres
                oblique = cv2.warpPerspective(photo, np.linalg.inv(a), (side, side),
                                              flags=cv2.INTER_AREA)
                scale = np.diag([photo.shape[1] / base.photo_size[0],
                                 photo.shape[0] / base.photo_size[1], 1.0])
                truth_h = base.homography @ np.linalg.inv(scale) @ CENTRE_TO_EDGE @ a @ EDGE_TO_CENTRE
                truth = apply_h(truth_h, edge_corners((side, side)))
                cells = []
                for simulate in (False, True):
                    res, wall = _run(oblique, surr, matcher, hints, simulate)
                    err = None if res.corners_px is None else float(
                        np.linalg.norm(res.corners_px - truth, axis=1).max())
                    ok = res.accepted and err is not None and err <= MAX_CORNER_ERROR_PX
                    t = totals[simulate]
                    t[0] += int(ok)
                    t[1] += int(res.accepted and not ok)
                    t[2] += 1
                    t[3].append(wall)
                    cells += ["correct" if ok else ("WRONG" if res.accepted else "no"),
                              res.inliers, f"{wall:.1f}"]
                rows.append([d.name, f"{factor:g}", f"{angle:g}", *cells])
    print("Real pairs foreshortened further (hint: the simulated angle off nadir)")
    _table(["pair", "factor", "angle", "without", "inliers", "s", "with tilt sim", "inliers",
            "s"], rows)
    for simulate in (False, True):
        c, w, n, secs = totals[simulate]
        print(f"{'with' if simulate else 'without'} tilt simulation: {c}/{n} correct, {w} wrong "
              f"accepts, median {np.median(secs):.1f} s a pair" if n else "no accepted pair")
    if args.skip_cross:
        return 0
    hints = ViewingHints(tilt_deg=(60.0, 60.0))
    false = n = 0
    secs = []
    for a in dirs:
        for b in dirs:
            if a == b:
                continue
            res, wall = _run(photos[a.name], surrs[b.name], matcher, hints, True)
            false += int(res.accepted)
            n += 1
            secs.append(wall)
            if res.accepted:
                print(f"  FALSE ACCEPT: {a.name} against {b.name}'s surroundings, {res.inliers}")
    print(f"\nCross pairs with a 60 deg tilt hint (tilt simulation on): {false} false accepts of "
          f"{n}, median {np.median(secs):.1f} s a pair")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
