"""Speed of the geo core: bundled-world startup, block loads, surroundings, synthetic renders.

    .venv/bin/python -m benchmarks.render_speed [--n 20]

Targets: a 512 x 512 augmented render well under 0.5 s; a 320-px block load under 20 ms.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import numpy as np


def _time(fn, n: int) -> float:
    t = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - t) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20)
    args = parser.parse_args()
    os.environ.setdefault("ASTROAPP_HOME", tempfile.mkdtemp(prefix="astroapp_bench_"))
    from astroapp.geo.render import NO_AUGMENT, random_camera, render_photo
    from astroapp.geo.sources import open_source
    from astroapp.geo.sources.bluemarble import mercator_world
    from astroapp.geo.tiles import surroundings

    rows = []
    t = time.perf_counter()
    world = open_source("bluemarble")
    mercator_world()
    rows.append(("bluemarble world: first use (reproject or load cache)", time.perf_counter() - t))
    refs = list(world.tiles())
    rng = np.random.default_rng(0)
    picks = [refs[i] for i in rng.integers(0, len(refs), args.n)]
    rows.append(("block load, 320 px", _time(lambda i: world.load(picks[i], 320), args.n)))
    rows.append(("block load, 1024 px", _time(lambda i: world.load(picks[i]), args.n)))

    def surround(i: int) -> None:
        r = picks[i]
        bounds, grid = surroundings(r.zoom, r.row, r.col, side=512)
        world.read_mercator(bounds, grid.width, grid.height)

    rows.append(("3x3 surroundings, 1536 px", _time(surround, args.n)))
    t = time.perf_counter()
    cams = [random_camera(rng, world) for _ in range(args.n)]
    rows.append(("random_camera (land search)", (time.perf_counter() - t) / args.n))
    for size in (320, 512, 1024):
        rows.append((f"render {size}x{size}, clean",
                     _time(lambda i, s=size: render_photo(world, cams[i], s, augment=NO_AUGMENT),
                           args.n)))
        rows.append((f"render {size}x{size}, augmented",
                     _time(lambda i, s=size: render_photo(world, cams[i], s, rng), args.n)))
    print(f"# geo render speed  ({platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')})")
    print(f"{'operation':<55} {'seconds':>9}")
    for name, sec in rows:
        print(f"{name:<55} {sec:>9.4f}")


if __name__ == "__main__":
    main()
