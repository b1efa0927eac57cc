"""Speed of the learned matchers (kornia LightGlue-DISK, LightGlue-SIFT, LoFTR) at 512 px.

    .venv/bin/python -m benchmarks.learned_matchers [--size 512] [--repeat 3] [--device cpu|cuda]

Random weights (no published file can be downloaded on the build machines), so this times
the networks, not their accuracy. Random LightGlue never stops early (its per-layer confidence
heads are untrained), so with real weights its match time is at most this figure. Per image:
features; per pair: one match; "pair s" estimates one photo-candidate coregistration pair as
4 iterations x (view features + match), the photo's features computed once per photo. SIFT
(OpenCV, weight-free) is the reference row. On a shared machine wall time includes waiting
for the CPU: CPU time (all threads) is printed beside it. Images: the first real ISS pair of
../shared/data/real_pairs when present, else a synthetic texture.
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
import torch

from astroapp.matching.imageio import read_rgb, resize_square
from astroapp.matching.learned import DiskLightGlue, LoftrMatcher, SiftLightGlue
from astroapp.matching.sift import SiftMatcher

SHARED = Path(os.environ.get("ASTROAPP_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
BUILDERS = {
    "sift": lambda dev: SiftMatcher(),
    "lightglue-disk": lambda dev: DiskLightGlue(device=dev),
    "lightglue-sift": lambda dev: SiftLightGlue(device=dev),
    "loftr": lambda dev: LoftrMatcher(device=dev),
}


def _images(size: int) -> tuple[str, np.ndarray, np.ndarray]:
    root = SHARED / "data" / "real_pairs"
    dirs = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if dirs:
        photo = read_rgb(dirs[0] / "query.jpg")
        surr = read_rgb(dirs[0] / "surroundings.jpg")
        h, w = surr.shape[:2]
        view = surr[h // 3: 2 * h // 3, w // 3: 2 * w // 3]  # the centre view of the surroundings
        return f"real pair {dirs[0].name}", resize_square(photo, size), resize_square(view, size)
    rng = np.random.default_rng(0)
    base = cv2.resize((rng.random((size // 8, size // 8, 3)) * 255).astype(np.uint8), (size, size),
                      interpolation=cv2.INTER_CUBIC)
    return "synthetic texture", base, np.ascontiguousarray(base[:, ::-1])


def _timed(fn, repeat: int, sync) -> tuple[float, float, object]:
    """Median wall and CPU seconds (all threads of this process) of `fn`, and its result."""
    out, wall, cpu = None, [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        sync()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu), out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--matchers", default=",".join(BUILDERS))
    args = ap.parse_args(argv)

    def sync() -> None:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    what, photo, view = _images(args.size)
    dev_name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else (
        platform.processor() or platform.machine())
    print(f"{what}, {args.size} px, random weights, device {args.device} ({dev_name}); "
          f"{os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}, "
          f"load avg {os.getloadavg()[0]:.1f}; median of {args.repeat}")
    header = (f"{'matcher':15} {'kpts photo':>10} {'kpts view':>9} {'feats s':>8} {'match s':>8} "
              f"{'matches':>7} {'pair s':>7} {'pair CPU s':>10}")
    print(header)
    print("-" * len(header))
    for name in args.matchers.split(","):
        matcher = BUILDERS[name](args.device)
        matcher.features(photo)  # warm-up (allocations, lazy init)
        t_feat, _, fq = _timed(lambda m=matcher: m.features(photo), args.repeat, sync)
        t_view, c_view, fv = _timed(lambda m=matcher: m.features(view), args.repeat, sync)
        t_match, c_match, matches = _timed(lambda m=matcher, a=fq, b=fv: m.match(a, b), args.repeat,
                                           sync)
        pair, pair_cpu = args.iterations * (t_view + t_match), args.iterations * (c_view + c_match)
        print(f"{name:15} {len(fq):>10} {len(fv):>9} {t_feat:>8.2f} {t_match:>8.2f} "
              f"{len(matches):>7} {pair:>7.2f} {pair_cpu:>10.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
