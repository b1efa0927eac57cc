"""`astroapp export`: footprints to GeoJSON / CSV / offline HTML map, photos to GeoTIFFs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from astroapp.cli import UserError, int_list
from astroapp.export import FORMATS

_SUFFIX_FORMATS = {".geojson": "geojson", ".json": "geojson", ".csv": "csv", ".html": "html",
                   ".htm": "html"}



def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export localized photos (GeoJSON, GeoTIFF, HTML map, CSV)",
        description=(
            "Export the catalogue's localized photos. geojson/csv/html write one file OUT; "
            "geotiff writes <id>_gcps.tif (original pixels + GCPs) and <id>_warped.tif "
            "(north-up, alpha mask) per photo into the folder OUT. Files appear only when "
            "complete (an interrupted export leaves no partial file under OUT)."
        ),
    )
    p.add_argument("out", type=Path, metavar="OUT", help="output file (folder for geotiff)")
    p.add_argument("--format", "-f", choices=FORMATS, default=None,
                   help="export format (default: from OUT's extension)")
    p.add_argument("--status", default=None,
                   help="only photos with these statuses, comma separated: accepted (by a "
                   "person), localized (auto-accepted), review (not confident), rejected")
    p.add_argument("--ids", default=None, metavar="LIST",
                   help="only these catalogue photo ids, comma separated")
    html = p.add_argument_group("html")
    html.add_argument("--tiles", default=None, metavar="URL",
                      help="XYZ tile URL template for the base map instead of the bundled "
                           "Blue Marble (e.g. file:///data/tiles/{z}/{x}/{y}.png)")
    html.add_argument("--tiles-attribution", default=None, metavar="TEXT")
    html.add_argument("--no-thumbnails", action="store_true", help="popups without thumbnails")
    tif = p.add_argument_group("geotiff")
    tif.add_argument("--gcps", type=int, default=None, metavar="N",
                     help="N x N ground control points per photo (default 13)")
    tif.add_argument("--no-warped", action="store_true", help="only the GCP GeoTIFFs")
    tif.add_argument("--compress", choices=("deflate", "lzw"), default="deflate",
                     help="GeoTIFF compression (default deflate; NASA's files use lzw)")
    tif.add_argument("--max-pixels", type=int, default=64_000_000,
                     help="cap on a warped GeoTIFF's pixel count (default 64e6)")
    p.set_defaults(func=_cmd_export)


def _format(args: argparse.Namespace) -> str:
    if args.format:
        return args.format
    fmt = _SUFFIX_FORMATS.get(args.out.suffix.lower())
    if fmt is None:
        raise UserError(
            f"cannot tell the format from {args.out.name!r}: give --format "
            f"({', '.join(FORMATS)})"
        )
    return fmt


def _cmd_export(args: argparse.Namespace) -> int:
    from astroapp.catalog import STATUSES
    from astroapp.cli.catalog_cmds import open_catalog
    from astroapp.export import export_catalog

    fmt = _format(args)
    statuses = None
    if args.status:
        statuses = [s.strip().lower() for s in args.status.split(",") if s.strip()]
        bad = [s for s in statuses if s not in STATUSES]
        if bad:
            raise UserError(f"unknown status {bad[0]!r}: choose from {', '.join(STATUSES)}")
    ids = int_list(args.ids, "--ids", "photo ids") if args.ids else None
    out = args.out.expanduser()
    if fmt == "geotiff":
        if out.exists() and not out.is_dir():
            raise UserError(f"{out} is a file: geotiff export needs a folder")
        options: dict = {"warped": not args.no_warped, "max_pixels": args.max_pixels,
                         "compress": args.compress}
        if args.gcps is not None:
            if args.gcps < 2:
                raise UserError("--gcps needs N >= 2")
            options["gcp_grid"] = args.gcps
    else:
        if out.is_dir():
            raise UserError(f"{out} is a folder: give a file name for {fmt}")
        options = {}
        if fmt == "html":
            options = {"tiles": args.tiles, "tiles_attribution": args.tiles_attribution,
                       "thumbnails": not args.no_thumbnails}

    from astroapp.cli.progress import ProgressBars

    with open_catalog(args) as catalog, ProgressBars() as bars:
        try:
            result = export_catalog(catalog, fmt, out, status=statuses, ids=ids, progress=bars,
                                    **options)
        except OSError as exc:
            raise UserError(f"cannot write {out}: {exc}") from exc
    if result.skipped:
        names = ", ".join(result.skipped[:5])
        more = f" and {len(result.skipped) - 5} more" if len(result.skipped) > 5 else ""
        print(f"skipped {len(result.skipped)} photo(s) without a usable footprint: {names}{more}",
              file=sys.stderr)
    if result.cancelled:
        print("cancelled: finished files kept, the one in progress discarded", file=sys.stderr)
    for name, reason in result.failed:
        print(f"failed: {name}: {reason}", file=sys.stderr)
    if result.exported == 0 and not result.failed:
        print("warning: no localized photos matched: nothing exported", file=sys.stderr)
    what = f"{result.exported} photo{'s' if result.exported != 1 else ''}"
    files = ", ".join(str(p) for p in result.written[:4])
    more = f" (+{len(result.written) - 4} more)" if len(result.written) > 4 else ""
    print(f"exported {what} as {fmt}: {files}{more}" if result.written else f"exported {what}")
    return 1 if result.failed else 0
