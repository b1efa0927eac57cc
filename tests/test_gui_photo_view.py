"""The full-size photo view in the real window (offscreen, real SQLite, a real JPEG): F on the
selected photo or the menu action from the review opens the photo at full resolution in its
own window, decoded off the UI thread; wheel zoom, drag pan, 0 fits, 1 shows 100 %, Esc closes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication

from astroapp.catalog import Catalog
from astroapp.gui.main_window import MainWindow
from astroapp.gui.photo_view import PhotoWindow
from astroapp.gui.settings import AppSettings

SIZE = (3000, 2000)  # larger than the review's 1600-px display size


@pytest.fixture
def window(qtbot, tmp_path):
    rng = np.random.default_rng(0)
    ids = {}
    with Catalog(tmp_path / "c.sqlite") as cat:
        for i, name in enumerate(("coast.jpg", "missing.jpg")):
            path = tmp_path / name
            if name == "coast.jpg":
                Image.fromarray(rng.integers(0, 255, (SIZE[1], SIZE[0], 3), dtype=np.uint8)).save(path, quality=80)
            ids[name] = cat.add_photo(path=path, sha256=f"{i:064d}", width=SIZE[0], height=SIZE[1])
    win = MainWindow(tmp_path / "c.sqlite", settings=AppSettings())
    qtbot.addWidget(win)
    win.resize(1100, 750)
    win.show()
    return win, ids


def _wheel(view, steps: int) -> None:
    pos = QPointF(view.viewport().rect().center())
    event = QWheelEvent(pos, view.viewport().mapToGlobal(pos), QPoint(0, 0), QPoint(0, 120 * steps),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(view.viewport(), event)


def test_f_opens_the_selected_photo_at_full_resolution(qtbot, window):
    win, ids = window
    win.select_photo(ids["coast.jpg"])
    win.table.setFocus()
    qtbot.keyClick(win.table, Qt.Key.Key_F)
    dlg = win.photo_window
    assert isinstance(dlg, PhotoWindow) and dlg.isVisible() and "full size" in dlg.windowTitle()
    qtbot.waitUntil(lambda: dlg.ready, timeout=10_000)
    assert dlg.error is None and dlg.image_size == SIZE  # full resolution, not the review's 1600 px
    assert f"{SIZE[0]} x {SIZE[1]} px" in dlg.status.text()
    qtbot.addWidget(dlg)
    qtbot.waitExposed(dlg)
    fitted = dlg.scale()
    shown = dlg.view.mapToScene(dlg.view.viewport().rect()).boundingRect()
    assert fitted < 1.0 and shown.contains(dlg.view.scene().sceneRect().adjusted(1, 1, -1, -1))  # fitted

    _wheel(dlg.view, 3)  # wheel zoom
    assert dlg.scale() == pytest.approx(fitted * 1.2**3, rel=1e-6)
    qtbot.keyClick(dlg.view, Qt.Key.Key_1)  # 100 %
    assert dlg.scale() == pytest.approx(1.0)
    before = dlg.view.mapToScene(dlg.view.viewport().rect().center())
    vp = dlg.view.viewport()
    start = vp.rect().center()
    qtbot.mousePress(vp, Qt.MouseButton.LeftButton, pos=start)  # drag pan
    for dx in range(0, 201, 40):
        qtbot.mouseMove(vp, start + QPoint(dx, dx // 2))
    qtbot.mouseRelease(vp, Qt.MouseButton.LeftButton, pos=start + QPoint(200, 100))
    after = dlg.view.mapToScene(dlg.view.viewport().rect().center())
    assert before.x() - after.x() == pytest.approx(200, abs=2) and before.y() - after.y() == pytest.approx(100, abs=2)
    qtbot.keyClick(dlg.view, Qt.Key.Key_0)  # fit again
    assert dlg.scale() == pytest.approx(fitted)
    qtbot.keyClick(dlg.view, Qt.Key.Key_Escape)  # Esc closes the photo, not the job
    assert not dlg.isVisible() and win.isVisible()
    assert not dlg.view.scene().items()  # the closed window let its full-size pixmap go


def test_menu_action_from_the_review_opens_the_reviewed_photo(qtbot, window):
    win, ids = window
    assert "(F)" in win.act_photo.toolTip()
    win.open_review(ids["coast.jpg"])
    win.select_photo(ids["missing.jpg"])  # on the Review tab the reviewed photo is the one shown
    win.tabs.setCurrentWidget(win.review)
    win.act_photo.trigger()
    dlg = win.photo_window
    qtbot.addWidget(dlg)
    qtbot.waitUntil(lambda: dlg.ready, timeout=10_000)
    assert dlg.path.name == "coast.jpg" and dlg.image_size == SIZE
    dlg.close()


def test_a_missing_file_says_so_in_the_window(qtbot, window):
    win, ids = window
    dlg = win.open_photo_view(ids["missing.jpg"])
    qtbot.addWidget(dlg)
    qtbot.waitUntil(lambda: dlg.ready, timeout=10_000)
    assert dlg.image_size is None and "missing.jpg" in dlg.status.text() and "Cannot show" in dlg.status.text()
    dlg.close()


def test_the_cheat_sheet_lists_the_full_size_view(qtbot, window):
    win, _ = window
    win.show_help()
    keys = win.help_dialog.keys()
    assert "F" in keys and "F / double-click the photo" in keys and "1" in keys
    win.help_dialog.close()


def test_double_click_on_the_reviewed_photo_opens_it(qtbot, window):
    win, ids = window
    win.open_review(ids["coast.jpg"])
    pair = win.review.pair
    qtbot.waitExposed(pair)
    qtbot.waitUntil(lambda: not win.review.render_pending, timeout=20_000)  # read in a thread
    qtbot.mouseDClick(pair.viewport(), Qt.MouseButton.LeftButton, pos=pair.mapFromScene(QPointF(50, 50)))
    dlg = win.photo_window
    qtbot.addWidget(dlg)
    qtbot.waitUntil(lambda: dlg.ready, timeout=10_000)
    assert dlg.path.name == "coast.jpg" and dlg.image_size == SIZE
    dlg.close()
