"""The PySide6 desktop app (a thin layer over the core; the core never imports Qt)."""

from __future__ import annotations

from pathlib import Path


def run_app(catalog_path: Path | None = None, demo: bool = True, argv: list[str] | None = None) -> int:
    """Open the main window and run the event loop; returns the exit code."""
    from astroapp.gui.app import run

    return run(catalog_path, demo=demo, argv=argv)
