"""`astroapp import`, `photos` (`list`), `status`, `import-nasa`: the catalogue from a shell."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from datetime import UTC, date, datetime
from pathlib import Path

from astroapp.catalog import STATUSES, Catalog, CatalogError
from astroapp.cli import UserError


def open_catalog(args: argparse.Namespace, *, write: bool = False) -> Catalog:
    """The catalogue named by --catalog (default: the user data dir), as a clear UserError
    when it cannot be used (or, with `write`, cannot be written). A --catalog path that does
    not exist yet is created, and the user is told so; in a folder that does not exist it is
    refused (a typo in the path must not scatter catalogues). Other CLI modules use this too."""
    given = getattr(args, "catalog", None)
    created = False
    if given is not None:
        path = Path(given).expanduser()
        if not path.exists():
            if not path.parent.is_dir():
                raise UserError(f"--catalog {given}: folder {path.parent} does not exist")
            created = True
    try:
        catalog = Catalog(given)
    except CatalogError as exc:
        raise UserError(str(exc)) from exc
    except OSError as exc:
        raise UserError(f"cannot open catalogue: {exc}") from exc
    if created:
        print(f"astroapp: {catalog.path} did not exist: created a new, empty catalogue",
              file=sys.stderr)
    if write:
        try:
            catalog.check_writable()
        except CatalogError as exc:
            catalog.close()
            raise UserError(str(exc)) from exc
    return catalog


# --------------------------------------------------------------------------- import


def _cmd_import(args: argparse.Namespace) -> int:
    from astroapp.catalog.importer import ImportReport, iter_import
    from astroapp.cli.progress import ProgressBars

    missing = [str(p) for p in args.paths
               if not Path(p).expanduser().exists() and not Path(p).expanduser().is_symlink()]
    if missing:
        raise UserError(f"no such file or folder: {', '.join(missing)}")
    with open_catalog(args, write=True) as catalog, ProgressBars(quiet=args.quiet) as bars:
        holder: list[ImportReport] = []
        for event in iter_import(catalog, args.paths, report=holder):
            bars(event)
            if event.result.outcome == "failed":
                bars.write(f"failed: {event.result.path}: {event.result.reason}")
        report = holder[0]
        rate = f"{report.photos_per_second:.1f} files/s" if report.seconds else ""
        print(
            f"import #{report.import_id}: {report.total} files: {report.added} added, "
            f"{report.duplicates} duplicates, {report.already} already in the catalogue, "
            f"{report.failed} failed ({report.seconds:.1f} s{', ' + rate if rate else ''})"
        )
        print(f"catalogue: {catalog.path}")
    return 0


# --------------------------------------------------------------------------- photos


def _statuses(text: str | None) -> list[str] | None:
    if not text:
        return None
    wanted = [s.strip().lower() for s in text.split(",") if s.strip()]
    bad = [s for s in wanted if s not in STATUSES]
    if bad:
        raise UserError(f"unknown status {bad[0]!r}: choose from {', '.join(STATUSES)}")
    return wanted


def iso_date(text: str) -> date | datetime:
    """An argparse type: an ISO 8601 date (2021-03-04) or date and time (UTC unless an offset
    is given); anything else is a clear usage error."""
    value = text.strip()
    try:
        if len(value) <= 10:
            return date.fromisoformat(value)
        stamp = datetime.fromisoformat(value.replace(" ", "T", 1))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO date or date-time (e.g. 2021-03-04 or 2021-03-04T05:06:07Z)"
        ) from None
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)


def _cmd_photos(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 0:
        raise UserError("--limit must be >= 0")
    with open_catalog(args) as catalog:
        photos = catalog.photos(
            status=_statuses(args.status),
            mission=args.mission,
            search=args.search,
            min_conf=args.min_conf,
            max_conf=args.max_conf,
            date_from=args.date_from,
            date_to=args.date_to,
            limit=args.limit,
        )
    if args.json:
        json.dump([dataclasses.asdict(p) for p in photos], sys.stdout, indent=2)
        print()
        return 0
    if not photos:
        print("no photos match", file=sys.stderr)
        return 0
    header = ("ID", "STATUS", "NASA ID", "CAPTURED (UTC)", "SIZE", "CONF", "FILE")
    rows = []
    for p in photos:
        rows.append((
            str(p.id),
            p.status,
            p.nasa_id or "-",
            (p.captured_at or "-").replace("T", " ").rstrip("Z"),
            f"{p.width}x{p.height}" if p.width else "-",
            f"{p.confidence:.2f}" if p.confidence is not None else "-",
            p.name + (f"  ({p.status_reason})" if p.status == "failed" and p.status_reason else ""),
        ))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1])
    return 0


# --------------------------------------------------------------------------- status


def _cmd_status(args: argparse.Namespace) -> int:
    with open_catalog(args) as catalog:
        counts = catalog.counts_by_status()
        imports = catalog.imports()
        nasa_rows = catalog.connection.execute("SELECT count(*) FROM nasa_metadata").fetchone()[0]
        info = {
            "catalog": str(catalog.path),
            "schema_version": catalog.schema_version,
            "photos": sum(counts.values()),
            "by_status": counts,
            "nasa_metadata_rows": nasa_rows,
            "imports": len(imports),
            "last_import": dataclasses.asdict(imports[-1]) if imports else None,
        }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"catalogue:      {info['catalog']}")
    print(f"schema version: {info['schema_version']}")
    print(f"photos:         {info['photos']}")
    for status in STATUSES:
        print(f"  {status:<12} {counts[status]}")
    print(f"NASA metadata:  {nasa_rows} photo ids")
    if imports:
        last = imports[-1]
        print(
            f"last import:    #{last.id} {last.started_at} ({last.state}): {last.added} added, "
            f"{last.duplicates} duplicates, {last.already} already, {last.failed} failed"
        )
    return 0


# --------------------------------------------------------------------------- NASA CSV


def _cmd_import_nasa(args: argparse.Namespace) -> int:
    from astroapp.catalog.nasa_csv import import_nasa_csv

    if not args.csv.is_file():
        raise UserError(f"no such CSV file: {args.csv}")
    with open_catalog(args, write=True) as catalog:
        try:
            report = import_nasa_csv(catalog, args.csv)
        except (ValueError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read {args.csv}: {exc}") from exc
    for line, reason in report.errors:
        print(f"{args.csv}:{line}: skipped: {reason}", file=sys.stderr)
    print(
        f"{report.rows} rows: {report.stored} stored ({report.attached} match photos in the "
        f"catalogue), {len(report.errors)} skipped"
    )
    return 0


# --------------------------------------------------------------------------- registration


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "import",
        help="import photos: files, folders (recursive) and .zip rolls",
        description="Add photos to the catalogue. Duplicates (same content) are recognised; "
        "re-running adds nothing new; bad files are recorded as failed with the reason.",
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or per-file errors")
    p.set_defaults(func=_cmd_import)

    p = subparsers.add_parser(
        "photos", aliases=["list"], help="list catalogued photos (filters, table or JSON)"
    )
    p.add_argument("--status", help=f"comma-separated: {', '.join(STATUSES)}")
    p.add_argument("--mission", help="NASA mission, e.g. ISS064")
    p.add_argument("--search", help="substring of file path, NASA id or camera")
    p.add_argument("--min-conf", type=float, help="latest localization confidence >= this")
    p.add_argument("--max-conf", type=float, help="latest localization confidence <= this")
    p.add_argument("--from", dest="date_from", type=iso_date, help="captured at or after (ISO date/time, UTC)")
    p.add_argument("--to", dest="date_to", type=iso_date, help="captured at or before (ISO date/time, UTC)")
    p.add_argument("--limit", type=int, help="at most this many")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    p.set_defaults(func=_cmd_photos)

    p = subparsers.add_parser("status", help="catalogue path, schema version, photos per status")
    p.add_argument("--json", action="store_true", help="JSON instead of text")
    p.set_defaults(func=_cmd_status)

    p = subparsers.add_parser(
        "import-nasa",
        help="attach NASA catalogue metadata (centre, nadir, altitude, ...) from a CSV",
        description="Columns are matched by name: photo id (photo_id/MRF/id or mission+roll+"
        "frame), center lat/lon (LAT/LON), nadir lat/lon (NLAT/NLON), altitude in km "
        "(altitude_nmi for nautical miles), focal length (FCLT), tilt, cloud %% (CLDP), sun "
        "elevation/azimuth, features.",
    )
    p.add_argument("csv", type=Path, metavar="CSV")
    p.set_defaults(func=_cmd_import_nasa)
