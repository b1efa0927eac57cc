"""Issue 17's bugs, driven as a user does: the Review action, Ctrl+R and the toolbar button
(not only double-click), a photo awaiting review with and without a footprint, the side
panel at 1024x700, and a window that fits the screen and remembers its size. Offscreen Qt,
real SQLite catalogue, real JPEGs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QToolButton

from astroapp.catalog import Catalog
from astroapp.gui.main_window import MainWindow
from astroapp.gui.settings import AppSettings

FOOTPRINT = [[10.0, 21.0], [12.0, 21.0], [12.0, 19.0], [10.0, 19.0]]


def _catalogue(tmp_path):
    """Three photos: one to review with a footprint, one to review without, one new."""
    path = tmp_path / "catalog.sqlite"
    rng = np.random.default_rng(0)
    ids = []
    with Catalog(path) as cat:
        for i, name in enumerate(("with_fp.jpg", "no_fp.jpg", "fresh.jpg")):
            jpg = tmp_path / name
            Image.fromarray(rng.integers(0, 255, (60, 90, 3), dtype=np.uint8)).save(jpg)
            ids.append(cat.add_photo(path=jpg, sha256=f"{i:064d}", width=90, height=60))
        method = {"stage": "coregistration", "matcher": "sift", "size": 768, "iterations": 3,
                  "model": "earthloc", "k": 10, "rerank": {"inliers": [101, 12]}}
        loc = cat.add_localization(ids[0], footprint=FOOTPRINT, confidence=0.2, inliers=230,
                                   method=method, tile_id="bm_z6_r10_c20", rank=1, source_id="none",
                                   center_lon=11.0, center_lat=20.0, area_km2=715320.0)
        cat.add_candidates(loc, [{"rank": 1, "tile_id": "bm_z6_r10_c20", "footprint": FOOTPRINT},
                                 {"rank": 2, "tile_id": "bm_z6_r11_c20", "footprint": FOOTPRINT}])
        cat.set_status(ids[0], "review", "no confident candidate")
        cat.add_localization(ids[1], confidence=0.0, inliers=3, method={"stage": "coregistration"})
        cat.set_status(ids[1], "review", "no candidate could be coregistered")
    return path, ids


@pytest.fixture
def setup(open_window, tmp_path):
    path, ids = _catalogue(tmp_path)
    return open_window(path), ids


def test_review_action_shortcut_and_toolbar_open_the_selected_photo(qtbot, setup):
    win, ids = setup
    win.select_photo(ids[1])
    win.act_review.trigger()  # triggered(checked=False) must not be taken for a photo id
    assert win.tabs.currentWidget() is win.review and win.review.photo_id == ids[1]
    win.tabs.setCurrentWidget(win.table)
    win.select_photo(ids[0])
    win.table.setFocus()
    qtbot.keyClick(win.table, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
    assert win.tabs.currentWidget() is win.review and win.review.photo_id == ids[0]
    win.tabs.setCurrentWidget(win.table)
    win.select_photo(ids[2])
    toolbar_button = next(b for b in win.findChildren(QToolButton) if b.defaultAction() is win.act_review)
    qtbot.mouseClick(toolbar_button, Qt.MouseButton.LeftButton)
    assert win.review.photo_id == ids[2] and "No photo selected" not in win.review.title.text()


def test_photo_to_review_reads_right(qtbot, setup):
    win, ids = setup
    rv = win.review
    win.open_review(ids[1])  # awaiting review, no footprint: nothing to accept
    assert "[to review]" in rv.title.text() and "[localized" not in rv.title.text()
    assert not rv.btn_accept.isEnabled() and rv.btn_reject.isEnabled()
    # captions in labels above the view, side by side (never drawn over each other)
    assert rv.caption_left.text().startswith("photo 90x60") and rv.caption_right.text() == "no localization yet"
    assert rv.caption_left.geometry().right() < rv.caption_right.geometry().left()
    win.open_review(ids[0])
    assert rv.btn_accept.isEnabled()
    method = rv.info_labels["Method"].text()
    assert "{" not in method and "=" not in method and "sift matcher" in method
    assert rv.info_labels["Inliers"].text() == "230"
    assert rv.info.labelForField(rv.info_labels["Inliers"]).text() == "Coregistration inliers:"
    rows = [rv.candidates.item(i).text() for i in range(rv.candidates.count())]
    assert "coregistration: 230 inliers" in rows[0] and "re-ranking: 101 inliers" in rows[1]
    assert rv.info_labels["Area"].text() == "715,320 km²"


def test_side_panel_at_1024x700_keeps_rows_and_the_mini_map(qtbot, setup):
    win, ids = setup
    win.resize(1024, 700)
    win.open_review(ids[0])
    qtbot.wait(50)
    rv = win.review
    for key in ("Area", "Tile", "Method"):  # each row at least as tall as its text needs
        lab = rv.info_labels[key]
        assert lab.height() >= lab.heightForWidth(lab.width()) - 1, key
    assert rv.candidates.height() >= 100
    rv.side_splitter.setSizes([0, 2000])  # dragged all the way: the map stays
    qtbot.wait(20)
    assert rv.map.height() >= rv.map.minimumHeight() > 0 and rv.map.isVisible()


def test_window_fits_the_screen_and_remembers_its_size(qtbot, tmp_path):
    path, _ = _catalogue(tmp_path)
    win = MainWindow(path, settings=AppSettings())
    qtbot.addWidget(win)
    avail = win.screen().availableGeometry()
    assert win.frameGeometry().height() <= avail.height() and win.width() <= avail.width()
    win.show()
    win.resize(avail.width() - 100, avail.height() - 150)
    qtbot.wait(20)
    size = (win.width(), win.height())
    win.close()
    again = MainWindow(path, settings=AppSettings())
    qtbot.addWidget(again)
    # restoreGeometry keeps the window on the (800 px wide offscreen) screen
    assert (again.width(), again.height()) == (min(size[0], avail.width() - 2), size[1])
