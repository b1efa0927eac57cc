"""A graphics view that fits its scene until the user zooms (wheel) or pans (drag)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor, QPainter
from PySide6.QtWidgets import QGraphicsScene, QGraphicsView

WHEEL_ZOOM = 1.2  # scale factor per wheel notch


def setup_pannable(view: QGraphicsView, background: QColor) -> None:
    """A scene of its own, smooth rendering, drag to pan, zoom about the cursor: how every
    image view of the app (pair view, tie points, full-size photo, world map) starts."""
    view.setScene(QGraphicsScene(view))
    view.setRenderHints(QPainter.RenderHint.Antialiasing | QPainter.RenderHint.SmoothPixmapTransform)
    view.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
    view.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
    view.setBackgroundBrush(QBrush(background))


class ZoomView(QGraphicsView):
    """Shared by the review's pair view and the tie-point views: one zoom/fit behaviour."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        setup_pannable(self, QColor(18, 20, 26))
        self._user_zoomed = False

    def fit(self) -> None:
        rect = self.scene().itemsBoundingRect()
        if not rect.isEmpty():
            self.fitInView(rect, Qt.AspectRatioMode.KeepAspectRatio)

    def zoom(self, factor: float) -> None:
        self._user_zoomed = True
        self.scale(factor, factor)

    def wheelEvent(self, event) -> None:  # noqa: N802
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.zoom(WHEEL_ZOOM**steps)
        event.accept()

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        if not self._user_zoomed:
            self.fit()

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        if not self._user_zoomed:
            self.fit()
