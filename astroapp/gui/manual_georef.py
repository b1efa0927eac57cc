"""Manual georeferencing dialog: the analyst clicks tie points between the photo (left) and a
north-up Mercator satellite view (right); a homography is fitted live (`pipeline.manual`)
with each point's residual and the RMS; points can be dragged or deleted; Accept stores the
fit like an automatic result (the pipeline's store step) and accepts the photo.

A click on either side starts a pair (or completes the open one); the other side completes it.
The satellite view is read in a worker thread (tile sources may read files or decode JPEGs),
never on the UI thread. Wheel zooms, dragging the background pans, dragging a marker moves it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QKeySequence, QPen, QPixmap, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QGraphicsEllipseItem,
    QGraphicsItem,
    QGraphicsPixmapItem,
    QGraphicsSimpleTextItem,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from astroapp.geo.tiles import WORLD, MercatorGrid
from astroapp.gui import imagery
from astroapp.gui.workers import run_in_thread
from astroapp.gui.zoom_view import ZoomView
from astroapp.pipeline.manual import (
    MIN_TIE_POINTS,
    ManualFit,
    fit_tie_points,
    suspect_pair,
)

log = logging.getLogger(__name__)

VIEW_PX = 1024  # satellite view resolution
CLICK_SLOP_PX = 4  # a press and release closer than this is a click, not a pan
COLUMNS = ("#", "Photo x", "Photo y", "Lon", "Lat", "Residual (px)", "Residual (km)", "RMS if deleted (px)")


class Marker(QGraphicsEllipseItem):
    """A numbered, draggable tie point; reports its new scene position when dropped."""

    R = 6.0

    def __init__(self, number: int, pos: QPointF, moved: Callable[[Marker], None]) -> None:
        super().__init__(-self.R, -self.R, 2 * self.R, 2 * self.R)
        self.moved = moved
        self.setPos(pos)
        self.setPen(QPen(QColor(0, 0, 0), 1.5))
        self.setBrush(QBrush(QColor(255, 220, 0)))
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIsMovable)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
        self.setZValue(10)
        self.setCursor(Qt.CursorShape.SizeAllCursor)
        self.label = QGraphicsSimpleTextItem(str(number), self)
        self.label.setBrush(QBrush(QColor(255, 255, 255)))
        self.label.setPos(self.R, -2.5 * self.R)

    def set_error(self, bad: bool) -> None:
        self.setBrush(QBrush(QColor(255, 70, 70) if bad else QColor(255, 220, 0)))

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        super().mouseReleaseEvent(event)
        self.moved(self)


class TiePointView(ZoomView):
    """An image with markers; a click (not a drag) on the background emits `clicked` in
    scene coordinates."""

    clicked = Signal(QPointF)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.image_item: QGraphicsPixmapItem | None = None
        self._press = None

    def set_image(self, pixmap: QPixmap) -> None:
        if self.image_item is not None:
            self.scene().removeItem(self.image_item)
        self.image_item = QGraphicsPixmapItem(pixmap)
        self.image_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self.scene().addItem(self.image_item)
        self.scene().setSceneRect(self.image_item.boundingRect())
        self._user_zoomed = False
        self.fit()

    def fit(self) -> None:
        if self.image_item is not None:
            self.fitInView(self.image_item, Qt.AspectRatioMode.KeepAspectRatio)

    def mousePressEvent(self, event) -> None:  # noqa: N802
        on_marker = isinstance(self.itemAt(event.position().toPoint()), Marker | QGraphicsSimpleTextItem)
        self._press = None if on_marker else event.position()
        super().mousePressEvent(event)

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        super().mouseReleaseEvent(event)
        press, self._press = self._press, None
        if (press is not None and event.button() == Qt.MouseButton.LeftButton
                and (event.position() - press).manhattanLength() <= CLICK_SLOP_PX
                and self.image_item is not None):
            pos = self.mapToScene(event.position().toPoint())
            if self.image_item.boundingRect().contains(pos):
                self.clicked.emit(pos)


class ManualGeorefDialog(QDialog):
    """Tie points for one photo. `region`: footprints (lists of lon/lat corners) the
    satellite view should cover; `source_id`: the tile source to read it from."""

    stored = Signal(int)  # photo id, after Accept stored the fit

    def __init__(self, main_window, photo_id: int, region: list, source_id: str | None,
                 tile_id: str | None = None, proposal: list | None = None) -> None:
        super().__init__(main_window)
        from astroapp.gui.qimages import load_photo

        self.main = main_window
        self.photo_id = photo_id
        self.source_id = source_id
        self.tile_id = tile_id
        self.pairs: list[list] = []  # [photo full-res px (x, y) | None, (lon, lat) | None]
        self.markers: list[list] = []  # [photo Marker | None, map Marker | None]
        self.fit: ManualFit | None = None
        self.fit_error = ""
        self.grid: MercatorGrid | None = None
        self.view_origin = ""
        photo = main_window.catalog.get_photo(photo_id)
        self.setWindowTitle(f"Georeference manually — {photo.nasa_id or photo.name}")
        self.resize(1200, 760)

        image, self.scale = load_photo(photo.path)
        self.photo_size = (round(image.width() / self.scale), round(image.height() / self.scale))
        self.photo_view = TiePointView()
        self.photo_view.set_image(QPixmap.fromImage(image))
        self.photo_view.clicked.connect(self._on_photo_click)
        self.map_view = TiePointView()
        self.map_view.clicked.connect(self._on_map_click)
        self.map_status = QLabel("Loading the satellite view…")

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.setMaximumHeight(190)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.rms_label = QLabel()
        self.btn_delete = QPushButton("Delete point (Del)")
        self.btn_delete.clicked.connect(self.delete_selected)
        self.btn_accept = QPushButton("Accept and store")
        self.btn_accept.setToolTip("Store this fit as the photo's localization and accept it")
        self.btn_accept.clicked.connect(self.accept_fit)
        self.proposal = proposal
        self.btn_seed = QPushButton("Start from the proposed footprint")
        self.btn_seed.setToolTip("Four tie points where the current localization puts the photo's "
                                 "corners; drag their map markers to nudge the footprint")
        self.btn_seed.setEnabled(bool(proposal))
        self.btn_seed.clicked.connect(self.seed_from_proposal)
        self.btn_cancel = QPushButton("Cancel")
        self.btn_cancel.clicked.connect(self.reject)
        QShortcut(QKeySequence(QKeySequence.StandardKey.Delete), self, activated=self.delete_selected)
        QShortcut(QKeySequence("Backspace"), self, activated=self.delete_selected)

        help_text = QLabel("Click a place in the photo, then the same place on the satellite view "
                           f"(or the other way round); {MIN_TIE_POINTS} or more pairs, spread over "
                           "the photo. Drag a marker to move it; wheel zooms, drag pans.")
        help_text.setWordWrap(True)
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(QLabel("Photo"))
        ll.addWidget(self.photo_view, 1)
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(self.map_status)
        rl.addWidget(self.map_view, 1)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.setChildrenCollapsible(False)
        split.addWidget(left)
        split.addWidget(right)
        split.setSizes([1, 1])  # photo and satellite view share the width
        buttons = QHBoxLayout()
        buttons.addWidget(self.rms_label, 1)
        for b in (self.btn_seed, self.btn_delete, self.btn_cancel, self.btn_accept):
            buttons.addWidget(b)
        lay = QVBoxLayout(self)
        lay.addWidget(help_text)
        lay.addWidget(split, 1)
        lay.addWidget(self.table)
        lay.addLayout(buttons)
        self._update()
        self._load_view(region)

    # ---- satellite view (worker thread) ----------------------------------------------
    def _load_view(self, region: list) -> None:
        if region:
            bounds = imagery.view_bounds(region, margin=0.4)
        else:  # nothing proposed: the whole world, to be zoomed in by the analyst
            bounds = (-WORLD, -WORLD, WORLD, WORLD)
        self.pending_grid = MercatorGrid(bounds, VIEW_PX, VIEW_PX)
        run_in_thread(imagery.read_satellite, self.source_id, bounds, VIEW_PX, VIEW_PX,
                      parent=self, on_done=self._on_view_loaded, on_failed=self._on_view_error,
                      name="astroapp-satellite-view")

    def _on_view_loaded(self, result) -> None:
        from astroapp.gui.qimages import numpy_to_qimage

        arr, origin = result
        self.grid, self.view_origin = self.pending_grid, origin
        self.map_view.set_image(QPixmap.fromImage(numpy_to_qimage(arr)))
        km = self.grid.ground_resolution_m() / 1000.0
        self.map_status.setText(f"Satellite view: {origin}, north up, ~{km:.2f} km/px")

    def _on_view_error(self, exc: Exception) -> None:
        self.map_status.setText(f"The satellite view could not be read: {exc}")

    @property
    def view_ready(self) -> bool:
        return self.grid is not None

    # ---- tie points ------------------------------------------------------------------
    def _open_pair(self, side: int) -> int:
        """Index of the pair a click on `side` (0 photo, 1 map) completes, or a new one."""
        if self.pairs and self.pairs[-1][side] is None:
            return len(self.pairs) - 1
        self.pairs.append([None, None])
        self.markers.append([None, None])
        return len(self.pairs) - 1

    def _place(self, side: int, scene_pos: QPointF, value) -> None:
        i = self._open_pair(side)
        self.pairs[i][side] = value
        view = self.photo_view if side == 0 else self.map_view
        marker = Marker(i + 1, scene_pos, self._on_marker_moved)
        view.scene().addItem(marker)
        self.markers[i][side] = marker
        self._update()

    def _on_photo_click(self, pos: QPointF) -> None:
        self._place(0, pos, (pos.x() / self.scale, pos.y() / self.scale))

    def _on_map_click(self, pos: QPointF) -> None:
        if self.grid is None:
            return
        lon, lat = self.grid.pixel_to_lonlat(pos.x(), pos.y())
        self._place(1, pos, (float(lon), float(lat)))

    def add_pair(self, photo_xy: tuple[float, float], lonlat: tuple[float, float]) -> None:
        """A tie point given in numbers (photo full-resolution px, lon/lat), as if clicked."""
        x, y = photo_xy
        self._on_photo_click(QPointF(x * self.scale, y * self.scale))
        px, py = self.grid.lonlat_to_pixel(*lonlat)
        self._on_map_click(QPointF(float(px), float(py)))

    def seed_from_proposal(self) -> None:
        """Nudge a proposed footprint: pairs at the photo's inset corners where the proposal
        puts them on the ground (the analyst then drags the map markers to the right places)."""
        if not self.proposal or self.grid is None:
            return
        w, h = self.photo_size
        corners = np.array([[0.0, 0.0], [w, 0.0], [w, h], [0.0, h]])
        proposed = fit_tie_points(corners, np.asarray(self.proposal, dtype=float), self.photo_size)
        inset = np.array([[0.12, 0.12], [0.88, 0.12], [0.88, 0.88], [0.12, 0.88]]) * [w, h]
        lon, lat = proposed.pixel_to_lonlat(inset[:, 0], inset[:, 1])
        for (x, y), lo, la in zip(inset, lon, lat, strict=True):
            self.add_pair((float(x), float(y)), (float(lo), float(la)))
        self.btn_seed.setEnabled(False)

    def _on_marker_moved(self, marker: Marker) -> None:
        for i, (pm, mm) in enumerate(self.markers):
            if marker is pm:
                self.pairs[i][0] = (marker.pos().x() / self.scale, marker.pos().y() / self.scale)
            elif marker is mm and self.grid is not None:
                lon, lat = self.grid.pixel_to_lonlat(marker.pos().x(), marker.pos().y())
                self.pairs[i][1] = (float(lon), float(lat))
        self._update()

    def delete_selected(self) -> None:
        rows = sorted({i.row() for i in self.table.selectedIndexes()}, reverse=True)
        if not rows and self.pairs and None in self.pairs[-1]:
            rows = [len(self.pairs) - 1]  # nothing selected: drop the half-placed pair
        for row in rows:
            self.delete_pair(row)

    def delete_pair(self, index: int) -> None:
        for m in self.markers[index]:
            if m is not None:
                m.scene().removeItem(m)
        del self.pairs[index], self.markers[index]
        for i, pair in enumerate(self.markers):  # renumber
            for m in pair:
                if m is not None:
                    m.label.setText(str(i + 1))
        self._update()

    def complete_pairs(self) -> list[int]:
        return [i for i, (a, b) in enumerate(self.pairs) if a is not None and b is not None]

    # ---- live fit --------------------------------------------------------------------
    def _update(self) -> None:
        done = self.complete_pairs()
        self.fit, self.fit_error = None, ""
        if len(done) >= MIN_TIE_POINTS:
            try:
                self.fit = fit_tie_points([self.pairs[i][0] for i in done],
                                          [self.pairs[i][1] for i in done], self.photo_size)
            except ValueError as exc:
                self.fit_error = str(exc)
        self._fill_table(done)
        if self.fit is not None:
            self.rms_label.setText(f"{len(done)} tie points — RMS {self.fit.rms_px:.1f} px "
                                   f"({self.fit.rms_km:.2f} km on the ground)")
        elif self.fit_error:
            self.rms_label.setText(self.fit_error)
        else:
            self.rms_label.setText(f"{len(done)} of {MIN_TIE_POINTS} tie points needed for a fit")
        self.btn_accept.setEnabled(self.fit is not None)

    def _fill_table(self, done: list[int]) -> None:
        self.table.setRowCount(len(self.pairs))
        res = {} if self.fit is None else {i: k for k, i in enumerate(done)}
        suspect = None if self.fit is None else suspect_pair(self.fit)
        worst = None if suspect is None else done[suspect]
        for i, (p, g) in enumerate(self.pairs):
            k = res.get(i)
            cells = [str(i + 1),
                     "—" if p is None else f"{p[0]:.1f}", "—" if p is None else f"{p[1]:.1f}",
                     "—" if g is None else f"{g[0]:.5f}", "—" if g is None else f"{g[1]:.5f}",
                     "—" if k is None else f"{self.fit.residuals_px[k]:.1f}",
                     "—" if k is None else f"{self.fit.residuals_km[k]:.2f}",
                     "—" if k is None or math.isnan(self.fit.rms_without_px[k])
                     else f"{self.fit.rms_without_px[k]:.1f}"]
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if i == worst:
                    item.setForeground(QBrush(QColor(230, 60, 60)))
                    item.setToolTip("This pair disagrees with the others: check or delete it")
                self.table.setItem(i, c, item)
            for m in self.markers[i]:
                if m is not None:
                    m.set_error(i == worst)

    # ---- accept ----------------------------------------------------------------------
    def accept_fit(self) -> None:
        if self.fit is None:
            return
        try:
            self.main.service.store_manual(
                self.photo_id, self.fit, analyst=self.main.settings.reviewer_name(),
                tile_id=self.tile_id,
                source_id=self.source_id if self.view_origin == self.source_id else None)
        except ValueError as exc:
            self.rms_label.setText(str(exc))
            return
        self.stored.emit(self.photo_id)
        self.accept()
