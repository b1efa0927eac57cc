"""`astroapp gui`: the desktop app (also what `astroapp` with no command opens)."""

from __future__ import annotations

import argparse

from astroapp.cli import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser("gui", help="open the desktop app (the default with no command)")
    p.add_argument("--no-demo", action="store_true",
                   help="do not load the bundled demo roll into an empty catalogue")
    p.set_defaults(func=run_gui)


def run_gui(args: argparse.Namespace) -> int:
    try:
        from astroapp.gui import run_app
    except ImportError as exc:  # PySide6 missing or no Qt platform libraries
        raise UserError(f"the desktop app cannot start: {exc}") from exc
    return run_app(args.catalog, demo=not args.no_demo)
