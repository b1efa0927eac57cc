"""The catalogue as a Qt model: one row per photo, thumbnails loaded lazily.

Filtering happens in SQL (`Catalog.photos` filters), so the model holds only the rows that
match. Thumbnails are decoded only when a view asks for them (visible rows), a batch at a
time from the event loop, and kept in a bounded cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QIcon, QImage, QPainter, QPixmap

from astroapp.catalog.db import STATUSES, Catalog, Photo
from astroapp.lru import LRUCache

STATUS_COLORS = {
    "new": QColor(150, 150, 150),
    "localizing": QColor(80, 160, 255),
    "localized": QColor(255, 200, 40),
    "review": QColor(255, 140, 0),
    "accepted": QColor(60, 190, 90),
    "rejected": QColor(220, 70, 70),
    "failed": QColor(170, 60, 170),
}

THUMB_SIZE = QSize(128, 128)
# One vocabulary for the table, status bar, filters, review and export dialog.
STATUS_LABELS = {
    "localized": "auto-accepted",
    "review": "to review",
    "accepted": "accepted",
}
# The legend: what each word means (tooltips of the status bar counts and the status filter).
STATUS_HELP = {
    "new": "imported, not localized yet",
    "localizing": "being localized now",
    "localized": "the pipeline found it confident (above the matcher's calibrated "
                 "threshold); no person has decided yet",
    "review": "localized without confidence (or not at all); a person decides",
    "accepted": "accepted by a person (in the review, a batch accept or manual georeferencing)",
    "rejected": "rejected by a person",
    "failed": "could not be read or localized (see the reason)",
}


def status_label(status: str) -> str:
    return STATUS_LABELS.get(status, status)


def status_legend() -> str:
    """Rich text: each status's colour, word and meaning."""
    rows = [f"<span style='color:{STATUS_COLORS[s].name()}'>●</span> <b>{status_label(s)}</b>: "
            f"{STATUS_HELP[s]}" for s in STATUSES]
    return "<br>".join(rows)


@dataclass
class PhotoFilter:
    """What the filter bar asks for; None/empty means no constraint."""

    status: str | None = None
    mission: str | None = None
    search: str = ""
    min_conf: float | None = None
    max_conf: float | None = None
    date_from: str | None = None
    date_to: str | None = None

    def query(self) -> dict[str, Any]:
        return {
            "status": self.status or None,
            "mission": self.mission or None,
            "search": self.search.strip() or None,
            "min_conf": self.min_conf,
            "max_conf": self.max_conf,
            "date_from": self.date_from or None,
            "date_to": self.date_to or None,
        }


def photo_label(photo: Photo) -> str:
    """How a photo is named in the UI: its NASA id when known, else its file name."""
    return photo.nasa_id or photo.name


def placeholder_icon(status: str | None = None) -> QIcon:
    pix = QPixmap(THUMB_SIZE)
    pix.fill(QColor(40, 44, 52))
    painter = QPainter(pix)
    painter.setPen(STATUS_COLORS.get(status or "new", QColor(120, 120, 120)))
    painter.drawRect(0, 0, THUMB_SIZE.width() - 1, THUMB_SIZE.height() - 1)
    painter.end()
    return QIcon(pix)


THUMBNAILS_CACHED = 3000  # photo id -> QIcon in the table's LRU cache


class PhotoTableModel(QAbstractTableModel):
    COLUMNS = ("Photo", "File", "Mission", "Captured (UTC)", "Status", "Confidence", "Size", "Camera")
    PhotoIdRole = Qt.ItemDataRole.UserRole + 1
    PhotoRole = Qt.ItemDataRole.UserRole + 2

    countsChanged = Signal(dict)  # status -> count, over the whole catalogue

    def __init__(self, catalog: Catalog, parent=None) -> None:
        super().__init__(parent)
        self.catalog = catalog
        self.filter = PhotoFilter()
        self._photos: list[Photo] = []
        self._row_of: dict[int, int] = {}
        self.thumbs: LRUCache[int, QIcon] = LRUCache(THUMBNAILS_CACHED)
        self._pending: list[int] = []
        self._placeholders = {s: placeholder_icon(s) for s in STATUSES}
        self._thumb_timer = QTimer(self)
        self._thumb_timer.setSingleShot(True)
        self._thumb_timer.setInterval(0)
        self._thumb_timer.timeout.connect(self._load_pending_thumbnails)

    # ---- data access -----------------------------------------------------------------
    def set_catalog(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.thumbs = LRUCache(THUMBNAILS_CACHED)
        self.reload()

    def set_filter(self, flt: PhotoFilter) -> None:
        self.filter = flt
        self.reload()

    def reload(self) -> None:
        self.beginResetModel()
        self._photos = self._sorted(self.catalog.photos(**self.filter.query()))
        self._row_of = {p.id: i for i, p in enumerate(self._photos)}
        self.endResetModel()
        self.countsChanged.emit(self.counts())

    def sort(self, column: int, order=Qt.SortOrder.AscendingOrder) -> None:
        """Sort by any column (kept across reloads; N/P in the review follow this order);
        column -1 is import order. Photos without a value sort last either way."""
        self._sort = (column, order)
        self.layoutAboutToBeChanged.emit()
        self._photos = self._sorted(self._photos)
        self._row_of = {p.id: i for i, p in enumerate(self._photos)}
        self.layoutChanged.emit()

    def _sorted(self, photos: list[Photo]) -> list[Photo]:
        column, order = getattr(self, "_sort", (-1, Qt.SortOrder.AscendingOrder))
        if column < 0:
            return sorted(photos, key=lambda p: p.id)
        status_rank = {s: i for i, s in enumerate(STATUSES)}

        def key(p: Photo):
            if column == 4:
                return status_rank.get(p.status, 99)
            if column == 5:
                return p.confidence
            if column == 6:
                return (p.width or 0) * (p.height or 0) or None
            return self._display(p, column).lower() or None

        have = [p for p in photos if key(p) is not None]
        missing = [p for p in photos if key(p) is None]
        have.sort(key=lambda p: (key(p), p.id), reverse=order == Qt.SortOrder.DescendingOrder)
        return have + missing

    def refresh_photos(self, photo_ids) -> None:
        """Re-read the given photos (status or confidence changed) without a reset."""
        ids = [int(i) for i in photo_ids if int(i) in self._row_of]
        if ids:
            for photo in self.catalog.photos(ids=ids):
                row = self._row_of[photo.id]
                self._photos[row] = photo
                self.dataChanged.emit(self.index(row, 0), self.index(row, self.columnCount() - 1))
        self.countsChanged.emit(self.counts())

    def counts(self) -> dict[str, int]:
        """Photos per status over the whole catalogue."""
        return self.catalog.counts_by_status()

    def photo_at(self, row: int) -> Photo | None:
        return self._photos[row] if 0 <= row < len(self._photos) else None

    def row_of(self, photo_id: int) -> int | None:
        return self._row_of.get(int(photo_id))

    def photo_ids(self) -> list[int]:
        return [p.id for p in self._photos]

    # ---- Qt model API ----------------------------------------------------------------
    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(self._photos)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(self.COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.COLUMNS[section]
        return None

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        photo = self._photos[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(photo, col)
        if role == Qt.ItemDataRole.DecorationRole and col == 0:
            return self._icon(photo)
        if role == Qt.ItemDataRole.ForegroundRole and col == 4:
            return STATUS_COLORS.get(photo.status)
        if role == Qt.ItemDataRole.ToolTipRole:
            tip = f"{photo.path}\nstatus: {photo.status}"
            if photo.status_reason:
                tip += f"\n{photo.status_reason}"
            return tip
        if role == Qt.ItemDataRole.TextAlignmentRole and col == 5:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == self.PhotoIdRole:
            return photo.id
        if role == self.PhotoRole:
            return photo
        return None

    def _display(self, photo: Photo, col: int) -> str:
        if col == 0:
            return photo_label(photo)
        if col == 1:
            return photo.name
        if col == 2:
            return photo.mission or ""
        if col == 3:
            return (photo.captured_at or "").replace("T", " ").rstrip("Z")[:19]
        if col == 4:
            return status_label(photo.status)
        if col == 5:
            return "" if photo.confidence is None else f"{photo.confidence:.3f}"
        if col == 6:
            return f"{photo.width}x{photo.height}" if photo.width else ""
        if col == 7:
            return " ".join(x for x in (photo.camera_make, photo.camera_model) if x)
        return ""

    # ---- lazy thumbnails -------------------------------------------------------------
    def _icon(self, photo: Photo) -> QIcon:
        icon = self.thumbs.get(photo.id)
        if icon is not None:
            return icon
        if photo.id not in self._pending:
            self._pending.append(photo.id)
            if not self._thumb_timer.isActive():
                self._thumb_timer.start()
        return self._placeholders.get(photo.status) or self._placeholders["new"]

    def _load_pending_thumbnails(self, batch: int = 64) -> None:
        todo, self._pending = self._pending[:batch], self._pending[batch:]
        for photo_id in todo:
            data = self.catalog.thumbnail(photo_id)
            image = QImage()
            if data is None or not image.loadFromData(data):
                photo = self.photo_at(self._row_of.get(photo_id, -1))
                icon = self._placeholders.get(photo.status if photo else "failed")
            else:
                icon = QIcon(QPixmap.fromImage(image))
            self.thumbs.put(photo_id, icon)
            row = self._row_of.get(photo_id)
            if row is not None:
                idx = self.index(row, 0)
                self.dataChanged.emit(idx, idx, [Qt.ItemDataRole.DecorationRole])
        if self._pending:
            self._thumb_timer.start()

    def stop_loading(self) -> None:
        """Drop thumbnails still to load (the catalogue is about to close)."""
        self._thumb_timer.stop()
        self._pending = []

    def missions(self) -> list[str]:
        return self.catalog.missions()
