"""The photo at full resolution in its own window: wheel zoom, drag pan, fit, 1:1, Esc closes.

The review shows photos at display size (1600 px); checking a coastline or a cloud edge
needs the photo's own pixels. A 12-MP JPEG takes a few hundred milliseconds to decode, so
it is decoded in a plain thread (its signals reach the window queued) through the one photo
reader, in the EXIF-upright frame that every stored pixel coordinate uses.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import (
    QDialog,
    QGraphicsPixmapItem,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
)

from astroapp.catalog.photo_reader import read_photo
from astroapp.gui.qimages import numpy_to_qimage
from astroapp.gui.workers import run_in_thread
from astroapp.gui.zoom_view import ZoomView

HELP = "wheel: zoom · drag: pan · 0: fit · 1: 100 % · Esc: close"


def _decode(path: Path) -> QImage:
    """Full resolution, converted to the pixmap's native format here, off the UI thread."""
    frame = read_photo(path)
    return numpy_to_qimage(frame.rgb).convertToFormat(QImage.Format.Format_RGB32)


class PhotoWindow(QDialog):
    """One photo at full resolution; non-modal, so the review stays usable beside it."""

    def __init__(self, path: str | Path, title: str, parent=None) -> None:
        super().__init__(parent)
        self.path = Path(path)
        self.setWindowTitle(f"{title} — full size")
        self.view = ZoomView()
        self.view.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.status = QLabel(f"Loading {self.path.name} …")
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.image_size: tuple[int, int] | None = None
        self.error: str | None = None
        fit = QPushButton("Fit (0)")
        fit.clicked.connect(self.fit)
        actual = QPushButton("100 % (1)")
        actual.clicked.connect(self.actual_size)
        for b in (fit, actual):
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        bar = QHBoxLayout()
        bar.addWidget(self.status, 1)
        bar.addWidget(fit)
        bar.addWidget(actual)
        lay = QVBoxLayout(self)
        lay.addWidget(self.view, 1)
        lay.addLayout(bar)
        for keys, slot in ((("0",), self.fit), (("1",), self.actual_size),
                           (("+", "=", "Ctrl++"), lambda: self.view.zoom(1.25)),
                           (("-", "Ctrl+-"), lambda: self.view.zoom(0.8))):
            for k in keys:
                QShortcut(QKeySequence(k), self).activated.connect(slot)
        self.resize(1200, 850)
        self.finished.connect(self._release)  # a closed window keeps no 50-MB pixmap
        self._load()

    def _load(self) -> None:
        run_in_thread(_decode, self.path, parent=self, on_done=self._on_loaded,
                      on_failed=self._on_failed, name="astroapp-photo-view")

    def _on_loaded(self, image: QImage) -> None:
        if not self.isVisible():  # closed while decoding
            return
        item = QGraphicsPixmapItem(QPixmap.fromImage(image))
        item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        scene = self.view.scene()
        scene.clear()
        scene.addItem(item)
        scene.setSceneRect(item.boundingRect())
        self.image_size = (image.width(), image.height())
        self.status.setText(f"{self.path.name}: {image.width()} x {image.height()} px, full resolution — {HELP}")
        self.fit()

    def _release(self) -> None:
        self.view.scene().clear()

    def _on_failed(self, exc: Exception) -> None:
        self.error = str(exc)
        self.status.setText(f"Cannot show the photo: {exc}")

    @property
    def ready(self) -> bool:
        return self.image_size is not None or self.error is not None

    def fit(self) -> None:
        """The whole photo in the window (until the next wheel zoom)."""
        self.view.resetTransform()
        self.view._user_zoomed = False  # noqa: SLF001 - ZoomView's own fit-until-zoomed state
        self.view.fit()

    def actual_size(self) -> None:
        """One photo pixel per screen pixel."""
        scale = self.view.transform().m11()
        if scale > 0:
            self.view.zoom(1.0 / scale)

    def scale(self) -> float:
        """Screen pixels per photo pixel."""
        return self.view.transform().m11()
