"""`astroapp render | world`: the bundled world, synthetic photos, tile sources.

(`astroapp demo` lives in `demo_cmds`: it runs the whole job on the bundled demo.)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import timedelta
from pathlib import Path

from astroapp.cli import UserError

log = logging.getLogger(__name__)



def _open(spec: str):
    from astroapp.geo.sources import SourceError, open_source

    try:
        return open_source(spec)
    except SourceError as exc:
        raise UserError(str(exc)) from exc


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "render", help="render synthetic astronaut photos (JPEG + EXIF, truth.json) from a "
        "tile source")
    p.add_argument("out", type=Path, help="output folder (created)")
    p.add_argument("--source", default="bluemarble",
                   help="'bluemarble', an EarthLoc folder or a GeoTIFF (default bluemarble)")
    p.add_argument("-n", "--count", type=int, default=8)
    p.add_argument("--size", type=int, nargs=2, default=(768, 512), metavar=("W", "H"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", choices=("train", "test", "any"), default="any",
                   help="keep footprints inside places of this split (astroapp.geo.places)")
    p.add_argument("--bbox", type=float, nargs=4, metavar=("W", "S", "E", "N"),
                   help="limit the nadir point to this lon/lat box")
    p.add_argument("--focal", type=float, nargs=2, default=(50.0, 1150.0),
                   metavar=("MIN", "MAX"), help="nominal focal range in mm (50 1150)")
    p.add_argument("--max-tilt", type=float, default=50.0, help="degrees off nadir (50)")
    p.add_argument("--clean", action="store_true", help="no haze/clouds/colour/blur effects")
    p.add_argument("--overview", type=Path, metavar="PNG",
                   help="also write a picture of the photos beside the map of their footprints")
    p.set_defaults(func=run_render)

    p = subparsers.add_parser("world", help="inspect a tile source or export it as EarthLoc tiles")
    wsub = p.add_subparsers(dest="world_command", metavar="ACTION", required=True)
    q = wsub.add_parser("info", help="tiles per zoom, year, resolution, and any bad inputs")
    q.add_argument("source", nargs="?", default="bluemarble")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(func=run_world_info)
    q = wsub.add_parser("export", help="write a source's blocks as an EarthLoc-format folder")
    q.add_argument("out", type=Path)
    q.add_argument("--source", default="bluemarble")
    q.add_argument("--zoom", type=int, action="append", help="zoom(s) to export (default all)")
    q.add_argument("--bbox", type=float, nargs=4, metavar=("W", "S", "E", "N"),
                   help="only blocks intersecting this lon/lat box")
    q.add_argument("--size", type=int, default=1024, help="pixels per block side (1024)")
    q.set_defaults(func=run_world_export)


def run_render(args: argparse.Namespace) -> int:
    import numpy as np

    from astroapp.geo.demo import FIRST_CAPTURE, iso_utc, save_photo
    from astroapp.geo.render import NO_AUGMENT, random_camera, render_photo

    if args.count < 1:
        raise UserError("--count must be at least 1")
    width, height = args.size
    if not (16 <= width <= 8192 and 16 <= height <= 8192):
        raise UserError("--size must be between 16 and 8192 pixels")
    source = _open(args.source)
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    split = None if args.split == "any" else args.split
    records, renders = [], []
    taken = FIRST_CAPTURE
    for i in range(args.count):
        try:
            cam = random_camera(rng, source, focal_mm=tuple(args.focal),
                                tilt_deg=(0.0, args.max_tilt), split=split,
                                bbox=tuple(args.bbox) if args.bbox else None)
        except (RuntimeError, ValueError) as exc:
            raise UserError(f"cannot place a camera: {exc}") from exc
        render = render_photo(source, cam, (width, height), rng,
                              augment=NO_AUGMENT if args.clean else None)
        renders.append(render)
        name = f"SYN-R-{i + 1:06d}.jpg"
        taken = taken + timedelta(seconds=60)
        save_photo(args.out / name, render.image, taken, cam.focal_mm,
                   "astroapp synthetic render")
        records.append({"file": name, "taken_at": iso_utc(taken),
                        "footprint": render.footprint.to_list(),
                        "center": list(render.footprint.centroid()),
                        "camera": cam.to_dict(), "effects": render.effects,
                        "size": [width, height]})
        print(f"{name}: centre {render.footprint.centroid()[0]:.3f}, "
              f"{render.footprint.centroid()[1]:.3f}  focal {cam.focal_mm:.0f} mm  "
              f"tilt {cam.tilt_deg:.0f}")
    truth = {"source": source.source_id, "seed": args.seed,
             "corner_order": "TL,TR,BR,BL as [lon, lat]", "photos": records}
    (args.out / "truth.json").write_text(json.dumps(truth, indent=1))
    print(f"{len(records)} photos and truth.json written to {args.out}")
    if args.overview:
        from PIL import Image

        from astroapp.geo.overview import footprints_overview

        fig = footprints_overview(
            source, [r.footprint for r in renders], [r.image for r in renders][:12],
            map_width=960, thumb=270,
            labels=[f"{r.camera.focal_mm:.0f} mm, tilt {r.camera.tilt_deg:.0f}" for r in renders])
        args.overview.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(fig).save(args.overview, optimize=True)
        print(f"overview: {args.overview}")
    return 0


def run_world_info(args: argparse.Namespace) -> int:
    from collections import Counter

    source = _open(args.source)
    refs = list(source.tiles())
    zooms = Counter(r.zoom for r in refs)
    years = sorted({r.year for r in refs if r.year is not None})
    info = {"source_id": source.source_id, "tiles": len(refs),
            "tiles_per_zoom": {str(z): zooms[z] for z in sorted(zooms)},
            "years": years, "gsd_m": getattr(source, "gsd_m", None),
            "errors": list(source.errors)}
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        print(f"source:  {info['source_id']}")
        print(f"tiles:   {info['tiles']}  (" + ", ".join(
            f"zoom {z}: {n}" for z, n in info["tiles_per_zoom"].items()) + ")")
        print(f"years:   {', '.join(map(str, years)) or 'unknown'}")
        if info["gsd_m"]:
            print(f"imagery: {info['gsd_m']:.0f} m/px")
        for err in info["errors"]:
            print(f"error:   {err}", file=sys.stderr)
    return 1 if not refs else 0


def run_world_export(args: argparse.Namespace) -> int:
    from PIL import Image

    from astroapp.atomic import atomic_path
    from astroapp.geo.footprint import Footprint
    from astroapp.geo.sources.earthloc_folder import format_earthloc_name
    from astroapp.geo.tiles import block_id

    source = _open(args.source)
    area = Footprint.from_bounds(*args.bbox) if args.bbox else None
    refs = [r for r in source.tiles() if (not args.zoom or r.zoom in args.zoom)
            and (area is None or r.footprint.intersects(area))]
    if not refs:
        raise UserError("no blocks match the given --zoom/--bbox")
    written = 0
    for ref in refs:
        lon, lat = ref.footprint.centroid()
        year = ref.year or 0
        folder = (args.out / "database" / f"{year}_{ref.zoom:02d}"
                  / f"{round(lat, -1):g}_{round(lon, -1):g}")
        folder.mkdir(parents=True, exist_ok=True)
        name = format_earthloc_name(ref.footprint, block_id(ref.zoom, ref.row, ref.col), year)
        try:
            img = source.load(ref, args.size)
        except OSError as exc:
            print(f"skipped {ref.tile_id}: {exc}", file=sys.stderr)
            continue
        with atomic_path(folder / name) as tmp:
            Image.fromarray(img).save(tmp, format="JPEG", quality=90)
        written += 1
    print(f"{written} blocks written under {args.out / 'database'}")
    return 0
