"""`astroapp demo`: the whole main job on the bundled demo, then the app on its catalogue.

Prepares the demo world and roll, the demo index, imports and localizes the roll, writes the
exports and prints a summary with the score against the roll's truth.json
(`astroapp.evaluation.demo_score.run_scored_demo`); then opens the desktop app
unless --no-gui or no display is available. Re-running is fast: everything is cached.
"""

from __future__ import annotations

import argparse
import os
import sys

from astroapp.cli import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run the whole job on the bundled demo (world + a roll of synthetic ISS photos): "
             "index, import, localize, export, summary; then open the app on it",
        description="Run the whole job on the bundled demo: prepare the Blue Marble world and a "
                    "roll of synthetic ISS photos, build the demo index, import and localize the "
                    "roll, export GeoJSON/HTML map/CSV to <data dir>/demo/exports, print a "
                    "summary scored against the roll's truth.json, then open the app. "
                    "Everything is cached: a re-run only re-reports.",
    )
    p.add_argument("--photos", type=int, default=24, help="photos in the demo roll (24)")
    p.add_argument("--seed", type=int, default=0, help="demo roll seed (0)")
    p.add_argument("--model", default=None,
                   help="retrieval model name (default: the bundled astroapp-small)")
    p.add_argument("--matcher", default=None, help="matcher name (default: sift)")
    p.add_argument("--no-gui", action="store_true",
                   help="do not open the app afterwards (also automatic without a display)")
    p.set_defaults(func=run_demo_cmd)


def display_available() -> bool:
    """Whether a window can be shown: on X11/Wayland systems that needs DISPLAY or
    WAYLAND_DISPLAY (or an explicit QT_QPA_PLATFORM, e.g. offscreen); macOS and Windows
    always have one."""
    if sys.platform in ("darwin", "win32", "cygwin"):
        return True
    return any(os.environ.get(v) for v in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"))


def run_demo_cmd(args: argparse.Namespace) -> int:
    from astroapp.evaluation.demo_score import run_scored_demo

    if args.photos < 1:
        raise UserError("--photos must be at least 1")
    if args.model is not None:
        from astroapp.retrieval import get_spec

        try:
            get_spec(args.model)
        except ValueError as exc:
            raise UserError(str(exc)) from exc
    if args.matcher is not None:
        from astroapp.matching import MatcherUnavailable, get_matcher

        try:
            matcher = get_matcher(args.matcher)
        except (MatcherUnavailable, ValueError) as exc:
            raise UserError(str(exc)) from exc
    else:
        matcher = None
    from astroapp.cli.catalog_cmds import open_catalog

    open_catalog(args).close()  # an unusable --catalog is a clear error, before any work
    # Ctrl-C: run_demo puts the photo being localized back to `new`; the rest is kept
    from astroapp.cli.progress import ProgressBars

    with ProgressBars(stage_lines=True) as bars:  # each step's outcome stays as a line
        summary = run_scored_demo(args.catalog, progress=bars, n_photos=args.photos,
                                  seed=args.seed, model=args.model, matcher=matcher)
    print(summary.format_table(), flush=True)
    code = 0 if summary.ok else 1
    if args.no_gui:
        return code
    if not display_available():
        print(f"\nno display available: open the app on this catalogue later with "
              f"`astroapp --catalog {summary.catalog_path} gui`"
              if args.catalog else "\nno display available: open the app later with "
              "`astroapp gui`")
        return code
    try:
        from astroapp.gui import run_app
    except ImportError as exc:
        raise UserError(f"the desktop app cannot start ({exc}); the demo results are in "
                          f"{summary.catalog_path}") from exc
    return run_app(summary.catalog_path, demo=False)
