"""Dialogs: failed imports, settings, export."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from astroapp.gui.settings import AppSettings

log = logging.getLogger(__name__)


class FailuresDialog(QDialog):
    """The files an import could not take, each with its reason."""

    def __init__(self, failures: list[tuple[str, str]], parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"{len(failures)} file{'s' if len(failures) != 1 else ''} not imported")
        self.resize(820, 360)
        self.table = QTableWidget(len(failures), 2)
        self.table.setHorizontalHeaderLabels(["File", "Reason"])
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setColumnWidth(0, 360)
        for row, (path, reason) in enumerate(failures):
            self.table.setItem(row, 0, QTableWidgetItem(path))
            self.table.setItem(row, 1, QTableWidgetItem(reason))
        self.failures = failures
        copy = QPushButton("Copy list")
        copy.clicked.connect(self.copy)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        buttons.addButton(copy, QDialogButtonBox.ButtonRole.ActionRole)
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel("These files were recorded as failed; the rest of the roll was imported."))
        lay.addWidget(self.table)
        lay.addWidget(buttons)

    def copy(self) -> None:
        QApplication.clipboard().setText("\n".join(f"{p}\t{r}" for p, r in self.failures))


def _path_row(edit: QLineEdit, pick) -> QWidget:
    w = QWidget()
    lay = QHBoxLayout(w)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.addWidget(edit, 1)
    btn = QPushButton("Browse…")
    btn.clicked.connect(pick)
    lay.addWidget(btn)
    return w


def _choices(kind: str) -> list[str]:
    """Names the retrieval registry lists (`kind` "model"); empty when it is unavailable."""
    try:
        from astroapp import retrieval

        names = getattr(retrieval, "available_models", None) or getattr(retrieval, "MODEL_NAMES", None)
        if callable(names):
            names = names()
        return [str(n) for n in (names or [])]
    except Exception as exc:  # noqa: BLE001 - the dialog still works with free text
        log.debug("no %s list: %s", kind, exc)
        return []


def buildable_matchers() -> list[str]:
    """The matchers the registry says it can build here (learned ones need their package and
    weights); 'sift' always."""
    from astroapp.matching import available_matchers

    names = [str(n) for n in available_matchers()]
    return names if "sift" in names else ["sift", *names]


class SettingsDialog(QDialog):
    """Catalogue file, retrieval model and weights, index dir, matcher, re-ranking, device, reviewer."""

    def __init__(self, settings: AppSettings, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.resize(640, 300)
        self._settings = settings
        self.catalog = QLineEdit(str(settings.catalog_path()))
        self.weights = QLineEdit(settings.weights)
        self.weights.setPlaceholderText("bundled weights of the model")
        self.index_dir = QLineEdit(settings.index_dir)
        self.index_dir.setPlaceholderText("the demo world's index")
        self.model = QComboBox(editable=True)
        self.model.addItem("")
        self.model.addItems(_choices("model"))
        self.model.setCurrentText(settings.model)
        self.model.lineEdit().setPlaceholderText("default (bundled)")
        self.matcher = QComboBox()  # only matchers get_matcher can build here: no free text
        self.matcher.addItems(buildable_matchers())
        self.matcher.setCurrentText(settings.matcher or "sift")
        if self.matcher.currentText() != (settings.matcher or "sift"):
            self.matcher.setToolTip(f"matcher {settings.matcher!r} is not available here "
                                    "(weights or package missing): choose another")
        self.device = QComboBox()
        self.device.addItem("automatic (CUDA when present)", "")
        self.device.addItem("CPU", "cpu")
        self.device.addItem("CUDA", "cuda")
        self.device.setCurrentIndex(max(self.device.findData(settings.device), 0))
        self.verify = QSpinBox()
        self.verify.setRange(0, 1000)
        self.verify.setValue(settings.verify_shortlist)
        self.verify.setSpecialValueText("off (coregister in retrieval order)")
        self.verify.setSuffix(" retrieved tiles")
        self.verify.setToolTip("Before coregistration, match the photo with SIFT against this many "
                               "retrieved tiles and try the verified ones first")
        self.reviewer = QLineEdit(settings.reviewer)
        self.reviewer.setPlaceholderText(settings.reviewer_name() if not settings.reviewer else "")

        form = QFormLayout()
        form.addRow("Catalogue file", _path_row(self.catalog, self._pick_catalog))
        form.addRow("Retrieval model", self.model)
        form.addRow("Model weights", _path_row(self.weights, self._pick_weights))
        form.addRow("Tile index folder", _path_row(self.index_dir, self._pick_index))
        form.addRow("Matcher", self.matcher)
        form.addRow("Verify before matching", self.verify)
        form.addRow("Device", self.device)
        form.addRow("Reviewer name", self.reviewer)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(buttons)

    def _pick_catalog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Catalogue file", self.catalog.text(),
                                              "Catalogue (*.sqlite *.db)",
                                              options=QFileDialog.Option.DontConfirmOverwrite)
        if path:
            self.catalog.setText(path)

    def _pick_weights(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Model weights", self.weights.text(),
                                              "Weights (*.safetensors *.pt *.pth);;All files (*)")
        if path:
            self.weights.setText(path)

    def _pick_index(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Tile index folder", self.index_dir.text())
        if path:
            self.index_dir.setText(path)

    def value(self) -> AppSettings:
        return replace(
            self._settings,
            catalog=self.catalog.text().strip(),
            model=self.model.currentText().strip(),
            weights=self.weights.text().strip(),
            index_dir=self.index_dir.text().strip(),
            matcher=self.matcher.currentText().strip() or "sift",
            device=self.device.currentData() or "",
            reviewer=self.reviewer.text().strip(),
            verify_shortlist=self.verify.value(),
        )


EXPORT_SCOPES = (  # label -> statuses (None: every photo with a footprint)
    ("Accepted by a person only (not auto-accepted)", ("accepted",)),
    ("Accepted by a person or auto-accepted (confident); not 'to review'", ("accepted", "localized")),
    ("Accepted, auto-accepted and 'to review' (not rejected)", ("accepted", "localized", "review")),
    ("Every photo with a footprint (rejected included)", None),
)


class ExportDialog(QDialog):
    """Pick a format, which photos, and where; the main window runs the export in the background."""

    def __init__(self, parent=None, selected_ids: list[int] | None = None, start_dir: Path | None = None) -> None:
        super().__init__(parent)
        from astroapp.gui.backend import available_export_formats, export_label

        self.setWindowTitle("Export footprints")
        self.resize(620, 220)
        self._label = export_label
        self._start_dir = Path(start_dir or Path.home())
        self.selected_ids = list(selected_ids or [])
        self.format = QComboBox()
        for key in available_export_formats():
            self.format.addItem(export_label(key)[0], key)
        self.scope = QComboBox()
        for label, statuses in EXPORT_SCOPES:
            self.scope.addItem(label, statuses)
        if self.selected_ids:
            self.scope.addItem(f"The {len(self.selected_ids)} selected photos", "selected")
        self.out = QLineEdit()
        self.format.currentIndexChanged.connect(self._suggest_path)
        self._suggest_path()
        form = QFormLayout()
        form.addRow("Format", self.format)
        form.addRow("Photos", self.scope)
        form.addRow("Save to", _path_row(self.out, self._pick))
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Export")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        note = QLabel("Photos without a footprint are skipped and listed afterwards.")
        note.setTextFormat(Qt.TextFormat.PlainText)
        lay.addWidget(note)
        lay.addWidget(self.buttons)

    def fmt(self) -> str:
        return self.format.currentData() or "geojson"

    def _suggest_path(self, *_args) -> None:
        label, is_dir, suffix = self._label(self.fmt())
        current = self.out.text().strip()
        base = Path(current).parent if current else self._start_dir
        name = "geotiff" if is_dir else f"footprints{suffix}"
        self.out.setText(str(base / name))

    def _pick(self) -> None:
        label, is_dir, suffix = self._label(self.fmt())
        if is_dir:
            path = QFileDialog.getExistingDirectory(self, "Folder for the GeoTIFFs", self.out.text())
        else:
            path, _ = QFileDialog.getSaveFileName(self, "Export to", self.out.text(), f"{label} (*{suffix})")
        if path:
            self.out.setText(path)

    def value(self) -> dict:
        scope = self.scope.currentData()
        return {
            "fmt": self.fmt(),
            "out": Path(self.out.text().strip()).expanduser(),
            "status": None if scope in (None, "selected") else list(scope),
            "ids": self.selected_ids if scope == "selected" else None,
        }


# Keys of the review and of manual georeferencing (QShortcuts, not menu actions).
REVIEW_KEYS = (
    ("A", "Accept the photo's localization"), ("R", "Reject it"), ("N / Right", "Next photo"),
    ("P / Left", "Previous photo"), ("Ctrl+Z", "Undo the last decision"),
    ("C", "Correspondences on/off"), ("W", "Warp the satellite view into the photo's frame"),
    ("+ / -", "Zoom in / out"), ("0", "Fit the view"), ("T", "Coregister with the picked candidate"),
    ("G", "Georeference manually (tie points)"),
    ("F / double-click the photo", "The photo at full resolution in its own window"),
)
PHOTO_KEYS = (
    ("Wheel / drag", "Zoom / pan"), ("0", "Fit the photo in the window"),
    ("1", "100 % (one photo pixel per screen pixel)"), ("+ / -", "Zoom in / out"), ("Esc", "Close"),
)
MANUAL_KEYS = (
    ("Click", "Place a tie point (photo, then satellite view, or the other way round)"),
    ("Drag a marker", "Move that tie point"), ("Del / Backspace", "Delete the selected pair"),
    ("Wheel / drag", "Zoom / pan"),
)


class ShortcutsDialog(QDialog):
    """The keyboard cheat sheet: the window's actions, the review keys, manual georeferencing."""

    def __init__(self, actions, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        rows = [("Catalogue and menus", [(" / ".join(k.toString() for k in a.shortcuts()),
                                          a.text().replace("&", "").rstrip("…")) for a in actions])]
        rows += [("Review tab", list(REVIEW_KEYS)), ("Full-size photo", list(PHOTO_KEYS)),
                 ("Manual georeferencing", list(MANUAL_KEYS))]
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["Key", "Does"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        for section, keys in rows:
            r = self.table.rowCount()
            self.table.insertRow(r)
            head = QTableWidgetItem(section)
            f = head.font()
            f.setBold(True)
            head.setFont(f)
            self.table.setItem(r, 0, head)
            self.table.setSpan(r, 0, 1, 2)
            for key, what in keys:
                r = self.table.rowCount()
                self.table.insertRow(r)
                self.table.setItem(r, 0, QTableWidgetItem(key))
                self.table.setItem(r, 1, QTableWidgetItem(what))
        self.table.resizeColumnsToContents()
        self.table.horizontalHeader().setStretchLastSection(True)
        lay = QVBoxLayout(self)
        lay.addWidget(self.table)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)
        lay.addWidget(close)
        self.resize(560, 620)

    def keys(self) -> list[str]:
        return [self.table.item(r, 0).text() for r in range(self.table.rowCount())
                if self.table.item(r, 1) is not None]
