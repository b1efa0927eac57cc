"""GeoTIFF export of one large photo: time and peak memory of the GCP copy and the warp.

    .venv/bin/python -m benchmarks.export_geotiff [--size 5568x3712] [--grid 13]

Both steps stream (row strips; GDAL's warper reads only the source pixels each output strip
needs), so peak memory should stay far below the decoded photo plus the warped raster.
Each step runs in a fresh process so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def _make_photo(path: Path, width: int, height: int) -> None:
    y = np.linspace(0, 40, height, dtype=np.float32)[:, None]
    x = np.linspace(0, 50, width, dtype=np.float32)[None, :]
    grey = np.clip(110 + 50 * np.sin(x) * np.cos(y), 0, 235).astype(np.uint8)
    Image.fromarray(np.stack([grey + 15, grey + 5, grey], axis=-1)).save(path, quality=90)


def _record(path: Path, width: int, height: int):
    from astroapp.export import ExportRecord
    from astroapp.geo.footprint import Footprint

    corners = ((10.0, 46.6), (12.6, 46.9), (12.9, 44.8), (10.3, 44.5))  # oblique, ~200 km
    return ExportRecord(catalog_id=1, file_name=path.name, footprint=Footprint(corners),
                        path=path, width=width, height=height)


def _step(kind: str, folder: str, width: int, height: int, grid: int, queue) -> None:
    from astroapp.export.geotiff import write_gcp_geotiff, write_warped_geotiff

    folder_p = Path(folder)
    rec = _record(folder_p / "photo.jpg", width, height)
    t = time.perf_counter()
    if kind == "baseline":  # imports only: the RSS every step starts from
        pass
    elif kind == "gcps":
        write_gcp_geotiff(rec, folder_p / "photo_gcps.tif", n=grid)
    else:
        write_warped_geotiff(rec, folder_p / "photo_gcps.tif", folder_p / "photo_warped.tif")
    seconds = time.perf_counter() - t
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put((seconds, peak_mb))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="5568x3712", help="photo WIDTHxHEIGHT (Nikon D5 frame)")
    ap.add_argument("--grid", type=int, default=13, help="n x n GCPs")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    ctx = mp.get_context("spawn")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        _make_photo(Path(tmp) / "photo.jpg", width, height)
        for kind in ("baseline", "gcps", "warped"):
            queue = ctx.Queue()
            proc = ctx.Process(target=_step, args=(kind, tmp, width, height, args.grid, queue))
            proc.start()
            seconds, peak = queue.get()
            proc.join()
            if kind == "baseline":
                rows.append((kind, "-", 0.0, 0.0, seconds, peak))
                continue
            out = Path(tmp) / f"photo_{kind}.tif"
            import rasterio

            with rasterio.open(out) as ds:
                size = f"{ds.width}x{ds.height}x{ds.count}"
                raw_mb = ds.width * ds.height * ds.count / 2**20
            rows.append((kind, size, raw_mb, out.stat().st_size / 2**20, seconds, peak))
    print(f"export_geotiff: {width}x{height} photo, {args.grid}x{args.grid} GCPs, "
          f"{platform.processor() or platform.machine()}")
    print(f"{'step':8} {'raster':>18} {'raw MB':>8} {'file MB':>8} {'seconds':>8} {'peak RSS MB':>12}")
    for kind, size, raw, fmb, sec, peak in rows:
        print(f"{kind:8} {size:>18} {raw:8.1f} {fmb:8.1f} {sec:8.2f} {peak:12.1f}")
    print(json.dumps({"size": [width, height], "steps": [
        {"step": r[0], "seconds": round(r[4], 2), "peak_rss_mb": round(r[5], 1)} for r in rows]}))


if __name__ == "__main__":
    main()
