"""The main window: catalogue table and thumbnail grid, filters, import, batch localization."""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path

from PySide6.QtCore import QDate, QItemSelectionModel, QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDateEdit,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListView,
    QMainWindow,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QStyle,
    QTableView,
    QTabWidget,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from astroapp.catalog.db import STATUSES, Catalog, CatalogError
from astroapp.gui import backend
from astroapp.gui.catalog_model import (
    STATUS_COLORS,
    STATUS_HELP,
    PhotoFilter,
    PhotoTableModel,
    photo_label,
    status_label,
    status_legend,
)
from astroapp.gui.map_view import MapView
from astroapp.gui.settings import (
    AppSettings,
    last_dir,
    load_settings,
    load_window_geometry,
    remember_dir,
    save_settings,
    save_window_geometry,
)
from astroapp.gui.workers import Job, Progress, format_eta

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp"}


def droppable_paths(urls) -> list[Path]:
    """Local folders, zip rolls and image files among dropped URLs."""
    out = []
    for url in urls:
        if not url.isLocalFile():
            continue
        path = Path(url.toLocalFile())
        if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES | {".zip"}:
            out.append(path)
    return out


class FilterBar(QWidget):
    changed = Signal(object)  # PhotoFilter

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(4, 2, 4, 2)
        self.search = QLineEdit(placeholderText="Search photo id / file…", clearButtonEnabled=True)
        self.status = QComboBox()
        self.status.addItem("All statuses", None)
        for s in STATUSES:
            self.status.addItem(status_label(s), s)
            self.status.setItemData(self.status.count() - 1, STATUS_HELP[s], Qt.ItemDataRole.ToolTipRole)
        self.mission = QComboBox()
        self.mission.addItem("All missions", None)
        self.conf_min = QDoubleSpinBox(decimals=2, minimum=0.0, maximum=1.0, singleStep=0.05)
        self.conf_max = QDoubleSpinBox(decimals=2, minimum=0.0, maximum=1.0, singleStep=0.05, value=1.0)
        self.conf_on = QCheckBox("Confidence")
        self.date_on = QCheckBox("Date")
        self.date_from = QDateEdit(calendarPopup=True, displayFormat="yyyy-MM-dd")
        self.date_to = QDateEdit(calendarPopup=True, displayFormat="yyyy-MM-dd")
        self.date_from.setDate(QDate(2000, 1, 1))
        self.date_to.setDate(QDate.currentDate())
        self.search.setMinimumWidth(110)  # the bar fits a 1024-px window
        for combo in (self.status, self.mission):
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(9)
        for w in (self.search,):
            lay.addWidget(w, 2)
        lay.addWidget(self.status)
        lay.addWidget(self.mission)
        lay.addWidget(self.conf_on)
        lay.addWidget(self.conf_min)
        lay.addWidget(QLabel("–"))
        lay.addWidget(self.conf_max)
        lay.addWidget(self.date_on)
        lay.addWidget(self.date_from)
        lay.addWidget(QLabel("–"))
        lay.addWidget(self.date_to)
        self._debounce = QTimer(self, singleShot=True, interval=200)
        self._debounce.timeout.connect(self._emit)
        self.search.textChanged.connect(self._debounce.start)
        for combo in (self.status, self.mission):
            combo.currentIndexChanged.connect(self._emit)
        for spin in (self.conf_min, self.conf_max):
            spin.valueChanged.connect(self._emit)
        for box in (self.conf_on, self.date_on):
            box.toggled.connect(self._emit)
        for d in (self.date_from, self.date_to):
            d.dateChanged.connect(self._emit)

    def set_missions(self, missions: list[str]) -> None:
        current = self.mission.currentData()
        self.mission.blockSignals(True)
        self.mission.clear()
        self.mission.addItem("All missions", None)
        for m in missions:
            self.mission.addItem(m, m)
        idx = self.mission.findData(current)
        self.mission.setCurrentIndex(max(idx, 0))
        self.mission.blockSignals(False)

    def value(self) -> PhotoFilter:
        flt = PhotoFilter(
            status=self.status.currentData(),
            mission=self.mission.currentData(),
            search=self.search.text(),
        )
        if self.conf_on.isChecked():
            flt.min_conf, flt.max_conf = self.conf_min.value(), self.conf_max.value()
        if self.date_on.isChecked():
            flt.date_from = self.date_from.date().toString("yyyy-MM-dd")
            flt.date_to = self.date_to.date().toString("yyyy-MM-dd")
        return flt

    def _emit(self, *_args) -> None:
        self.changed.emit(self.value())


class MainWindow(QMainWindow):
    """The app. `settings` default to the persisted ones; `catalog_path` overrides them."""

    jobFinished = Signal(str, object)  # kind ("import" | "localize"), summary

    def __init__(self, catalog_path: Path | None = None, settings: AppSettings | None = None) -> None:
        super().__init__()
        self.settings = settings or load_settings()
        if catalog_path is not None:
            self.settings.catalog = str(catalog_path)
        self.catalog_path = self.settings.catalog_path()
        self.catalog = Catalog(self.catalog_path)
        self.job: Job | None = None
        self.job_kind = ""
        self.job_ids: list[int] = []
        self.last_import_summary = None
        self.last_localize_summary = None
        self.last_export = None
        self.last_error: Exception | None = None
        self._last_reload = 0.0
        self._job_summary = None
        self.setWindowTitle(f"astroapp — {self.catalog_path}")
        self._restore_geometry()
        self.setAcceptDrops(True)

        self.model = PhotoTableModel(self.catalog, self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setIconSize(QSize(40, 40))
        self.table.verticalHeader().setDefaultSectionSize(44)
        self.table.verticalHeader().hide()
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)  # long camera names elide rather than spill over three lines
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        self.table.setSortingEnabled(True)  # click a header: sort by that column (import order first)
        for col, width in enumerate((190, 190, 80, 150, 110, 90, 90)):
            self.table.setColumnWidth(col, width)
        self.grid = QListView()
        self.grid.setModel(self.model)
        self.grid.setSelectionModel(self.table.selectionModel())
        self.grid.setViewMode(QListView.ViewMode.IconMode)
        self.grid.setIconSize(QSize(128, 128))
        self.grid.setGridSize(QSize(150, 160))
        self.grid.setResizeMode(QListView.ResizeMode.Adjust)
        self.grid.setUniformItemSizes(True)
        self.grid.setMovement(QListView.Movement.Static)
        self.grid.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.grid.setWordWrap(True)
        self.table.activated.connect(self._open_review_at)
        self.grid.activated.connect(self._open_review_at)
        for view in (self.table, self.grid):
            view.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        self.overview = MapView()
        self.overview.footprintClicked.connect(self._on_overview_click)
        self.overview.footprintSelected.connect(self._on_overview_select)
        self.overview.set_legend([("accepted", "accepted"), ("neighbour", "auto-accepted or to review"),
                                  ("rejected", "rejected"), ("current", "selected (double-click: review)")])

        from astroapp.gui.review_view import ReviewView

        self.review = ReviewView(self)
        self.review.decisionMade.connect(self._on_decision)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.table, "Table")
        self.tabs.addTab(self.grid, "Grid")
        self.tabs.addTab(self.review, "Review")
        self.tabs.addTab(self.overview, "Map")
        self.log_view = QPlainTextEdit()  # job summaries and per-photo outcomes that stay
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(5000)
        self.tabs.addTab(self.log_view, "Log")
        self._last_tab = self.table
        self.tabs.currentChanged.connect(self._on_tab_changed)

        self.filters = FilterBar()
        self.filters.changed.connect(self.model.set_filter)
        central = QWidget()
        lay = QVBoxLayout(central)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.filters)
        lay.addWidget(self.tabs, 1)
        self.setCentralWidget(central)

        self._make_actions()
        self._make_status_bar()
        self._eta_timer = QTimer(self, interval=1000)
        self._eta_timer.timeout.connect(self._tick_eta)
        self.model.countsChanged.connect(self._show_counts)
        self.model.modelReset.connect(self._update_actions)
        self.model.modelReset.connect(self._refresh_overview_if_shown)  # filters apply to the map at once
        self.table.selectionModel().selectionChanged.connect(self._update_actions)
        self.table.selectionModel().selectionChanged.connect(self._highlight_selection_on_map)
        self.reload()

    # ---- UI construction -------------------------------------------------------------
    def _restore_geometry(self) -> None:
        """The last session's size and place, else 1400x860 shrunk to fit the screen's
        available area (a 1000-px screen keeps the status bar, progress and Cancel in view)."""
        saved = load_window_geometry()
        if saved is not None and self.restoreGeometry(saved):
            avail = self.screen().availableGeometry()
            if self.height() <= avail.height() and self.width() <= avail.width():
                return
        avail = self.screen().availableGeometry()
        self.resize(min(1400, avail.width() - 40), min(860, avail.height() - 60))

    def _action(self, text, slot, shortcut=None, icon=None, tip="") -> QAction:
        act = QAction(text, self)
        if icon is not None:
            act.setIcon(self.style().standardIcon(icon))
        if shortcut:
            act.setShortcut(QKeySequence(shortcut))
        if tip:
            act.setStatusTip(tip)
        name = text.replace("&", "").rstrip("…")
        act.setToolTip((tip or name) + (f"  ({QKeySequence(shortcut).toString()})" if shortcut else ""))
        act.triggered.connect(slot)
        return act

    def _make_actions(self) -> None:
        sp = QStyle.StandardPixmap
        self.act_import_folder = self._action(
            "Import &folder…", self.import_folder_dialog, "Ctrl+I", sp.SP_DirOpenIcon,
            "Import every photo in a folder (recursively)")
        self.act_import_files = self._action(
            "Import files or &zip…", self.import_files_dialog, "Ctrl+Shift+I", sp.SP_FileIcon,
            "Import photos or a zipped roll")
        self.act_demo = self._action("Load &demo roll", self.load_demo, None, sp.SP_DriveNetIcon,
                                     "Prepare the bundled demo world and import its roll")
        self.act_open_catalog = self._action("&Open catalogue…", self.open_catalog_dialog, "Ctrl+O")
        self.act_export = self._action("&Export…", self.export_dialog, "Ctrl+E", sp.SP_DialogSaveButton,
                                       "Export footprints (GeoJSON, GeoTIFF, HTML map, CSV)")
        self.act_settings = self._action("&Settings…", self.settings_dialog, "Ctrl+,")
        self.act_quit = self._action("&Quit", self.request_quit, "Ctrl+Q")
        self.act_localize_sel = self._action(
            "Localize &selected", self.localize_selected, "Ctrl+L", sp.SP_MediaPlay,
            "Retrieve and coregister the selected photos in the background")
        self.act_localize_all = self._action(
            "Localize &all new", self.localize_all, "Ctrl+Shift+L", sp.SP_MediaSeekForward,
            "Localize every new photo (failed ones are retried only when selected)")
        self.act_cancel = self._action("&Cancel", self.cancel_job, "Esc", sp.SP_MediaStop,
                                       "Stop the running job; finished photos are kept")
        self.act_review = self._action("&Review", self.open_review, "Ctrl+R", sp.SP_FileDialogContentsView,
                                       "Review the selected photo's localization")
        self.act_photo = self._action("&Full-size photo", self.open_photo_view, "F", sp.SP_FileDialogInfoView,
                                      "The photo at full resolution in its own window (wheel zoom, drag pan, Esc closes)")
        self.act_refresh = self._action("Re&fresh", self.reload, "F5", sp.SP_BrowserReload)
        self.act_help = self._action("&Keyboard shortcuts", self.show_help, "F1", sp.SP_DialogHelpButton,
                                     "Every shortcut of the catalogue, the review and manual georeferencing")
        self.act_help.setShortcuts([QKeySequence("F1"), QKeySequence("?")])
        self.act_accept_sel = self._action(
            "&Accept selected", self.accept_selected, "Ctrl+Shift+A", sp.SP_DialogApplyButton,
            "Accept every selected photo that has a footprint")
        self.act_reject_sel = self._action(
            "Re&ject selected", self.reject_selected, "Ctrl+Shift+R", sp.SP_DialogCancelButton,
            "Reject every selected photo")
        self.act_remove = self._action(
            "Re&move from catalogue…", self.remove_selected, "Del", sp.SP_TrashIcon,
            "Remove the selected photos and their localizations from the catalogue (files stay on disk)")
        self.act_remove.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)  # Del in the table/grid only
        self.act_accept_above = self._action(
            "Accept all &above a confidence…", self.accept_above, None, None,
            "Accept every automatic result (auto-accepted or to review) at or above a confidence")
        self.act_cancel.setEnabled(False)

        bar = self.menuBar()
        m = bar.addMenu("&File")
        for a in (self.act_import_folder, self.act_import_files, self.act_demo):
            m.addAction(a)
        m.addSeparator()
        m.addAction(self.act_open_catalog)
        m.addAction(self.act_remove)
        m.addAction(self.act_export)
        m.addAction(self.act_settings)
        m.addSeparator()
        m.addAction(self.act_quit)
        m = bar.addMenu("&Localize")
        for a in (self.act_localize_sel, self.act_localize_all, self.act_cancel):
            m.addAction(a)
        m = bar.addMenu("&Review")
        for a in (self.act_review, self.act_photo, self.act_accept_sel, self.act_reject_sel, self.act_accept_above):
            m.addAction(a)
        m = bar.addMenu("&View")
        m.addAction(self.act_refresh)
        from astroapp.gui import training_action

        training_action.install(self)  # Tools > Improve retrieval from accepted photos (issue 19)
        m = bar.addMenu("&Help")
        m.addAction(self.act_help)

        tb = QToolBar("Main")
        tb.setObjectName("main-toolbar")
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        for a in (self.act_import_folder, self.act_import_files, None, self.act_localize_sel,
                  self.act_localize_all, self.act_cancel, None, self.act_review, self.act_export):
            if a is None:
                tb.addSeparator()
            else:
                tb.addAction(a)
        self.addToolBar(tb)
        for view in (self.table, self.grid):  # right-click on photos
            for a in (self.act_review, self.act_photo, self.act_accept_sel, self.act_reject_sel, self.act_localize_sel,
                      self.act_export, self.act_remove):
                view.addAction(a)

    def _make_status_bar(self) -> None:
        sb = self.statusBar()
        self.counts_label = QLabel()
        self.counts_label.setTextFormat(Qt.TextFormat.RichText)
        self.counts_label.setToolTip(status_legend())  # the legend
        sb.addPermanentWidget(self.counts_label)  # stays visible beside temporary messages
        self.job_label = QLabel()
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(260)
        self.progress.setTextVisible(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel_job)
        for w in (self.job_label, self.progress, self.cancel_button):
            sb.addPermanentWidget(w)
            w.hide()

    # ---- catalogue -------------------------------------------------------------------
    def reload(self) -> None:
        self.model.reload()
        self.filters.set_missions(self.model.missions())

    def _show_counts(self, counts: dict) -> None:
        parts = []
        for status in STATUSES:
            if not counts.get(status) and status not in ("review", "accepted"):
                continue  # compact: the legend (tooltip) names every status
            color = STATUS_COLORS[status].name()
            parts.append(f"<span style='color:{color}'>●</span> {status_label(status)} "
                         f"{counts.get(status, 0)}")
        total = sum(counts.get(s, 0) for s in STATUSES)
        self.counts_label.setText(f"{total} photos &nbsp; " + " &nbsp; ".join(parts))
        self.counts = dict(counts)

    @property
    def service(self):
        """The localization service on the window's catalogue (review decisions, manual fits);
        background jobs make their own on their thread (gui.backend)."""
        return backend.catalog_service(self.catalog)

    def selected_ids(self) -> list[int]:
        rows = sorted({i.row() for i in self.table.selectionModel().selectedRows()})
        return [self.model.photo_at(r).id for r in rows]

    def select_photo(self, photo_id: int) -> None:
        row = self.model.row_of(photo_id)
        if row is not None:
            self.table.selectionModel().select(
                self.model.index(row, 0),
                QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows,
            )
            self.table.scrollTo(self.model.index(row, 0))

    def _update_actions(self, *_args) -> None:
        busy = self.job is not None
        has_sel = bool(self.table.selectionModel().selectedRows())
        for a in (self.act_import_folder, self.act_import_files, self.act_demo, self.act_open_catalog):
            a.setEnabled(not busy)
        self.act_localize_sel.setEnabled(not busy and has_sel)
        self.act_localize_all.setEnabled(not busy and self.model.rowCount() > 0)
        self.act_cancel.setEnabled(busy)
        self.act_review.setEnabled(has_sel or self.review.photo_id is not None)
        self.act_photo.setEnabled(has_sel or self.review.photo_id is not None)
        self.act_accept_sel.setEnabled(has_sel)
        self.act_remove.setEnabled(has_sel and not busy)
        self.act_reject_sel.setEnabled(has_sel)
        self.review._update_buttons()

    def open_catalog(self, path: Path) -> None:
        try:
            catalog = Catalog(path)
        except CatalogError as exc:
            QMessageBox.critical(self, "Cannot open catalogue", str(exc))
            return
        self.catalog.close()
        self.catalog = catalog
        self.catalog_path = Path(path)
        self.settings.catalog = str(path)
        save_settings(self.settings)
        self.setWindowTitle(f"astroapp — {self.catalog_path}")
        self.model.set_catalog(catalog)
        self.review.clear()
        self.reload()

    def open_catalog_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Open or create a catalogue", str(self.catalog_path), "Catalogue (*.sqlite *.db)",
            options=QFileDialog.Option.DontConfirmOverwrite)
        if path:
            self.open_catalog(Path(path))

    # ---- drag and drop ---------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if event.mimeData().hasUrls() and droppable_paths(event.mimeData().urls()) and self.job is None:
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event) -> None:  # noqa: N802
        paths = droppable_paths(event.mimeData().urls())
        if paths:
            event.acceptProposedAction()
            self.start_import(paths)

    # ---- jobs ------------------------------------------------------------------------
    def _start_job(self, kind: str, func, title: str, ids: list[int] | None = None) -> Job | None:
        if self.job is not None:
            QMessageBox.information(self, "Busy", f"{self.job.title} is still running.")
            return None
        job = Job(func, title)
        self.job, self.job_kind, self.job_ids = job, kind, list(ids or [])
        self.log(f"{title}: started")
        job.worker.yielded.connect(functools.partial(self._on_progress, job))
        job.worker.returned.connect(functools.partial(self._on_job_returned, job))
        job.worker.errored.connect(functools.partial(self._on_job_error, job))
        job.worker.finished.connect(functools.partial(self._on_job_finished, job))
        self.progress.setRange(0, 0)
        self.job_label.setText(f"{title}…")
        for w in (self.job_label, self.progress, self.cancel_button):
            w.show()
        self.cancel_button.setEnabled(True)
        self._update_actions()
        job.start()
        self._eta_timer.start()
        return job

    def _tick_eta(self) -> None:
        """Once a second while a job runs: the ETA moves between reports too."""
        job = self.job
        if job is None:
            self._eta_timer.stop()
        elif job.last.total:
            self.progress.setFormat(f"%v / %m  {format_eta(job.eta_seconds(job.last))}")

    def log(self, text: str) -> None:
        self.log_view.appendPlainText(f"{time.strftime('%H:%M:%S')}  {text}")

    def _on_progress(self, job: Job, p: Progress) -> None:
        if job is not self.job:
            return
        job.last = p
        if p.total:
            self.progress.setRange(0, p.total)
            self.progress.setValue(min(p.done, p.total))
            self.progress.setFormat(f"%v / %m  {format_eta(job.eta_seconds(p))}")
        msg = ": ".join(t for t in (p.item, p.message) if t)  # by photo name, as the core names it
        photo_id = p.photo_id
        self.job_label.setText(f"{job.title}: {msg}"[:90] if msg else job.title)
        if p.result is not None and p.stage == "localize":  # a photo finished: keep its line
            self.log("  " + msg)
        if self.job_kind == "import":
            now = time.monotonic()
            if now - self._last_reload > 1.0 or p.done == p.total:
                self._last_reload = now
                self.reload()
        elif photo_id is not None and p.stage in ROW_CHANGING_STAGES:  # (an export changes none)
            self.model.refresh_photos([photo_id])
            if self.review.photo_id == photo_id:
                self.review.refresh()

    def _on_job_returned(self, job: Job, summary) -> None:
        if self.job_kind == "import":
            self.last_import_summary = summary
        elif self.job_kind == "localize":
            self.last_localize_summary = summary
        self._job_summary = summary

    def _on_job_error(self, job: Job, exc: Exception) -> None:
        log.error("%s failed: %s", job.title, exc, exc_info=exc)
        self._job_summary = exc
        self.last_error = exc
        # not modal: the error of a background job must not block the window
        box = QMessageBox(QMessageBox.Icon.Critical, f"{job.title} failed", f"{type(exc).__name__}: {exc}",
                          QMessageBox.StandardButton.Ok, self)
        box.setModal(False)
        box.show()
        self.error_box = box

    def _on_job_finished(self, job: Job) -> None:
        if job is not self.job:
            return
        kind, ids = self.job_kind, self.job_ids
        summary = getattr(self, "_job_summary", None)
        self._job_summary = None
        if kind == "localize":
            released = backend.release_stuck(self.catalog, ids)
            if released:
                log.info("%d photos left in 'localizing' were released", released)
        self.job = None
        for w in (self.job_label, self.progress, self.cancel_button):
            w.hide()
        cancelled = job.cancel.is_set()
        elapsed = time.monotonic() - job.started_at
        self.statusBar().showMessage(
            f"{job.title} {'cancelled' if cancelled else 'finished'} after {elapsed:.1f} s"
            + (f": {describe_summary(kind, summary)}" if summary is not None else ""), 15000)
        self.reload()
        if self.review.photo_id is not None:
            if kind == "coregister" and self.review.photo_id in ids:
                self.review.candidate_index = None  # show the new localization
            self.review.refresh()
        if self.tabs.currentWidget() is self.overview:
            self.refresh_overview()
        self._update_actions()
        self.log(f"{job.title} {'cancelled' if cancelled else 'finished'} after {elapsed:.1f} s"
                 + (f": {describe_summary(kind, summary)}" if summary is not None else ""))
        if kind == "import" and summary is not None and not isinstance(summary, Exception):
            self._show_import_failures(summary)
            self._select_new(getattr(summary, "added_ids", []) or [])
        if kind == "export" and summary is not None and not isinstance(summary, Exception):
            self._show_export_result(summary)
        self.jobFinished.emit(kind, summary)

    def _select_new(self, ids: list[int]) -> None:
        """Newly imported photos selected and scrolled to (those the filter shows)."""
        rows = [r for r in (self.model.row_of(i) for i in ids) if r is not None]
        if not rows:
            return
        sel = self.table.selectionModel()
        sel.clearSelection()
        flags = QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
        for r in rows:
            sel.select(self.model.index(r, 0), flags)
        self.table.scrollTo(self.model.index(min(rows), 0))

    def cancel_job(self) -> None:
        if self.job is not None:
            self.job.request_cancel()
            self.cancel_button.setEnabled(False)
            self.job_label.setText(f"{self.job.title}: cancelling…")

    # ---- import ----------------------------------------------------------------------
    def import_folder_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Import a folder of photos", last_dir("import"))
        if path:
            remember_dir("import", Path(path) / "x")  # the folder itself, not its parent
            self.start_import([Path(path)])

    def import_files_dialog(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(
            self, "Import photos or a zipped roll", last_dir("import"),
            "Photos and rolls (*.jpg *.jpeg *.png *.tif *.tiff *.zip);;All files (*)")
        if paths:
            remember_dir("import", paths[0])
            self.start_import([Path(p) for p in paths])

    def start_import(self, paths: list[Path]) -> Job | None:
        cat = self.catalog_path
        return self._start_job(
            "import",
            functools.partial(backend.import_job, cat, [Path(p) for p in paths]),
            "Import " + ", ".join(Path(p).name for p in paths[:2]) + ("…" if len(paths) > 2 else ""),
        )

    def _show_import_failures(self, summary) -> None:
        failures = import_failures(summary)
        if failures:
            from astroapp.gui.dialogs import FailuresDialog

            dlg = FailuresDialog(failures, self)
            dlg.setModal(False)
            dlg.show()
            self.failures_dialog = dlg

    # ---- localization ----------------------------------------------------------------
    def localize_selected(self) -> Job | None:
        return self.start_localize(self.selected_ids())

    def localize_all(self) -> Job | None:
        from astroapp.catalog.leases import release_stale_localizing

        release_stale_localizing(self.catalog)  # left by a killed run: localized again now
        ids = [p.id for p in self.catalog.photos(status="new")]
        failed = self.catalog.counts_by_status().get("failed", 0)
        note = (f"; {failed} failed photo{'s' if failed != 1 else ''} not retried "
                "(select them and Localize selected to retry)") if failed else ""
        if not ids:
            self.statusBar().showMessage("Nothing new to localize" + note + ".", 8000)
            return None
        job = self.start_localize(ids)
        if job is not None and note:
            self.statusBar().showMessage(f"Localizing {len(ids)} new photos" + note, 8000)
        return job

    def start_localize(self, ids: list[int]) -> Job | None:
        if not ids:
            return None
        settings = AppSettings(**vars(self.settings))
        return self._start_job(
            "localize",
            functools.partial(backend.localize_job, self.catalog_path, ids, settings),
            f"Localize {len(ids)} photo{'s' if len(ids) != 1 else ''}",
            ids,
        )

    def start_coregister_candidate(self, photo_id: int, rank: int) -> Job | None:
        """Coregister a photo against the retrieval candidate the reviewer picked (background)."""
        make = functools.partial(backend.coregister_candidate_job, self.catalog_path, photo_id, rank,
                                 AppSettings(**vars(self.settings)), self.settings.reviewer_name())
        return self._start_job("coregister", make, f"Coregister with candidate #{rank}", [photo_id])

    # ---- review ----------------------------------------------------------------------
    def _open_review_at(self, index) -> None:
        self.open_review(self.model.photo_at(index.row()).id)

    def open_review(self, photo_id: int | None = None) -> None:
        # QAction.triggered passes `checked` (a bool, which isinstance(.., int) accepts)
        if isinstance(photo_id, bool) or not isinstance(photo_id, int):
            ids = self.selected_ids()
            photo_id = ids[0] if ids else (self.model.photo_at(0).id if self.model.rowCount() else None)
        if photo_id is None:
            self.review.clear()
            self.tabs.setCurrentWidget(self.review)
            return
        self.review.show_photo(photo_id)
        self.tabs.setCurrentWidget(self.review)
        self.review.setFocus()

    def accept_selected(self) -> list[int]:
        return self._review_many(self.selected_ids(), "accept")

    def reject_selected(self) -> list[int]:
        return self._review_many(self.selected_ids(), "reject")

    def accept_above(self, _checked: bool = False, *, threshold: float | None = None) -> list[int]:
        """Accept every automatic result (auto-accepted or to review) at or above a confidence;
        a person's earlier decisions are left alone. The action asks for the threshold."""
        if threshold is None:
            from PySide6.QtWidgets import QInputDialog

            value, ok = QInputDialog.getDouble(
                self, "Accept all above a confidence",
                "Accept every photo to review or auto-accepted whose confidence is at least:",
                0.5, 0.0, 1.0, 2)
            if not ok:
                return []
            threshold = value
        ids = [p.id for p in self.catalog.photos(status=("localized", "review"), min_conf=threshold)]
        return self._review_many(ids, "accept", note=f"batch: confidence >= {threshold:.2f}")

    def _review_many(self, ids: list[int], action: str, note: str | None = None) -> list[int]:
        who = self.settings.reviewer_name()
        changed = self.service.review_many(ids, action, who, note)
        self.model.refresh_photos(changed)
        self.review.undo_stack.extend(changed)
        skipped = len(ids) - len(changed)
        verb = "accepted" if action == "accept" else "rejected"
        text = f"{len(changed)} photo{'s' if len(changed) != 1 else ''} {verb} by {who}"
        if skipped:
            text += f"; {skipped} left as they were (no footprint, or already {verb})"
        self.statusBar().showMessage(text + "  (Ctrl+Z in the review undoes one at a time)", 10000)
        if self.review.photo_id in changed:
            self.review.refresh()
        return changed

    def remove_selected(self, _checked: bool = False, *, confirm: bool = True) -> int:
        """Remove the selected photos from the catalogue (asks first; files stay on disk)."""
        ids = self.selected_ids()
        if not ids or self.job is not None:
            return 0
        if confirm:
            answer = QMessageBox.question(
                self, "Remove photos",
                f"Remove {len(ids)} photo{'s' if len(ids) != 1 else ''} from the catalogue, with "
                "their localizations and review history? The files on disk are not touched.")
            if answer != QMessageBox.StandardButton.Yes:
                return 0
        if self.review.photo_id in ids:
            self.review.clear()
        self.review.undo_stack = [pid for pid in self.review.undo_stack if pid not in ids]
        removed = self.catalog.remove_photos(ids)
        self.reload()
        self.statusBar().showMessage(f"Removed {removed} photo{'s' if removed != 1 else ''} from the catalogue", 8000)
        return removed

    def request_quit(self) -> bool:
        """Ctrl+Q: while a job runs, ask before cancelling it and quitting."""
        if self.job is not None:
            answer = QMessageBox.question(
                self, "Quit while a job runs?",
                f"{self.job.title} is still running. Cancel it (finished photos are kept) and quit?")
            if answer != QMessageBox.StandardButton.Yes:
                return False
        return self.close()

    def review_sequence(self) -> list[int]:
        """The photos N/P step through: the catalogue as currently filtered."""
        return self.model.photo_ids()

    def _on_decision(self, photo_id: int) -> None:
        self.model.refresh_photos([photo_id])

    def _on_tab_changed(self, index: int) -> None:
        widget = self.tabs.widget(index)
        left_review = self._last_tab is self.review
        self._last_tab = widget
        if left_review and widget is not self.review and self.review.photo_id is not None:
            self.select_photo(self.review.photo_id)  # back from the review: the photo reviewed last
        if widget is self.overview:
            self.refresh_overview()

    def refresh_overview(self) -> None:
        """Every current footprint of the photos shown (filters apply), coloured by status."""
        shown = set(self.model.photo_ids())
        rows = self.catalog.current_footprints()
        self.overview.clear_footprints()
        drawn = 0
        rect = QRectF()
        for pid, fp, status in rows:
            if pid not in shown:
                continue
            style = status if status in ("accepted", "rejected") else "neighbour"
            photo = self.model.photo_at(self.model.row_of(pid))
            self.overview.add_footprint(("photo", pid), fp, style,
                                        tooltip=f"{photo_label(photo)} [{status}]")
            rect = rect.united(self.overview.footprint_rect(("photo", pid)))
            drawn += 1
        if not shown:
            self.overview.show_message("No photo matches the filter")
        elif not drawn:
            self.overview.show_message(f"None of the {len(shown)} photos shown has a footprint yet")
        else:
            self.overview.show_message("")
        self._highlight_selection_on_map()
        if rect.isEmpty():
            self.overview.show_world()
        else:
            self.overview.zoom_to(rect, margin=1.3)

    def _refresh_overview_if_shown(self) -> None:
        if self.tabs.currentWidget() is self.overview:
            self.refresh_overview()

    def _highlight_selection_on_map(self, *_args) -> None:
        self.overview.highlight(("photo", pid) for pid in self.selected_ids())

    def _on_overview_select(self, key) -> None:
        """A single click on the map selects that photo in the table (and highlights it)."""
        if isinstance(key, tuple) and key[0] == "photo":
            self.select_photo(key[1])

    def _on_overview_click(self, key) -> None:
        if isinstance(key, tuple) and key[0] == "photo":
            self.open_review(key[1])

    # ---- dialogs ---------------------------------------------------------------------
    def export_dialog(self) -> None:
        from astroapp.gui.dialogs import ExportDialog

        dlg = ExportDialog(self, selected_ids=self.selected_ids(),
                           start_dir=Path(last_dir("export") or self.catalog_path.parent))
        if dlg.exec():
            value = dlg.value()
            if str(value["out"]).strip():
                remember_dir("export", value["out"])
            self.start_export(**value)

    def start_export(self, fmt: str, out: Path, status=None, ids=None) -> Job | None:
        """Export in the background; the finished job reports what was written and skipped."""
        if not str(out).strip():
            QMessageBox.warning(self, "Export", "Choose where to save the export.")
            return None
        return self._start_job(
            "export",
            functools.partial(backend.export_job, self.catalog_path, fmt, Path(out), status, ids),
            f"Export {fmt}",
        )

    def _show_export_result(self, result) -> None:
        self.last_export = result
        written = result.written
        text = f"Export {result.format}: wrote {len(written)} file{'s' if len(written) != 1 else ''}"
        if written:
            text += f" ({written[0]}" + (" …)" if len(written) > 1 else ")")
        if result.skipped:
            text += f"; skipped {len(result.skipped)} photos without a footprint"
        if result.failed:
            text += f"; {len(result.failed)} failed"
            from astroapp.gui.dialogs import FailuresDialog

            dlg = FailuresDialog(list(result.failed), self)
            dlg.setWindowTitle(f"{len(result.failed)} photos not exported")
            dlg.show()
            self.failures_dialog = dlg
        if result.cancelled:
            text += " (cancelled)"
        self.statusBar().showMessage(text, 15000)

    def open_photo_view(self, photo_id: int | None = None):
        """The review's photo (on the Review tab) or the selected one at full resolution."""
        if isinstance(photo_id, bool) or not isinstance(photo_id, int):  # QAction's `checked`
            on_review = self.tabs.currentWidget() is self.review and self.review.photo_id is not None
            ids = [self.review.photo_id] if on_review else self.selected_ids()
            photo_id = ids[0] if ids else self.review.photo_id
        photo = self.catalog.get_photo(photo_id) if photo_id is not None else None
        if photo is None:
            self.statusBar().showMessage("No photo selected", 4000)
            return None
        from astroapp.gui.photo_view import PhotoWindow

        win = PhotoWindow(photo.path, photo_label(photo), self)
        win.show()
        self.photo_window = win
        return win

    def show_help(self) -> None:
        """The keyboard cheat sheet (F1 or ?), non-modal so it can stay open beside the work."""
        from astroapp.gui.dialogs import ShortcutsDialog

        actions = [a for a in self.findChildren(QAction) if not a.shortcut().isEmpty()]
        dlg = ShortcutsDialog(actions, self)
        dlg.show()
        self.help_dialog = dlg

    def settings_dialog(self) -> None:
        from astroapp.gui.dialogs import SettingsDialog

        dlg = SettingsDialog(self.settings, self)
        if dlg.exec():
            new = dlg.value()
            catalog_changed = new.catalog_path() != self.catalog_path
            self.settings = new
            save_settings(new)
            if catalog_changed:
                self.open_catalog(new.catalog_path())

    def load_demo(self, root: Path | None = None, n_photos: int | None = None) -> Job | None:
        """Prepare the bundled demo world (cached after the first time) and import its roll."""
        from astroapp.gui import demo

        make = functools.partial(demo.prepare_and_import, self.catalog_path, root=root, n_photos=n_photos)
        return self._start_job("import", make, "Import demo roll")

    def offer_demo(self, root: Path | None = None, n_photos: int | None = None) -> Job | None:
        """First start: an empty catalogue gets the demo roll, so the whole flow is visible.

        Only once per installation (a user who empties the catalogue is not asked again);
        File > Load demo roll does it on demand.
        """
        if self.catalog.count() == 0 and not self.settings.demo_offered:
            self.settings.demo_offered = True
            save_settings(self.settings)
            self.statusBar().showMessage("Empty catalogue: loading the bundled demo roll…", 8000)
            return self.load_demo(root=root, n_photos=n_photos)
        return None

    def closeEvent(self, event) -> None:  # noqa: N802
        save_window_geometry(bytes(self.saveGeometry()))
        if self.job is not None:
            self.job.request_cancel()
            deadline = time.monotonic() + 5.0
            from PySide6.QtWidgets import QApplication

            while self.job is not None and time.monotonic() < deadline:
                QApplication.processEvents()
                time.sleep(0.01)
        # nothing queued may query the catalogue once it is closed: a search typed just before,
        # thumbnails still to load, the ETA tick
        self.filters._debounce.stop()
        self.model.stop_loading()
        self._eta_timer.stop()
        try:
            self.filters.changed.disconnect(self.model.set_filter)
        except (RuntimeError, TypeError):  # closed before: already disconnected
            pass
        self.catalog.close()
        super().closeEvent(event)


ROW_CHANGING_STAGES = ("localize", "coregister")  # events whose photo's row is refreshed


def describe_summary(kind: str, summary) -> str:
    """One line for the status bar and the log: what a finished job did."""
    if isinstance(summary, Exception):
        return f"failed: {type(summary).__name__}: {summary}"
    if kind == "import" and hasattr(summary, "added"):
        return (f"{summary.added} added, {summary.duplicates} duplicates of catalogued photos, "
                f"{summary.already} already catalogued, {summary.failed} failed")
    if hasattr(summary, "describe"):
        return summary.describe()
    if kind == "export" and hasattr(summary, "written"):
        return f"{len(summary.written)} files written, {len(summary.skipped)} photos without a footprint skipped"
    return ""


def import_failures(summary) -> list[tuple[str, str]]:
    """(path, reason) of each file an import could not take, from the importer's summary."""
    failed = getattr(summary, "failures", None) or getattr(summary, "failed_files", None)
    if failed is None and isinstance(summary, dict):
        failed = summary.get("failures") or summary.get("failed")
    out = []
    for item in failed or []:
        if isinstance(item, tuple | list) and len(item) == 2:
            out.append((str(item[0]), str(item[1])))
        else:
            out.append((str(getattr(item, "path", item)), str(getattr(item, "reason", ""))))
    return out
