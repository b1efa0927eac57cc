"""QApplication set-up and the event loop."""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from astroapp import __version__


def application(argv: list[str] | None = None) -> QApplication:
    app = QApplication.instance()
    if app is None:
        app = QApplication(argv if argv is not None else sys.argv[:1])
    app.setApplicationName("astroapp")
    app.setApplicationVersion(__version__)
    app.setOrganizationName("astroapp")
    app.setStyle("Fusion")
    return app


def run(catalog_path: Path | None = None, demo: bool = True, argv: list[str] | None = None) -> int:
    app = application(argv)
    from astroapp.gui.main_window import MainWindow

    window = MainWindow(catalog_path)
    window.show()
    if demo:
        QTimer.singleShot(0, window.offer_demo)
    return app.exec()
