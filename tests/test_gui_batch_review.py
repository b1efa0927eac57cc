"""Batch review in the real window (offscreen, real SQLite): sort by any column from the
header, accept/reject the selection from the table, accept everything above a confidence,
"k of n" in the review and a notice at the end of the queue; removing photos."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPoint, Qt, QTimer
from PySide6.QtWidgets import QApplication, QInputDialog

from astroapp.catalog import Catalog
from astroapp.gui.main_window import MainWindow
from astroapp.gui.settings import AppSettings

FP = [[10.0, 21.0], [12.0, 21.0], [12.0, 19.0], [10.0, 19.0]]
# name, status, confidence, has footprint
ROWS = [("a.jpg", "review", 0.30, True), ("b.jpg", "localized", 0.95, True),
        ("c.jpg", "review", 0.70, True), ("d.jpg", "review", 0.80, False),
        ("e.jpg", "rejected", 0.90, True)]


@pytest.fixture
def window(qtbot, tmp_path):
    rng = np.random.default_rng(0)
    ids = {}
    with Catalog(tmp_path / "c.sqlite") as cat:
        for i, (name, status, conf, has_fp) in enumerate(ROWS):
            jpg = tmp_path / name
            Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(jpg)
            pid = cat.add_photo(path=jpg, sha256=f"{i:064d}", width=60, height=40)
            cat.add_localization(pid, confidence=conf, inliers=50, footprint=FP if has_fp else None,
                                 method={"stage": "coregistration"})
            cat.set_status(pid, status)
            ids[name] = pid
    win = MainWindow(tmp_path / "c.sqlite", settings=AppSettings(reviewer="rev"))
    qtbot.addWidget(win)
    win.show()
    return win, ids


def answer_threshold(value):
    """Type `value` into the next input dialog and press OK, as the user would."""
    def fill():
        dlg = QApplication.activeModalWidget()
        if isinstance(dlg, QInputDialog):
            dlg.setDoubleValue(value)
            dlg.accept()
        else:
            QTimer.singleShot(20, fill)
    QTimer.singleShot(30, fill)


def names(win):
    return [win.model.photo_at(r).name for r in range(win.model.rowCount())]


def click_header(qtbot, win, column):
    header = win.table.horizontalHeader()
    x = header.sectionViewportPosition(column) + header.sectionSize(column) // 2
    qtbot.mouseClick(header.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(x, header.height() // 2))


def test_sort_by_any_column_from_the_header(qtbot, window):
    win, ids = window
    assert names(win) == ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"]  # import order first
    click_header(qtbot, win, 5)  # confidence, ascending
    assert names(win) == ["a.jpg", "c.jpg", "d.jpg", "e.jpg", "b.jpg"]
    click_header(qtbot, win, 5)  # descending
    assert names(win) == ["b.jpg", "e.jpg", "d.jpg", "c.jpg", "a.jpg"]
    assert win.review_sequence() == [ids[n] for n in names(win)]  # N/P follow the sort
    click_header(qtbot, win, 4)  # status
    assert [win.model.photo_at(r).status for r in range(5)][0] == "localized"
    win.reload()  # the order survives a reload
    assert [win.model.photo_at(r).status for r in range(5)][0] == "localized"


def test_accept_and_reject_the_selection_from_the_table(qtbot, window):
    win, ids = window
    win.select_photo(ids["a.jpg"])
    win.table.selectionModel().select(win.model.index(win.model.row_of(ids["d.jpg"]), 0),
                                      win.table.selectionModel().SelectionFlag.Select
                                      | win.table.selectionModel().SelectionFlag.Rows)
    assert win.act_accept_sel in win.table.actions()  # in the table's context menu
    win.table.setFocus()
    qtbot.keyClick(win.table, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    cat = win.catalog
    assert cat.get_photo(ids["a.jpg"]).status == "accepted"
    assert cat.get_photo(ids["d.jpg"]).status == "review"  # no footprint: nothing to accept
    assert "1 photo accepted by rev" in win.statusBar().currentMessage()
    assert win.model.data(win.model.index(win.model.row_of(ids["a.jpg"]), 4)).startswith("accepted")
    win.select_photo(ids["d.jpg"])
    win.act_reject_sel.trigger()
    assert cat.get_photo(ids["d.jpg"]).status == "rejected"
    assert cat.review_events(ids["d.jpg"])[-1].who == "rev"


def test_accept_all_above_a_confidence(qtbot, window):
    win, ids = window
    answer_threshold(0.75)
    win.act_accept_above.trigger()  # the menu action asks for the threshold
    changed = [pid for pid in ids.values() if win.catalog.review_events(pid)]
    cat = win.catalog
    # b (auto-accepted 0.95) accepted by a person; d has no footprint; e was rejected by a person
    assert changed == [ids["b.jpg"]]
    assert cat.get_photo(ids["e.jpg"]).status == "rejected" and cat.get_photo(ids["c.jpg"]).status == "review"
    assert "confidence >= 0.75" in cat.review_events(ids["b.jpg"])[-1].note


def test_k_of_n_and_the_end_of_the_queue(qtbot, window):
    win, ids = window
    win.open_review(ids["a.jpg"])
    rv = win.review
    assert rv.position.text() == "1 of 5"
    rv.setFocus()
    qtbot.keyClick(rv, Qt.Key.Key_N)
    assert rv.position.text() == "2 of 5"
    win.open_review(ids["e.jpg"])
    assert rv.position.text() == "5 of 5"
    rv.setFocus()
    qtbot.keyClick(rv, Qt.Key.Key_N)
    assert rv.photo_id == ids["e.jpg"] and "End of the queue (5 photos)" in rv.last_notice
    assert "4 still awaiting a decision" in win.statusBar().currentMessage()
    win.open_review(ids["c.jpg"])
    qtbot.keyClick(rv, Qt.Key.Key_A)  # accepting advances to the next photo
    assert rv.photo_id == ids["d.jpg"] and rv.position.text() == "4 of 5"
