"""A native world map: footprints drawn over the bundled Blue Marble image.

QtWebEngine is not part of PySide6-Essentials, so instead of a Leaflet page the map is a
QGraphicsView. The Blue Marble image is plate carree, so scene coordinates are simply
(lon, -lat) in degrees and footprints are drawn as polygons without any reprojection.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence

import cv2
import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QImage, QPen, QPixmap, QPolygonF, QTransform
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGraphicsPixmapItem,
    QGraphicsPolygonItem,
    QGraphicsView,
    QLabel,
)

from astroapp.gui.imagery import world_rgb
from astroapp.gui.zoom_view import setup_pannable

# The bundled Blue Marble has no bathymetry over part of the Southern Ocean: a flat fill of
# this colour from a straight edge near 60 S down to the Antarctic coast, which the map showed
# as a dark rectangle with a seam along 60 S.
_NO_BATHYMETRY_RGB = (2, 5, 20)


def fill_southern_ocean_gap(rgb: np.ndarray, tolerance: int = 6) -> np.ndarray:
    """The world image (plate carree RGB) with the flat no-data patch south of its seam filled
    by mirroring the ocean just north of the seam: continuous across the seam by construction,
    with the texture of real bathymetry. Land and ice are neither replaced nor mirrored in.

    The seam is found, not assumed: south of 50 S, the row where most flat runs of the
    no-data colour begin; the patch is every flat pixel connected to that row, below it.
    """
    h, w = rgb.shape[:2]
    south = int(round(140.0 / 180.0 * h))  # 50 S
    fill = np.array(_NO_BATHYMETRY_RGB, np.int16)
    flat = cv2.inRange(np.ascontiguousarray(rgb[south:]), np.clip(fill - tolerance, 0, 255).astype(np.uint8),
                       np.clip(fill + tolerance, 0, 255).astype(np.uint8)) // 255
    flat = cv2.morphologyEx(flat, cv2.MORPH_CLOSE, np.ones((9, 9), np.uint8))  # JPEG noise
    starts = (flat[1:] > flat[:-1]).sum(axis=1)
    if starts.size == 0 or starts.max() < w // 20:  # no straight edge: nothing to fill
        return rgb
    seam = int(np.argmax(starts)) + 1
    _, labels = cv2.connectedComponents(flat[seam:], connectivity=4)
    touching = np.unique(labels[0][flat[seam] > 0])
    region = np.isin(labels, touching[touching > 0])
    rows = np.flatnonzero(region.any(axis=1))
    lift = 4  # mirror about a row a little north of the seam: JPEG blurs the seam's own rows
    r0 = south + seam - lift
    k = min(int(rows[-1]) + 1 + lift, r0)
    region = np.concatenate([np.repeat(region[:1], lift, axis=0), region])[:k]
    mirror = np.ascontiguousarray(rgb[r0 - k : r0][::-1])
    r, g, b = (mirror[..., i].astype(np.int16) for i in range(3))
    ocean = (b > r + 8) & (b > g) & (mirror.max(axis=2) < 120)  # never mirror land or ice in
    wanted = (region & ocean).astype(np.float32)
    pad = 12  # feather the patch's edges, but not the seam, where the mirror is continuous
    alpha = cv2.GaussianBlur(np.concatenate([np.repeat(wanted[:1], pad, axis=0), wanted]), (0, 0), 3)[pad:]
    alpha *= wanted
    out = rgb.copy()
    out[r0 : r0 + k] = cv2.blendLinear(mirror, rgb[r0 : r0 + k], alpha, 1.0 - alpha)
    return out


@functools.lru_cache(maxsize=1)
def world_image() -> QImage:
    """Loaded once per process, without the seam near Antarctica; a dark placeholder if the
    package data is missing."""
    try:
        rgb = world_rgb()  # Blue Marble, 5400 x 2700 plate carree
    except Exception:  # noqa: BLE001 - a missing optional asset must not break the app
        image = QImage(720, 360, QImage.Format.Format_RGB32)
        image.fill(QColor(20, 30, 60))
        return image
    rgb = np.ascontiguousarray(fill_southern_ocean_gap(rgb))
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def footprint_rings(footprint) -> list[list[tuple[float, float]]]:
    """Exterior rings (lon, lat) of a footprint, split at the antimeridian when it has to be.

    Accepts a Footprint (its `polygon()`), a shapely geometry or a plain list of corners.
    """
    geom = footprint
    if hasattr(geom, "polygon"):
        geom = geom.polygon()
    if hasattr(geom, "geoms"):
        return [list(g.exterior.coords) for g in geom.geoms]
    if hasattr(geom, "exterior"):
        return [list(geom.exterior.coords)]
    corners = [tuple(c) for c in geom]
    return [corners]


STYLES = {
    "current": (QColor(255, 210, 0), QColor(255, 210, 0, 70), 2.5),
    "neighbour": (QColor(80, 200, 255), QColor(80, 200, 255, 35), 1.2),
    "accepted": (QColor(60, 220, 90), QColor(60, 220, 90, 40), 1.2),
    "rejected": (QColor(240, 70, 70), QColor(240, 70, 70, 30), 1.2),
    "candidate": (QColor(255, 255, 255), QColor(0, 0, 0, 0), 1.0),
}


class MapView(QGraphicsView):
    """Zoomable, pannable world map; scene units are degrees (x = lon, y = -lat)."""

    footprintClicked = Signal(object)  # the key given to add_footprint (double-click)
    footprintSelected = Signal(object)  # single click: the key under the cursor, None on empty map

    MAX_SCALE = 2000.0  # view pixels per degree

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        setup_pannable(self, QColor(10, 12, 20))
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        image = world_image()
        base = QGraphicsPixmapItem(QPixmap.fromImage(image))
        base.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        base.setTransform(QTransform.fromScale(360.0 / image.width(), 180.0 / image.height()))
        base.setPos(-180.0, -90.0)
        base.setZValue(-10)
        self.scene().addItem(base)
        self.scene().setSceneRect(QRectF(-180, -90, 360, 180))  # panning stops at the world's edges
        self._items: dict[object, list[QGraphicsPolygonItem]] = {}
        self._wanted: QRectF | None = QRectF(-180, -90, 360, 180)  # re-fitted on resize
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._styles: dict[object, str] = {}
        self._highlighted: set = set()
        self._press = None
        # overlays, fixed in the view's corners: legend, cursor coordinates, a message
        self.legend = self._overlay()
        self.legend.hide()
        self.readout = self._overlay()
        self.readout.hide()
        self.message = self._overlay()
        self.message.setStyleSheet(self.message.styleSheet() + "font-size:15px;padding:10px;")
        self.message.hide()
        self.viewport().setMouseTracking(True)

    def _overlay(self) -> QLabel:
        label = QLabel(self)
        label.setTextFormat(Qt.TextFormat.RichText)
        label.setStyleSheet("background:rgba(10,12,20,190);color:#e6e6e6;padding:4px 6px;border-radius:3px;")
        label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        return label

    def set_legend(self, entries: Sequence[tuple[str, str]]) -> None:
        """(style name, label) rows drawn in the top-left corner in their outline colours."""
        rows = [f"<span style='color:{STYLES[style][0].name()}'>■</span> {text}" for style, text in entries]
        self.legend.setText("<br>".join(rows))
        self.legend.adjustSize()
        self.legend.setVisible(bool(rows))
        self._place_overlays()

    def show_message(self, text: str) -> None:
        """A centred note over the map (e.g. the filter matches nothing); empty hides it."""
        self.message.setText(text)
        self.message.adjustSize()
        self.message.setVisible(bool(text))
        self._place_overlays()

    def _place_overlays(self) -> None:
        self.legend.move(8, 8)
        self.readout.move(8, self.height() - self.readout.height() - 8)
        self.message.move((self.width() - self.message.width()) // 2, (self.height() - self.message.height()) // 2)

    # ---- footprints -----------------------------------------------------------------
    def clear_footprints(self) -> None:
        for items in self._items.values():
            for item in items:
                self.scene().removeItem(item)
        self._items.clear()
        self._styles.clear()
        self._highlighted = set()

    def add_footprint(self, key, footprint, style: str = "neighbour", tooltip: str = "") -> None:
        items = []
        for ring in footprint_rings(footprint):
            poly = QPolygonF([QPointF(lon, -lat) for lon, lat in ring])
            item = QGraphicsPolygonItem(poly)
            _style_item(item, style)
            item.setData(0, key)
            item.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIsSelectable, False)
            if tooltip:
                item.setToolTip(tooltip)
            self.scene().addItem(item)
            items.append(item)
        self._items.setdefault(key, []).extend(items)
        self._styles[key] = style

    def highlight(self, keys: Iterable[object]) -> None:
        """Draw these footprints as the current one (selection), the others in their own style."""
        wanted = {k for k in keys if k in self._items}
        for key in self._highlighted ^ wanted:
            style = "current" if key in wanted else self._styles.get(key, "neighbour")
            for item in self._items[key]:
                _style_item(item, style)
        self._highlighted = wanted

    def highlighted(self) -> set:
        return set(self._highlighted)

    def show_footprints(
        self,
        current=None,
        neighbours: Iterable[tuple[object, object, str]] = (),
        current_key: object = "current",
        zoom_to_current: bool = True,
    ) -> None:
        """Replace what is drawn: the current footprint highlighted, neighbours beneath it."""
        self.clear_footprints()
        for key, fp, style in neighbours:
            self.add_footprint(key, fp, style)
        if current is not None:
            self.add_footprint(current_key, current, "current")
            if zoom_to_current:
                self.zoom_to(self.footprint_rect(current_key), margin=4.0)

    def footprint_keys(self) -> list[object]:
        return list(self._items)

    def footprint_rect(self, key) -> QRectF:
        rect = QRectF()
        for item in self._items.get(key, []):
            rect = rect.united(item.sceneBoundingRect())
        return rect

    # ---- navigation -----------------------------------------------------------------
    def zoom_to(self, rect: QRectF, margin: float = 3.0) -> None:
        """Fit `rect` (scene units) with `margin` times its size around it."""
        if rect.isNull() or rect.isEmpty():
            return
        c = rect.center()
        w = max(rect.width() * margin, 0.5)
        h = max(rect.height() * margin, 0.5)
        self._fit(QRectF(c.x() - w / 2, c.y() - h / 2, w, h))

    def show_world(self) -> None:
        self._fit(QRectF(-180, -90, 360, 180))

    def _fit(self, rect: QRectF) -> None:
        self._wanted = rect
        self._fit_wanted()

    def _fit_wanted(self) -> None:
        """Fit the wanted rect, never wider than the world (an empty strip beside the world is
        what a wide window showed), then slide the view back onto the world where the fit would
        show the empty scene beyond the image's edges.

        The scale is set directly: QGraphicsView.fitInView keeps a 2-px margin, which left a
        dark column at each side of the world view.
        """
        vw, vh = self.viewport().width(), self.viewport().height()
        r = self._wanted
        if vw <= 0 or vh <= 0 or r is None or r.width() <= 0 or r.height() <= 0:
            return
        scale = min(max(min(vw / r.width(), vh / r.height()), self._min_scale()), self.MAX_SCALE)
        self.setTransform(QTransform.fromScale(scale, scale))
        c = r.center()
        x, y = c.x(), c.y()
        for lo, hi, half, axis in ((-180.0, 180.0, vw / scale / 2, "x"), (-90.0, 90.0, vh / scale / 2, "y")):
            v = x if axis == "x" else y
            v = (lo + hi) / 2 if 2 * half >= hi - lo else min(max(v, lo + half), hi - half)
            if axis == "x":
                x = v
            else:
                y = v
        self.centerOn(QPointF(x, y))

    def _min_scale(self) -> float:
        """The world's 360 degrees fill the viewport's width (plus a pixel for rounding)."""
        return (self.viewport().width() + 1) / 360.0

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._place_overlays()
        if self._wanted is not None:  # a view laid out after zoom_to: fit again
            self._fit_wanted()

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        if self._wanted is not None:
            self._fit_wanted()

    def scale_factor(self) -> float:
        return self.transform().m11()

    def zoom(self, factor: float) -> None:
        current = self.scale_factor()
        target = min(max(current * factor, self._min_scale()), self.MAX_SCALE)
        if current > 0 and not math.isclose(target, current):
            self.scale(target / current, target / current)
            self._wanted = None  # the user navigates now

    def zoom_in(self) -> None:
        self.zoom(1.25)

    def zoom_out(self) -> None:
        self.zoom(0.8)

    def wheelEvent(self, event) -> None:  # noqa: N802 - Qt naming
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.zoom(1.25**steps)
        event.accept()

    def key_at(self, view_pos) -> object | None:
        for item in self.items(view_pos):
            key = item.data(0)
            if key is not None:
                return key
        return None

    def mousePressEvent(self, event) -> None:  # noqa: N802
        self._press = event.position()
        super().mousePressEvent(event)

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        super().mouseReleaseEvent(event)
        press, self._press = self._press, None
        if (press is not None and event.button() == Qt.MouseButton.LeftButton
                and (event.position() - press).manhattanLength() <= 4):  # a click, not a pan
            self.footprintSelected.emit(self.key_at(event.position().toPoint()))

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        super().mouseMoveEvent(event)
        lon, lat = self.lonlat_at(int(event.position().x()), int(event.position().y()))
        if -90 <= lat <= 90 and -180 <= lon <= 180:
            self.readout.setText(f"{abs(lat):.3f}° {'N' if lat >= 0 else 'S'}, "
                                 f"{abs(lon):.3f}° {'E' if lon >= 0 else 'W'}")
            self.readout.adjustSize()
            self.readout.show()
            self._place_overlays()
        else:
            self.readout.hide()

    def mouseDoubleClickEvent(self, event) -> None:  # noqa: N802
        for item in self.items(event.position().toPoint()):
            key = item.data(0)
            if key is not None:
                self.footprintClicked.emit(key)
                return
        super().mouseDoubleClickEvent(event)

    def lonlat_at(self, view_x: int, view_y: int) -> tuple[float, float]:
        p = self.mapToScene(view_x, view_y)
        return p.x(), -p.y()


def _style_item(item: QGraphicsPolygonItem, style: str) -> None:
    pen_color, brush_color, width = STYLES.get(style, STYLES["neighbour"])
    pen = QPen(pen_color, width)
    pen.setCosmetic(True)  # constant screen width at any zoom
    item.setPen(pen)
    item.setBrush(QBrush(brush_color))
    item.setZValue(10 if style == "current" else 1)


def polygon_from_points(points: Sequence[tuple[float, float]]) -> QPolygonF:
    return QPolygonF([QPointF(float(x), float(y)) for x, y in points])
