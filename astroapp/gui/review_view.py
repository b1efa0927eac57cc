"""Review of one photo's localization: photo, matched satellite view, inlier correspondences,
footprint on the map with its neighbours, candidates, and one-key decisions.

Keys: A accept, R reject, N / Right next, P / Left previous, + / - zoom, C correspondences,
W warped view, Ctrl+Z undo. Every decision goes to `Catalog.record_review` with the
reviewer's name and time, and can be undone (`Catalog.undo_review`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from PySide6.QtCore import QEvent, QLineF, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QImage,
    QKeySequence,
    QPainter,
    QPen,
    QPixmap,
    QShortcut,
)
from PySide6.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QFrame,
    QGraphicsItem,
    QGraphicsPixmapItem,
    QGraphicsPolygonItem,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from astroapp.catalog.db import Localization, Photo, StoredCandidate
from astroapp.gui import imagery
from astroapp.gui.catalog_model import STATUS_COLORS, photo_label, status_label
from astroapp.gui.map_view import MapView, polygon_from_points
from astroapp.gui.qimages import numpy_to_qimage
from astroapp.gui.review_text import describe_method, rerank_inliers
from astroapp.gui.workers import run_in_thread
from astroapp.gui.zoom_view import ZoomView

log = logging.getLogger(__name__)

DISPLAY_HEIGHT = 720  # photo and satellite view are shown at this height (scene px)
VIEW_PX = 768  # satellite view resolution
MAX_LINES = 200  # correspondences drawn (evenly subsampled beyond this, for legibility)
NEIGHBOUR_RADIUS_DEG = 12.0


def _review_images(seq: int, *request) -> tuple[int, imagery.ReviewImages, QImage | None,
                                                  QImage | None]:
    """Worker-thread side of the review's rendering: the pictures, and QImages of them (a
    QImage, unlike a QPixmap, may be made off the UI thread)."""
    images = imagery.review_images(*request, view_px=VIEW_PX)
    photo = numpy_to_qimage(images.photo) if images.photo is not None else None
    sat = numpy_to_qimage(images.satellite) if images.satellite is not None else None
    return seq, images, photo, sat


META_ROWS = ("Problem", "File", "Captured (UTC)", "Camera", "Focal length", "Size", "NASA nadir",
             "NASA centre", "Altitude", "Tilt", "Cloud", "Sun elevation", "Features")


def _num(value, fmt: str, unit: str = "") -> str:
    return "—" if value is None else f"{value:{fmt}}{unit}"


def photo_metadata(photo: Photo, nasa) -> dict[str, str]:
    """The metadata panel's rows: EXIF from the photo record, NASA's catalogue fields (when
    imported), and the status reason (failure or why it awaits review)."""
    rows = {
        "Problem": photo.status_reason or "none",
        "File": photo.path,
        "Captured (UTC)": (photo.captured_at or "unknown").replace("T", " "),
        "Camera": " ".join(x for x in (photo.camera_make, photo.camera_model) if x) or "—",
        "Focal length": _num(photo.focal_length_mm, ".0f", " mm (EXIF)"),
        "Size": f"{photo.width} x {photo.height} px" if photo.width else "—",
    }
    if nasa is None:
        rows.update({k: "—" for k in META_ROWS if k not in rows})
        rows["NASA nadir"] = "no NASA record (import the catalogue CSV)"
        return rows

    def point(lon, lat) -> str:
        return "—" if lon is None or lat is None else f"{lat:.2f}, {lon:.2f} (lat, lon)"

    rows.update({
        "NASA nadir": point(nasa.nadir_lon, nasa.nadir_lat),
        "NASA centre": point(nasa.center_lon, nasa.center_lat),
        "Altitude": _num(nasa.altitude_km, ".0f", " km"),
        "Tilt": (_num(nasa.tilt_deg, ".0f", "°") if nasa.tilt_deg is not None
                 else (nasa.tilt_code or "—")),
        "Cloud": _num(nasa.cloud_pct, ".0f", " %"),
        "Sun elevation": _num(nasa.sun_elevation_deg, ".0f", "°"),
        "Features": nasa.features or "—",
    })
    if nasa.focal_length_mm is not None:
        rows["Focal length"] = (f"{nasa.focal_length_mm:.0f} mm (NASA)"
                                + (f", {photo.focal_length_mm:.0f} mm (EXIF)" if photo.focal_length_mm else ""))
    return rows


def fit_quality(catalog, photo_id: int) -> tuple[float | None, float | None]:
    """(fit RMS in photo px, position uncertainty in m) as the exports compute them; None
    when the photo has no footprint or no stored matches."""
    from astroapp.export.records import records_from_catalog

    records, _ = records_from_catalog(catalog, ids=[photo_id])
    if not records:
        return None, None
    return records[0].fit_error_px(), records[0].position_uncertainty_m()


@dataclass
class ReviewData:
    """Everything shown for one photo, read from the catalogue on the UI thread."""

    photo: Photo
    localization: Localization | None
    candidates: list[StoredCandidate] = field(default_factory=list)
    neighbours: list[tuple[int, list, str]] = field(default_factory=list)  # (photo id, corners, status)
    events: list = field(default_factory=list)


def read_review_data(catalog, photo_id: int) -> ReviewData | None:
    photo = catalog.get_photo(photo_id)
    if photo is None:
        return None
    loc = catalog.latest_localization(photo_id)
    cands = catalog.candidates(loc.id) if loc is not None else []
    data = ReviewData(photo, loc, cands, events=catalog.review_events(photo_id))
    if loc is not None and loc.center_lon is not None and loc.center_lat is not None:
        data.neighbours = catalog.current_footprints(
            near=(loc.center_lon, loc.center_lat, NEIGHBOUR_RADIUS_DEG), exclude=photo_id, limit=300)
    return data


class CorrespondenceItem(QGraphicsItem):
    """All inlier lines in one item, drawn in a few colour batches (fast with hundreds)."""

    COLORS = 12

    def __init__(self, a: np.ndarray, b: np.ndarray) -> None:
        super().__init__()
        self.a, self.b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        pts = np.vstack([self.a, self.b])
        lo, hi = pts.min(axis=0) - 4, pts.max(axis=0) + 4
        self._rect = QRectF(lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1])
        groups: dict[int, list[int]] = {}
        for i in range(len(self.a)):
            groups.setdefault((i * 7) % self.COLORS, []).append(i)
        self._batches = []
        for c, members in groups.items():
            color = QColor.fromHsv(int(360 * c / self.COLORS), 210, 255, 210)
            lines = [QLineF(*self.a[i], *self.b[i]) for i in members]
            dots = [QPointF(*self.a[i]) for i in members] + [QPointF(*self.b[i]) for i in members]
            self._batches.append((color, lines, dots))

    def __len__(self) -> int:
        return len(self.a)

    def boundingRect(self) -> QRectF:  # noqa: N802
        return self._rect

    def paint(self, painter: QPainter, option, widget=None) -> None:
        for color, lines, dots in self._batches:
            pen = QPen(color, 1.2)
            pen.setCosmetic(True)
            painter.setPen(pen)
            painter.drawLines(lines)
            dot = QPen(color, 5.0, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap)
            dot.setCosmetic(True)
            painter.setPen(dot)
            painter.drawPoints(dots)


class PairView(ZoomView):
    """The photo (left) and the matched satellite view (right) with inlier lines between."""

    captionsChanged = Signal(str, str)  # what the left and right images show

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.captions = ("", "")
        self.lines: CorrespondenceItem | None = None
        self.lines_visible = True
        self.line_count = 0

    def show_pair(
        self,
        photo: QImage | None,
        satellite: QImage | None,
        photo_pts: np.ndarray,
        view_pts: np.ndarray,
        quad: np.ndarray | None,
        caption_left: str,
        caption_right: str,
    ) -> None:
        """Points are in the given images' pixels; both images are scaled to DISPLAY_HEIGHT."""
        scene = self.scene()
        scene.clear()
        self.lines = None
        x0 = 0.0
        sp = ss = 1.0
        offset = 0.0
        if photo is not None and not photo.isNull():
            sp = DISPLAY_HEIGHT / photo.height()
            item = QGraphicsPixmapItem(QPixmap.fromImage(photo))
            item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
            item.setScale(sp)
            scene.addItem(item)
            offset = photo.width() * sp + 24
        if satellite is not None and not satellite.isNull():
            ss = DISPLAY_HEIGHT / satellite.height()
            item = QGraphicsPixmapItem(QPixmap.fromImage(satellite))
            item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
            item.setScale(ss)
            item.setPos(offset, 0)
            scene.addItem(item)
            x0 = offset
        # the right caption sits where the satellite view is (or would be) drawn, never on the left's
        # captions go in a label above the view (readable at any size, never over each other)
        self.captions = (caption_left, caption_right)
        self.captionsChanged.emit(caption_left, caption_right)
        if quad is not None and satellite is not None:
            poly = QGraphicsPolygonItem(polygon_from_points([(x0 + x * ss, y * ss) for x, y in quad]))
            pen = QPen(QColor(255, 210, 0), 2)
            pen.setCosmetic(True)
            poly.setPen(pen)
            scene.addItem(poly)
        self.line_count = 0
        if len(photo_pts) and satellite is not None:
            idx = np.arange(len(photo_pts))
            if len(idx) > MAX_LINES:
                idx = np.linspace(0, len(idx) - 1, MAX_LINES).astype(int)
            a = photo_pts[idx] * sp
            b = view_pts[idx] * ss + np.array([x0, 0.0])
            item = CorrespondenceItem(a, b)
            item.setVisible(self.lines_visible)
            scene.addItem(item)
            self.lines = item
            self.line_count = len(idx)
        scene.setSceneRect(scene.itemsBoundingRect().adjusted(-20, -20, 20, 20))
        self._user_zoomed = False
        self.fit()

    def set_lines_visible(self, visible: bool) -> None:
        self.lines_visible = visible
        if self.lines is not None:
            self.lines.setVisible(visible)


class ReviewView(QWidget):
    """One photo at a time; the main window supplies the catalogue and the photo sequence."""

    decisionMade = Signal(int)  # photo id whose status changed
    photoChanged = Signal(int)

    def __init__(self, main_window) -> None:
        super().__init__(main_window)
        self.main = main_window
        self.photo_id: int | None = None
        self.data: ReviewData | None = None
        self.candidate_index: int | None = None  # None: the localization itself
        self.undo_stack: list[int] = []  # photo ids of decisions, latest last
        self.advance_after_decision = True
        self.last_render: dict = {}
        self.render_pending = False  # imagery requested and not shown yet (loaded in a worker)
        self._render_seq = 0
        self._render_next: tuple | None = None  # the latest request no worker has taken yet
        self._render_worker_seq = 0  # the request a reading thread works on (0: none)
        self.last_notice = ""
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)

        self.title = QLabel("No photo selected")
        f = self.title.font()
        f.setPointSize(f.pointSize() + 3)
        f.setBold(True)
        self.title.setFont(f)
        self.pair = PairView()
        self.caption_left = QLabel()
        self.caption_right = QLabel()
        for lab in (self.caption_left, self.caption_right):
            lab.setWordWrap(True)
        self.pair.captionsChanged.connect(self._show_captions)
        self.map = MapView()
        self.map.footprintClicked.connect(self._on_map_click)
        self.map.setMinimumHeight(220)
        self.map.set_legend([("current", "this photo"), ("candidate", "retrieved tiles"),
                             ("neighbour", "other photos"), ("accepted", "accepted"), ("rejected", "rejected")])

        self.btn_accept = QPushButton("Accept (A)")
        self.btn_reject = QPushButton("Reject (R)")
        self.btn_prev = QPushButton("◀ Previous (P)")
        self.btn_next = QPushButton("Next (N) ▶")
        self.btn_undo = QPushButton("Undo (Ctrl+Z)")
        self.chk_lines = QCheckBox("Matches (C)")
        self.chk_lines.setToolTip("Show the inlier correspondences between photo and satellite view (C)")
        self.chk_lines.setChecked(True)
        self.chk_warp = QCheckBox("Warp (W)")
        self.chk_warp.setToolTip("Warp the satellite view into the photo's frame (W)")
        self.chk_advance = QCheckBox("Auto-advance")
        self.chk_advance.setToolTip("Go to the next photo after each accept or reject")
        self.chk_advance.setChecked(True)
        self.btn_accept.setStyleSheet("QPushButton{background:#2e7d32;color:white;font-weight:bold;padding:4px 10px}")
        self.btn_reject.setStyleSheet("QPushButton{background:#b71c1c;color:white;font-weight:bold;padding:4px 10px}")
        for b in (self.btn_accept, self.btn_reject, self.btn_prev, self.btn_next, self.btn_undo):
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.btn_accept.clicked.connect(self.accept)
        self.btn_reject.clicked.connect(self.reject)
        self.btn_prev.clicked.connect(self.previous)
        self.btn_next.clicked.connect(self.next)
        self.btn_undo.clicked.connect(self.undo)
        self.chk_lines.toggled.connect(self.pair.set_lines_visible)
        self.chk_warp.toggled.connect(lambda _on: self._render())
        self.chk_advance.toggled.connect(lambda on: setattr(self, "advance_after_decision", on))

        self.position = QLabel()  # "k of n" in the queue (the table's filter and sort order)
        bar = QHBoxLayout()
        for w in (self.btn_prev, self.position, self.btn_next, self.btn_accept, self.btn_reject,
                  self.btn_undo):
            bar.addWidget(w)
        bar.addStretch(1)
        for w in (self.chk_lines, self.chk_warp, self.chk_advance):
            bar.addWidget(w)

        self.info = QFormLayout()
        self.info_labels: dict[str, QLabel] = {}
        self.info.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        row_names = {"Inliers": "Coregistration inliers"}  # vs the re-ranking inliers per candidate
        row_names["Uncertainty"] = "Position uncertainty"
        for key in ("Status", "Confidence", "Inliers", "Fit RMS", "Uncertainty", "Candidate rank",
                    "Tile", "Angle", "Centre", "Area", "Method", "Reviewed"):
            lab = QLabel("—")
            lab.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            lab.setWordWrap(True)
            self.info_labels[key] = lab
            self.info.addRow(row_names.get(key, key) + ":", lab)
        self.info_labels["Fit RMS"].setToolTip(
            "RMS distance (photo px) between each stored match and where the fitted homography "
            "puts its ground point: the figure the GeoTIFF export writes as FIT_ERROR_RMS_PX")
        self.info_labels["Uncertainty"].setToolTip(
            "The fit RMS in km on the ground (POSITION_UNCERTAINTY_M in the GeoTIFF export)")
        self.info_labels["Inliers"].setToolTip(
            "Inliers of the final coregistration (the iterative homography on the surroundings); "
            "the candidate list shows the re-ranking inliers of each retrieved tile")
        info_box = QGroupBox("Localization")
        info_box.setLayout(self.info)

        self.meta = QFormLayout()
        self.meta.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        self.meta_labels: dict[str, QLabel] = {}
        for key in META_ROWS:
            lab = QLabel("—")
            lab.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            lab.setWordWrap(True)
            self.meta_labels[key] = lab
            self.meta.addRow(key + ":", lab)
        meta_box = QGroupBox("Photo (EXIF and NASA catalogue)")
        meta_box.setLayout(self.meta)

        self.candidates = QListWidget()
        self.candidates.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.candidates.currentRowChanged.connect(self._on_candidate_row)
        self.btn_try = QPushButton("Coregister with this candidate (T)")
        self.btn_try.setToolTip("Run EarthMatch against the selected candidate; the result becomes "
                                "the photo's current localization, ready to accept or reject")
        self.btn_try.clicked.connect(self.try_candidate)
        self.btn_manual = QPushButton("Georeference manually (G)")
        self.btn_manual.setToolTip("Click tie points between the photo and the satellite view; "
                                   "the fitted footprint is stored and accepted")
        self.btn_manual.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.btn_manual.clicked.connect(self.open_manual)
        cand_box = QGroupBox("Candidates (click to view; inliers: re-ranking)")
        cl = QVBoxLayout(cand_box)
        cl.addWidget(self.candidates)
        cl.addWidget(self.btn_try)
        cl.addWidget(self.btn_manual)

        self.note = QPlainTextEdit()
        self.note.setPlaceholderText("Note for this photo (saved with the next decision, or Save note)")
        self.note.setMaximumHeight(70)
        self.btn_note = QPushButton("Save note")
        self.btn_note.clicked.connect(self.save_note)
        self.history = QListWidget()
        self.history.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.history.setMaximumHeight(110)
        note_box = QGroupBox("Note and history")
        nl = QVBoxLayout(note_box)
        nl.addWidget(self.note)
        nl.addWidget(self.btn_note)
        nl.addWidget(self.history)

        side = QSplitter(Qt.Orientation.Vertical)
        side.setChildrenCollapsible(False)  # dragging never hides the mini-map for good
        side.addWidget(self.map)
        side_panel = QWidget()
        sl = QVBoxLayout(side_panel)
        sl.setContentsMargins(0, 0, 0, 0)
        sl.addWidget(info_box)
        sl.addWidget(meta_box)
        self.candidates.setMinimumHeight(110)
        sl.addWidget(cand_box, 1)
        sl.addWidget(note_box)
        # rows keep their full height (no clipped digits or underscores): the panel scrolls
        self.side_scroll = QScrollArea()
        self.side_scroll.setWidgetResizable(True)
        self.side_scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.side_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.side_scroll.setWidget(side_panel)
        self.side_panel = side_panel
        self.side_scroll.viewport().installEventFilter(self)  # rows keep their wrapped height
        self.pair.viewport().installEventFilter(self)  # double-click on the photo: full size
        self.side_scroll.setMinimumWidth(280)
        side.addWidget(self.side_scroll)
        side.setSizes([300, 520])
        self.side_splitter = side
        pair_box = QWidget()
        pl = QVBoxLayout(pair_box)
        pl.setContentsMargins(0, 0, 0, 0)
        caps = QHBoxLayout()
        caps.addWidget(QLabel("<b>Left:</b>"))
        caps.addWidget(self.caption_left, 1)
        caps.addWidget(QLabel("<b>Right:</b>"))
        caps.addWidget(self.caption_right, 1)
        pl.addLayout(caps)
        pl.addWidget(self.pair, 1)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(pair_box)
        split.addWidget(side)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        split.setSizes([950, 420])

        lay = QVBoxLayout(self)
        lay.addWidget(self.title)
        lay.addLayout(bar)
        lay.addWidget(split, 1)

        ctx = Qt.ShortcutContext.WidgetWithChildrenShortcut
        for keys, slot in (
            (("A",), self.accept), (("R",), self.reject), (("N", "Right"), self.next),
            (("P", "Left"), self.previous), (("+", "=", "Ctrl++"), self.zoom_in),
            (("-", "Ctrl+-"), self.zoom_out), (("Ctrl+Z",), self.undo),
            (("C",), self.chk_lines.toggle), (("W",), self.chk_warp.toggle), (("0",), self.fit),
            (("T",), self.try_candidate), (("G",), self.open_manual),
        ):
            for k in keys:
                sc = QShortcut(QKeySequence(k), self, context=ctx)
                sc.activated.connect(slot)
        self._update_buttons()

    # ---- state -----------------------------------------------------------------------
    @property
    def catalog(self):
        return self.main.catalog

    def reviewer(self) -> str:
        return self.main.settings.reviewer_name()

    def clear(self) -> None:
        self.photo_id = None
        self.data = None
        self._render_seq += 1  # imagery still on its way is for a photo no longer shown
        self._render_next, self.render_pending = None, False
        self.title.setText("No photo selected")
        self.pair.scene().clear()
        self.map.clear_footprints()
        self.candidates.clear()
        self.history.clear()
        for lab in self.info_labels.values():
            lab.setText("—")
        self._show_captions("", "")
        self._update_buttons()

    def show_photo(self, photo_id: int) -> None:
        if self.photo_id is not None and photo_id != self.photo_id:
            self._flush_note()
        self.photo_id = int(photo_id)
        self.candidate_index = None
        self.note.blockSignals(True)
        self.note.clear()
        self.note.blockSignals(False)
        self.refresh()
        self.photoChanged.emit(self.photo_id)

    def refresh(self) -> None:
        if self.photo_id is None:
            return
        self.data = read_review_data(self.catalog, self.photo_id)
        if self.data is None:
            self.clear()
            return
        self._fill_info()
        self._fill_candidates()
        self._render()
        self._update_buttons()
        self._fit_side_panel()

    def _update_buttons(self) -> None:
        has = self.data is not None
        has_loc = has and self.data.localization is not None and self.data.localization.footprint is not None
        self.btn_accept.setEnabled(has_loc)
        self.btn_reject.setEnabled(has)
        self.btn_undo.setEnabled(bool(self.undo_stack))
        self.btn_note.setEnabled(has)
        self.btn_manual.setEnabled(has)
        self.btn_try.setEnabled(has and self.candidate_index is not None and self.main.job is None)
        seq = self.main.review_sequence() if has else []
        pos = seq.index(self.photo_id) if self.photo_id in seq else -1
        self.position.setText(f"{pos + 1} of {len(seq)}" if pos >= 0 else
                              (f"not in the {len(seq)} listed" if has else ""))
        self.btn_prev.setEnabled(pos > 0 or (pos < 0 and bool(seq)))
        self.btn_next.setEnabled(0 <= pos < len(seq) - 1 or (pos < 0 and bool(seq)))

    # ---- panels ----------------------------------------------------------------------
    def _fill_info(self) -> None:
        d = self.data
        p, loc = d.photo, d.localization
        color = STATUS_COLORS.get(p.status, QColor("white")).name()
        self.title.setText(f"{photo_label(p)}  <span style='color:{color}'>[{status_label(p.status)}]</span>"
                           f"  <span style='font-weight:normal;font-size:small'>{p.name}</span>")
        lab = self.info_labels
        lab["Status"].setText(status_label(p.status)
                              + (f" — {p.status_reason}" if p.status_reason else ""))
        if loc is None:
            for k in ("Confidence", "Inliers", "Fit RMS", "Uncertainty", "Candidate rank", "Tile", "Angle",
                      "Centre", "Area", "Method"):
                lab[k].setText("—")
            lab["Confidence"].setText("not localized yet")
        else:
            conf = "—" if loc.confidence is None else f"{loc.confidence:.3f}"
            if loc.accepted_auto:  # the pipeline found it confident; who decided is the status
                conf += (" (auto-accepted)" if p.status == "localized"
                         else " (above the auto-accept threshold)")
            lab["Confidence"].setText(conf)
            lab["Inliers"].setText("—" if loc.inliers is None else str(loc.inliers))
            rms, unc = fit_quality(self.catalog, p.id)
            lab["Fit RMS"].setText("—" if rms is None else f"{rms:.1f} px")
            lab["Uncertainty"].setText("—" if unc is None else f"± {unc / 1000:.2f} km")
            lab["Candidate rank"].setText("—" if loc.rank is None else f"{loc.rank} of {len(d.candidates) or '?'}")
            lab["Tile"].setText(f"{loc.tile_id or '—'} ({loc.source_id or '?'})")
            lab["Angle"].setText("—" if loc.angle is None else f"{loc.angle}°")
            lab["Centre"].setText("—" if loc.center_lon is None else f"{loc.center_lon:.4f}, {loc.center_lat:.4f} (lon, lat)")
            lab["Area"].setText("—" if loc.area_km2 is None else f"{loc.area_km2:,.0f} km²")
            lab["Method"].setText(describe_method(loc.method))
        self._fill_meta()
        decisions = [e for e in d.events if e.action in ("accept", "reject", "undo")]
        lab["Reviewed"].setText(f"{decisions[-1].action} by {decisions[-1].who} at {decisions[-1].at}" if decisions else "never")
        self.history.clear()
        for e in reversed(d.events):
            text = f"{e.at[:19].replace('T', ' ')}  {e.who}: {e.action}"
            if e.note:
                text += f" — {e.note}"
            self.history.addItem(text)

    def _fill_meta(self) -> None:
        """EXIF and NASA fields, and why the photo failed or awaits review, in plain view."""
        p = self.data.photo
        nasa = self.catalog.nasa_metadata(p.id)
        for key, text in photo_metadata(p, nasa).items():
            self.meta_labels[key].setText(text)
        self.meta_labels["Problem"].setStyleSheet("color:#e57373" if p.status == "failed" else "")

    def _fill_candidates(self) -> None:
        self.candidates.blockSignals(True)
        self.candidates.clear()
        loc = self.data.localization
        if loc is not None:
            item = QListWidgetItem(
                f"★ localization: rank {'' if loc.rank is None else loc.rank}  {loc.tile_id or ''}  "
                f"conf {loc.confidence if loc.confidence is not None else float('nan'):.3f}"
                + (f"  coregistration: {loc.inliers} inliers" if loc.inliers is not None else ""))
            self.candidates.addItem(item)
        # inliers of the geometric re-ranking, one per stored candidate in rank order
        verified = rerank_inliers(loc.method) if loc is not None else []
        for i, c in enumerate(self.data.candidates):
            score = "" if c.score is None else f"score {c.score:.3f}"
            angle = "" if c.angle is None else f"{c.angle}°"
            check = (f"  re-ranking: {verified[i]} inliers" if i < len(verified) and verified[i] is not None
                     else "")
            mark = "  ◀ used" if loc is not None and c.tile_id == loc.tile_id and c.rank == loc.rank else ""
            self.candidates.addItem(QListWidgetItem(f"#{c.rank}  {c.tile_id}  {angle}  {score}{check}{mark}"))
        self.candidates.setCurrentRow(0 if self.candidate_index is None else self.candidate_index + 1)
        self.candidates.blockSignals(False)

    def _on_candidate_row(self, row: int) -> None:
        self.candidate_index = None if row <= 0 else row - 1
        self._render()
        self._update_buttons()

    def selected_candidate(self) -> StoredCandidate | None:
        if self.data is None or self.candidate_index is None:
            return None
        if 0 <= self.candidate_index < len(self.data.candidates):
            return self.data.candidates[self.candidate_index]
        return None

    def try_candidate(self) -> None:
        cand = self.selected_candidate()
        if cand is None or self.photo_id is None:
            self.main.statusBar().showMessage("Pick a candidate in the list first.", 4000)
            return
        self.main.start_coregister_candidate(self.photo_id, cand.rank)

    def manual_region(self) -> tuple[list, str | None, str | None]:
        """What the manual georeferencing view covers: the picked candidate, else the
        proposed footprint, else the retrieval candidates, else NASA's nadir point (else the
        world); with the tile source and tile id to read it from."""
        d = self.data
        cand = self.selected_candidate()
        loc = d.localization
        if cand is not None and cand.footprint:
            return [cand.footprint], cand.source_id, cand.tile_id
        if loc is not None and loc.footprint:
            return [loc.footprint], loc.source_id, loc.tile_id
        fps = [c.footprint for c in d.candidates[:3] if c.footprint]
        if fps:
            return fps, d.candidates[0].source_id, None
        meta = self.catalog.nasa_metadata(d.photo.id)
        if meta is not None and meta.nadir_lon is not None and meta.nadir_lat is not None:
            lon, lat = meta.nadir_lon, max(min(meta.nadir_lat, 80.0), -80.0)
            return [[[lon - 3, lat + 3], [lon + 3, lat + 3], [lon + 3, lat - 3], [lon - 3, lat - 3]]], None, None
        return [], None, None

    def open_manual(self):
        """The manual georeferencing dialog for this photo (non-modal; stored fits refresh)."""
        if self.data is None or self.photo_id is None:
            return None
        from astroapp.gui.manual_georef import ManualGeorefDialog

        region, source_id, tile_id = self.manual_region()
        loc = self.data.localization
        proposal = loc.footprint if loc is not None and loc.footprint else None
        try:
            dlg = ManualGeorefDialog(self.main, self.photo_id, region, source_id, tile_id, proposal)
        except OSError as exc:
            self.main.statusBar().showMessage(f"Cannot georeference: {exc}", 8000)
            return None
        dlg.stored.connect(self._on_manual_stored)
        dlg.setModal(False)
        dlg.show()
        self.manual_dialog = dlg
        return dlg

    def _on_manual_stored(self, photo_id: int) -> None:
        self.undo_stack.append(photo_id)
        self.decisionMade.emit(photo_id)
        self.main.statusBar().showMessage("Manual georeferencing stored and accepted (Ctrl+Z to undo)", 6000)
        if photo_id == self.photo_id:
            self.candidate_index = None
            self.refresh()

    def eventFilter(self, obj, event) -> bool:  # noqa: N802
        if obj is self.side_scroll.viewport() and event.type() == QEvent.Type.Resize:
            self._fit_side_panel()
        if (obj is self.pair.viewport() and event.type() == QEvent.Type.MouseButtonDblClick
                and any(isinstance(i, QGraphicsPixmapItem) and i.pos().x() == 0
                        for i in self.pair.items(event.position().toPoint()))):  # on the photo
            self.main.open_photo_view(self.photo_id)
            return True
        return super().eventFilter(obj, event)

    def _fit_side_panel(self) -> None:
        """A scroll area sizes its widget by size hints, which ignore how tall word-wrapped
        rows get at the current width: ask the layout (height for width) instead."""
        width = self.side_scroll.viewport().width()
        layout = self.side_panel.layout()
        if width > 0 and layout is not None and layout.hasHeightForWidth():
            self.side_panel.setMinimumHeight(layout.totalHeightForWidth(width))

    def _show_captions(self, left: str, right: str) -> None:
        self.caption_left.setText(left)
        self.caption_right.setText(right)

    def _on_map_click(self, key) -> None:
        if isinstance(key, tuple) and key and key[0] == "photo":
            self.show_photo(key[1])

    # ---- rendering -------------------------------------------------------------------
    def _render(self) -> None:
        """Ask for the pair view's pictures; they are read and computed in a worker thread
        (photo decode, satellite imagery, warp) and shown when they arrive. Only the latest
        request counts: one worker at a time, and what a superseded request returns is
        dropped. The map and the captions known from the catalogue are drawn at once."""
        d = self.data
        if d is None:
            return
        loc = d.localization
        cand = self.selected_candidate()
        focus_corners = None
        if cand is not None and cand.footprint:
            focus_corners = cand.footprint
        elif loc is not None and loc.footprint:
            focus_corners = loc.footprint
        size = (d.photo.width, d.photo.height) if d.photo.width and d.photo.height else None
        request = (d.photo.path, size, loc, cand, self.chk_warp.isChecked())
        self._render_seq += 1
        self._render_next = (self._render_seq, request)
        self.render_pending = True
        left = f"photo {d.photo.width}x{d.photo.height}" if size else "photo"
        self._show_captions(f"{left} — loading…",
                            "loading the satellite view…" if focus_corners is not None
                            else "no localization yet")
        self._render_map(focus_corners)
        if not self._render_worker_seq:  # else it starts when the running one is done
            self._start_render_worker()

    def _start_render_worker(self) -> None:
        if self._render_next is None:
            return
        seq, request = self._render_next
        self._render_next = None
        self._render_worker_seq = seq
        run_in_thread(_review_images, seq, *request, parent=self, on_done=self._on_review_images,
                      on_failed=self._on_review_images_failed, name="astroapp-review-imagery")

    def _on_review_images_failed(self, exc: BaseException) -> None:
        log.warning("review imagery failed: %s", exc)
        if self._render_worker_seq == self._render_seq:
            self.render_pending = False
            self.pair.scene().clear()
            self._show_captions("photo", f"cannot show the imagery: {exc}")
        self._render_worker_seq = 0
        self._start_render_worker()  # the latest request made while this one ran

    def _on_review_images(self, result: tuple[int, imagery.ReviewImages, QImage | None,
                                               QImage | None]) -> None:
        seq, images, photo, sat = result
        self._render_worker_seq = 0
        if seq != self._render_seq:  # a newer request superseded this one: show that instead
            self._start_render_worker()
            return
        self.render_pending = False
        self.pair.show_pair(photo, sat, images.photo_pts, images.view_pts, images.quad,
                            images.caption_left, images.caption_right)
        self.last_render = {"lines": self.pair.line_count, "source": images.source_id,
                            "satellite": sat is not None}

    def _render_map(self, focus_corners) -> None:
        d = self.data
        neighbours = []
        for pid, corners, status in d.neighbours:
            style = status if status in ("accepted", "rejected") else "neighbour"
            neighbours.append((("photo", pid), corners, style))
        for c in d.candidates[:10]:
            if c.footprint:
                neighbours.append((("candidate", c.rank), c.footprint, "candidate"))
        loc = d.localization
        current = loc.footprint if loc is not None and loc.footprint else None
        self.map.show_footprints(current, neighbours, current_key=("photo", d.photo.id), zoom_to_current=False)
        if focus_corners is not None:
            self.map.add_footprint("focus", focus_corners, "current" if current is None else "candidate")
            rect = QRectF()
            for key in ("focus", ("photo", d.photo.id)):
                rect = rect.united(self.map.footprint_rect(key))
            self.map.zoom_to(rect, margin=5.0)
        else:
            self.map.show_world()

    # ---- navigation ------------------------------------------------------------------
    def _step(self, delta: int) -> None:
        seq = self.main.review_sequence()
        if not seq:
            return
        if self.photo_id in seq:
            pos = seq.index(self.photo_id) + delta
        else:
            pos = 0 if delta > 0 else len(seq) - 1
        if 0 <= pos < len(seq):
            self.show_photo(seq[pos])
        else:
            self._end_of_queue(delta)

    def _end_of_queue(self, delta: int) -> None:
        seq = self.main.review_sequence()
        left = sum(1 for pid in seq if (p := self.main.model.photo_at(self.main.model.row_of(pid)))
                   and p.status in ("review", "localized"))
        where = "end" if delta > 0 else "start"
        self.last_notice = (f"{where.capitalize()} of the queue ({len(seq)} photos); "
                            f"{left} still awaiting a decision (to review or auto-accepted)")
        self.main.statusBar().showMessage(self.last_notice, 8000)

    def next(self) -> None:
        self._step(+1)

    def previous(self) -> None:
        self._step(-1)

    def zoom_in(self) -> None:
        self.pair.zoom(1.25)
        self.map.zoom_in()

    def zoom_out(self) -> None:
        self.pair.zoom(0.8)
        self.map.zoom_out()

    def fit(self) -> None:
        self.pair.fit()

    # ---- decisions -------------------------------------------------------------------
    def _decide(self, action: str) -> None:
        if self.data is None or self.photo_id is None:
            return
        if action == "accept" and (self.data.localization is None or not self.data.localization.footprint):
            self.main.statusBar().showMessage("Nothing to accept: this photo has no footprint.", 5000)
            return
        note = self.note.toPlainText().strip() or None
        pid = self.photo_id
        self.main.service.review(pid, action, self.reviewer(), note)
        self.note.clear()
        self.undo_stack.append(pid)
        self.decisionMade.emit(pid)
        self.main.statusBar().showMessage(f"{photo_label(self.data.photo)}: {action}ed by {self.reviewer()}  (Ctrl+Z to undo)", 6000)
        seq = self.main.review_sequence()
        if self.advance_after_decision and pid in seq and seq.index(pid) < len(seq) - 1:
            self.next()
        else:
            self.refresh()
            if self.advance_after_decision and pid in seq:
                self._end_of_queue(+1)

    def accept(self) -> None:
        self._decide("accept")

    def reject(self) -> None:
        self._decide("reject")

    def undo(self) -> None:
        if not self.undo_stack:
            self.main.statusBar().showMessage("Nothing to undo.", 3000)
            return
        pid = self.undo_stack.pop()
        event = self.main.service.undo_review(pid, self.reviewer())
        self.decisionMade.emit(pid)
        if event is not None:
            self.main.statusBar().showMessage(f"Undid {event.action} of photo {pid}", 5000)
        self.show_photo(pid)

    def _flush_note(self) -> None:
        """A typed note is never lost when moving on: it is recorded as a note event."""
        if self.photo_id is not None and self.note.toPlainText().strip():
            self.save_note()

    def save_note(self) -> None:
        text = self.note.toPlainText().strip()
        if not text or self.photo_id is None:
            return
        self.main.service.review(self.photo_id, "note", self.reviewer(), text)
        self.note.clear()
        if self.data is not None:
            self.data.events = self.catalog.review_events(self.photo_id)
            self._fill_info()
