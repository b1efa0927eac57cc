"""Catalogue housekeeping in the real window (offscreen, real SQLite): remove photos with Del
(asked first, files kept), 'Localize all new' leaves failed photos alone and says so, Ctrl+Q
during a running job asks before cancelling it."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from astroapp.catalog import Catalog
from astroapp.gui.main_window import MainWindow
from astroapp.gui.settings import AppSettings
from astroapp.gui.workers import Progress


@pytest.fixture
def window(qtbot, tmp_path):
    rng = np.random.default_rng(0)
    ids = {}
    with Catalog(tmp_path / "c.sqlite") as cat:
        for i, (name, status) in enumerate((("ok.jpg", "localized"), ("notes.txt", "failed"),
                                            ("other.jpg", "review"))):
            path = tmp_path / name
            Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(path, "JPEG")
            ids[name] = cat.add_photo(path=path, sha256=f"{i:064d}")
            loc = cat.add_localization(ids[name], confidence=0.5)
            cat.add_candidates(loc, [{"rank": 1, "tile_id": "t"}])
            cat.set_status(ids[name], status, "not an image" if status == "failed" else None)
            cat.record_review(ids[name], "someone", "note", "seen")
    win = MainWindow(tmp_path / "c.sqlite", settings=AppSettings())
    qtbot.addWidget(win)
    win.show()
    return win, ids, tmp_path


def answer(button):
    """Click `button` in the next modal message box (the question the user would answer)."""
    def click():
        box = QApplication.activeModalWidget()
        if isinstance(box, QMessageBox):
            box.button(button).click()
        else:
            QTimer.singleShot(20, click)
    QTimer.singleShot(30, click)


def test_remove_photos_with_del_asks_first_and_keeps_files(qtbot, window):
    win, ids, tmp = window
    win.select_photo(ids["notes.txt"])
    win.table.setFocus()
    answer(QMessageBox.StandardButton.No)
    qtbot.keyClick(win.table, Qt.Key.Key_Delete)
    assert win.catalog.get_photo(ids["notes.txt"]) is not None  # said no: nothing removed
    answer(QMessageBox.StandardButton.Yes)
    win.act_remove.trigger()  # File > Remove (offscreen, focus does not return after a question)
    assert win.catalog.get_photo(ids["notes.txt"]) is None
    assert win.catalog.localizations(ids["notes.txt"]) == [] and win.catalog.review_events(ids["notes.txt"]) == []
    assert win.model.rowCount() == 2 and "2 photos" in win.counts_label.text()
    assert (tmp / "notes.txt").exists()  # the file stays
    assert "Removed 1 photo" in win.statusBar().currentMessage()


def test_localize_all_new_does_not_retry_failed_photos(qtbot, window):
    win, ids, _ = window
    assert win.localize_all() is None  # nothing new: the failed photo is not taken up silently
    assert win.catalog.get_photo(ids["notes.txt"]).status == "failed"
    assert "1 failed photo not retried" in win.statusBar().currentMessage()


def _endless(cancel):
    """A background job that runs until cancelled (stands in for a long batch)."""
    n = 0
    while not cancel.is_set():
        n += 1
        yield Progress("import", n, None, message=f"step {n}")
        time.sleep(0.02)
    return n


def test_ctrl_q_during_a_job_asks_first(qtbot, window):
    win, _, _ = window
    job = win._start_job("import", _endless, "Long batch")
    assert job is not None
    win.table.setFocus()
    answer(QMessageBox.StandardButton.No)
    qtbot.keyClick(win.table, Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)
    assert win.isVisible() and win.job is job and not job.cancel.is_set()
    answer(QMessageBox.StandardButton.Yes)
    win.act_quit.trigger()  # File > Quit
    assert job.cancel.is_set() and not win.isVisible()
