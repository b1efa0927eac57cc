"""Import throughput for a roll of 12-megapixel JPEGs (the size of ISS Nikon frames).

    .venv/bin/python -m benchmarks.import_throughput [--n 20] [--size 4000x3000]

Generates the roll (textured JPEGs with EXIF, a few MB each like real photos), imports it
into a fresh catalogue, re-imports it (the resume path), and prints photos/s and MB/s.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import piexif
from PIL import Image


def make_roll(folder: Path, n: int, width: int, height: int, seed: int = 0) -> int:
    """Write n distinct JPEGs with earth-like smooth texture plus sensor noise; returns bytes."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 40, height, dtype=np.float32)[:, None]
    x = np.linspace(0, 50, width, dtype=np.float32)[None, :]
    base = 110 + 50 * np.sin(x) * np.cos(y) + 20 * np.sin(0.13 * x * y)
    noise = rng.normal(0, 10, (height, width)).astype(np.float32)
    grey = np.clip(base + noise, 0, 235).astype(np.uint8)
    texture = np.stack([grey + 15, grey + 5, grey], axis=-1)
    total = 0
    for i in range(n):
        pixels = np.roll(texture, shift=(i * 131, i * 257), axis=(0, 1))
        exif = piexif.dump({
            "0th": {piexif.ImageIFD.Make: b"NIKON CORPORATION", piexif.ImageIFD.Model: b"NIKON D5"},
            "Exif": {piexif.ExifIFD.DateTimeOriginal: f"2020:11:23 10:{i // 60:02d}:{i % 60:02d}".encode(),
                     piexif.ExifIFD.SubSecTimeOriginal: b"50",
                     piexif.ExifIFD.FocalLength: (1150, 1)},
        })
        path = folder / f"iss064e{i:06d}.jpg"
        Image.fromarray(pixels).save(path, "JPEG", quality=92, exif=exif)
        total += path.stat().st_size
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20, help="photos in the roll (default 20)")
    parser.add_argument("--size", default="4000x3000", help="WxH (default 4000x3000 = 12 MP)")
    parser.add_argument("--workers", type=int, nargs="+", default=None,
                        help="decode threads to compare (default: 1 and the app's default)")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))

    with tempfile.TemporaryDirectory(prefix="astroapp-bench-") as tmp:
        os.environ["ASTROAPP_HOME"] = str(Path(tmp) / "home")
        from astroapp.catalog import Catalog
        from astroapp.catalog.importer import default_workers, import_paths

        worker_counts = args.workers or sorted({1, default_workers()})

        roll = Path(tmp) / "roll"
        roll.mkdir()
        t0 = time.perf_counter()
        total_bytes = make_roll(roll, args.n, width, height)
        gen_s = time.perf_counter() - t0
        mb = total_bytes / 1e6
        rows: list[tuple] = []
        for workers in worker_counts:
            with Catalog(Path(tmp) / f"bench-{workers}.sqlite") as cat:
                for label in ("first import", "re-import (nothing new)"):
                    t0 = time.perf_counter()
                    report = import_paths(cat, [roll], workers=workers)
                    secs = time.perf_counter() - t0
                    rows.append((label, workers, report.total, report.added, secs,
                                 report.total / secs, mb / secs))
                assert cat.counts_by_status()["new"] == args.n

    print(f"import throughput: {args.n} JPEGs of {width}x{height} ({width * height / 1e6:.0f} MP), "
          f"{mb:.1f} MB total, avg {mb / args.n:.1f} MB/photo (generated in {gen_s:.1f} s)")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}")
    print(f"{'run':<26}{'threads':>8}{'files':>7}{'added':>7}{'seconds':>9}{'photos/s':>10}{'MB/s':>8}")
    for label, workers, files, added, secs, pps, mbs in rows:
        print(f"{label:<26}{workers:>8}{files:>7}{added:>7}{secs:>9.2f}{pps:>10.2f}{mbs:>8.1f}")


if __name__ == "__main__":
    main()
