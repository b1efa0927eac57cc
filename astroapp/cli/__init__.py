"""The `astroapp` command: one argparse parser, one module per subcommand group."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from astroapp import __version__

# Each module defines `register(subparsers)`; order is the order shown in --help.
SUBCOMMAND_MODULES = [
    "astroapp.cli.catalog_cmds",
    "astroapp.cli.gui_cmds",
    "astroapp.cli.geo_cmds",
    "astroapp.cli.retrieval_cmds",
    "astroapp.cli.index_cmds",
    "astroapp.cli.match_cmds",
    "astroapp.cli.export_cmds",
    "astroapp.cli.demo_cmds",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="astroapp",
        description="Localize astronaut photographs of Earth. With no command, opens the app.",
    )
    parser.add_argument("--version", action="version", version=f"astroapp {__version__}")
    _add_global_options(parser, default=None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(sub)
    _accept_global_options_after_commands(parser)
    return parser


def _add_global_options(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument(
        "--catalog",
        type=Path,
        default=default,
        help="catalogue file (default: catalog.sqlite in the user data dir)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", default=default or False,
                        help="debug logging")


def _accept_global_options_after_commands(parser: argparse.ArgumentParser) -> None:
    """`astroapp import DIR --catalog X` works like `astroapp --catalog X import DIR`: every
    (sub)command parser also takes the global options, with defaults that leave the value
    given before the command untouched (argparse.SUPPRESS)."""
    seen: set[int] = set()
    pending = [parser]
    while pending:
        current = pending.pop()
        for action in current._actions:
            if not isinstance(action, argparse._SubParsersAction):
                continue
            for child in action.choices.values():
                if id(child) in seen:  # aliases share one parser
                    continue
                seen.add(id(child))
                _add_global_options(child, default=argparse.SUPPRESS)
                pending.append(child)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.command is None:
        if "astroapp.cli.gui_cmds" in SUBCOMMAND_MODULES:
            args = parser.parse_args([*(argv or sys.argv[1:]), "gui"])
        else:
            parser.print_help()
            return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except UserError as exc:
        print(f"astroapp: error: {exc}", file=sys.stderr)
        return 2


class UserError(Exception):
    """An error caused by input the user gave: printed as one clear line, exit code 2."""


def int_list(text: str, option: str, what: str) -> list[int]:
    """A comma-separated option value ("9,10,11") as integers; anything else is a UserError."""
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise UserError(f"{option} takes comma-separated {what}, not {text!r}") from exc
