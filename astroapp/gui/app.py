"""QApplication set-up and the event loop."""

from __future__ import annotations

import gc
import importlib
import logging
import sys
import time
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor, QPixmap
from PySide6.QtWidgets import QApplication, QSplashScreen

from astroapp import __version__

log = logging.getLogger(__name__)


def application(argv: list[str] | None = None) -> QApplication:
    app = QApplication.instance()
    if app is None:
        app = QApplication(argv if argv is not None else sys.argv[:1])
    app.setApplicationName("astroapp")
    app.setApplicationVersion(__version__)
    app.setOrganizationName("astroapp")
    app.setStyle("Fusion")
    return app


# What a batch imports, loaded before the window. torch._dynamo: building a model on torch's
# meta device (how astroapp.checkpoints checks a weights file's config) runs its init functions
# through torch._refs, which imports torch._dynamo on first use: ~820 modules (sympy & co.) and
# 120k objects. Left to the first batch's worker, that was seconds of imports and three full
# garbage collections of 70-230 ms (every thread paused) at the batch's start.
CORE_MODULES = ("astroapp.index", "astroapp.matching", "astroapp.pipeline.service", "astroapp.retrieval",
                "astroapp.catalog.importer", "safetensors.torch", "torch._dynamo")


def load_core() -> float:
    """Import the heavy core (torch, OpenCV, faiss, the pipeline) on the UI thread, before the
    window exists; returns the seconds it took.

    Loading these libraries holds Python's GIL for up to a second or more in C code. Done by a
    worker thread later, that would freeze a window the user is already working in (measured
    by benchmarks.ui_responsiveness); done here, behind a splash screen, it never does.
    Also used by the benchmark, so that it measures the app as users start it.
    """
    t0 = time.perf_counter()
    for name in CORE_MODULES:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - the first batch reports the real error
            log.warning("could not pre-load %s: %s", name, exc)
    from astroapp.gui.map_view import world_image

    world_image()  # the maps' Blue Marble (decoded and its seam filled, ~0.5 s) before the window
    # The libraries' hundreds of thousands of long-lived objects would make every full
    # garbage collection (which pauses all threads, the UI's included) take 0.1-1 s: move
    # them out of the collector's sight.
    gc.collect()
    gc.freeze()
    return time.perf_counter() - t0


def run(catalog_path: Path | None = None, demo: bool = True, argv: list[str] | None = None) -> int:
    app = application(argv)
    pix = QPixmap(420, 120)
    pix.fill(QColor(18, 20, 26))
    splash = QSplashScreen(pix)
    splash.showMessage(f"astroapp {__version__}\nloading the localization core…",
                       Qt.AlignmentFlag.AlignCenter, QColor("white"))
    splash.show()
    app.processEvents()
    load_core()
    from astroapp.gui.main_window import MainWindow

    window = MainWindow(catalog_path)
    window.show()
    splash.finish(window)
    if demo:
        QTimer.singleShot(0, window.offer_demo)
    return app.exec()
