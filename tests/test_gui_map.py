"""The overview map in the real window (offscreen, real SQLite): a single click selects and
highlights a photo, the table's selection is highlighted on the map, a legend, a coordinate
readout under the cursor, and a message when the filter matches nothing."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QImage

from astroapp.catalog import Catalog
from astroapp.gui.main_window import MainWindow
from astroapp.gui.settings import AppSettings


def _box(lon, lat, d=3.0):
    return [[lon - d, lat + d], [lon + d, lat + d], [lon + d, lat - d], [lon - d, lat - d]]


@pytest.fixture
def window(qtbot, tmp_path):
    ids = {}
    with Catalog(tmp_path / "c.sqlite") as cat:
        for i, (name, lon, lat, status) in enumerate((("nile.jpg", 31.0, 26.0, "accepted"),
                                                      ("andes.jpg", -70.0, -20.0, "review"),
                                                      ("new.jpg", None, None, "new"))):
            ids[name] = cat.add_photo(path=tmp_path / name, sha256=f"{i:064d}")
            if lon is not None:
                cat.add_localization(ids[name], footprint=_box(lon, lat), confidence=0.5)
            cat.set_status(ids[name], status)
    win = MainWindow(tmp_path / "c.sqlite", settings=AppSettings())
    qtbot.addWidget(win)
    win.resize(1000, 700)
    win.show()
    win.tabs.setCurrentWidget(win.overview)
    qtbot.wait(50)
    return win, ids


def view_pos(view, lon, lat):
    p = view.mapFromScene(QPointF(lon, -lat))
    return QPoint(p.x(), p.y())


def test_click_selects_and_selection_highlights(qtbot, window):
    win, ids = window
    m = win.overview
    assert m.legend.isVisible() and "accepted" in m.legend.text() and "to review" in m.legend.text()
    qtbot.mouseClick(m.viewport(), Qt.MouseButton.LeftButton, pos=view_pos(m, -70.0, -20.0))
    assert win.selected_ids() == [ids["andes.jpg"]]
    assert m.highlighted() == {("photo", ids["andes.jpg"])}
    assert win.tabs.currentWidget() is m  # a single click does not leave the map
    win.select_photo(ids["nile.jpg"])  # selected in the table: highlighted on the map
    assert m.highlighted() == {("photo", ids["nile.jpg"])}
    qtbot.mouseDClick(m.viewport(), Qt.MouseButton.LeftButton, pos=view_pos(m, 31.0, 26.0))
    assert win.tabs.currentWidget() is win.review and win.review.photo_id == ids["nile.jpg"]


def test_coordinate_readout(qtbot, window):
    win, _ = window
    m = win.overview
    qtbot.mouseMove(m.viewport(), view_pos(m, 31.0, 26.0))
    qtbot.wait(20)
    text = m.readout.text()
    assert m.readout.isVisible() and "N" in text and "E" in text
    lat = float(text.split("°")[0])
    assert abs(lat - 26.0) < 0.5


def test_message_when_the_filter_matches_nothing(qtbot, window):
    win, _ = window
    m = win.overview
    assert not m.message.isVisible()
    win.filters.status.setCurrentIndex(win.filters.status.findData("new"))  # the map follows the filter
    assert m.message.isVisible() and "has a footprint yet" in m.message.text()
    win.filters.search.setText("no such photo")
    qtbot.waitUntil(lambda: m.message.text() == "No photo matches the filter", timeout=3000)


def test_no_empty_strip_beyond_the_world_edge(qtbot):
    from PySide6.QtCore import QRectF

    from astroapp.gui.map_view import MapView

    m = MapView()
    qtbot.addWidget(m)
    m.resize(900, 400)
    m.show()
    m.zoom_to(QRectF(165, -40, 12, 30), margin=1.3)  # footprints near the antimeridian, wide view
    shown = m.mapToScene(m.viewport().rect()).boundingRect()
    assert shown.right() <= 180.5 and shown.left() >= -180.5 and shown.contains(QRectF(165, -40, 12, 30))


def test_switching_tabs_keeps_the_selection(qtbot, window):
    win, ids = window
    win.open_review(ids["andes.jpg"])
    win.tabs.setCurrentWidget(win.table)  # back from the review: the reviewed photo is selected
    assert win.selected_ids() == [ids["andes.jpg"]]
    win.select_photo(ids["nile.jpg"])
    win.tabs.setCurrentWidget(win.grid)  # table -> grid -> map: the selection stays
    win.tabs.setCurrentWidget(win.overview)
    assert win.selected_ids() == [ids["nile.jpg"]] and win.overview.highlighted() == {("photo", ids["nile.jpg"])}


def _viewport_rgb(view) -> np.ndarray:
    img = view.viewport().grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    w, h = img.width(), img.height()
    rows = np.frombuffer(img.constBits(), np.uint8).reshape(h, img.bytesPerLine())
    return rows[:, : 3 * w].reshape(h, w, 3).astype(np.float64)


@pytest.mark.parametrize("size", [(1200, 700), (800, 450), (1400, 500), (600, 600)])
def test_world_map_has_no_seam_near_antarctica_and_no_strip_beside_it(qtbot, size):
    """The rendered world view (the bundled Blue Marble): the world fills the width, so no
    column at either edge is the empty background, and the Southern Ocean continues south of
    60 S (the image's no-bathymetry patch was a dark rectangle with a seam along 60 S: rows
    across it differed 2.4x more than the ocean's own texture, and it was half as bright)."""
    from astroapp.gui.map_view import MapView

    m = MapView()
    qtbot.addWidget(m)
    m.resize(*size)
    m.show()
    m.show_world()
    qtbot.wait(20)
    a = _viewport_rgb(m)
    background = np.array(m.backgroundBrush().color().getRgb()[:3], np.float64)
    empty = np.abs(a - background).max(axis=2) <= 2
    assert not empty[:, 0].all() and not empty[:, -1].all(), "an empty strip beside the world"
    assert not empty.all(axis=0).any()

    def row(lat: float) -> int:
        return int(m.mapFromScene(QPointF(0.0, -lat)).y())

    if row(-65) >= a.shape[0]:  # a wide window shows the tropics first: pan to the south
        m.centerOn(QPointF(0.0, 60.0))
        qtbot.wait(20)
        a = _viewport_rgb(m)
    x0, x1 = int(m.mapFromScene(QPointF(-120, 0)).x()), int(m.mapFromScene(QPointF(90, 0)).x())
    grey = a[:, x0:x1].mean(axis=2)
    step = np.abs(np.diff(grey, axis=0)).mean(axis=1)  # how much each row differs from the next
    texture = np.median(step[row(-52) : row(-58)])
    assert step[row(-58) : row(-61)].max() <= 1.5 * texture + 1.0
    north, south = grey[row(-58) : row(-59.5)].mean(), grey[row(-61) : row(-65)].mean()
    assert south >= 0.75 * north
