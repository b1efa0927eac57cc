"""Manual georeferencing in the real window, offscreen: a photo rendered over the bundled world
(true footprint known) awaiting review; the analyst opens the dialog with G, clicks tie points
on the photo and on the satellite view (read in a worker from the real tile source), sees the
live fit and residuals, deletes a wrong pair with Del, accepts; the exported GeoJSON footprint
matches the truth."""

from __future__ import annotations

import json

import numpy as np
import pytest
from manual_fixtures import H, W, rendered_photo
from PIL import Image
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication
from shapely.geometry import shape

from astroapp.catalog import Catalog
from astroapp.gui.main_window import MainWindow
from astroapp.gui.settings import AppSettings


@pytest.fixture(scope="module")
def rendered():
    return rendered_photo()


def _window(qtbot, tmp_path, rendered, proposal=None):
    jpg = tmp_path / "ISS064-E-1.jpg"
    Image.fromarray(rendered.image).save(jpg, quality=95)
    (w, s, e, n) = rendered.footprint.polygon().bounds
    wrong = [[w - 1, n + 1], [e + 1, n + 1], [e + 1, s - 1], [w - 1, s - 1]]  # a retrieved tile around it
    with Catalog(tmp_path / "c.sqlite") as cat:
        pid = cat.add_photo(path=jpg, sha256="1" * 64, width=W, height=H, nasa_id="ISS064-E-1")
        loc = cat.add_localization(pid, confidence=0.0, inliers=4, method={"stage": "coregistration"},
                                   footprint=proposal, source_id="bluemarble" if proposal else None)
        cat.add_candidates(loc, [{"rank": 1, "tile_id": "bm_tile", "source_id": "bluemarble",
                                  "footprint": wrong}])
        cat.set_status(pid, "review", "no confident candidate")
    win = MainWindow(tmp_path / "c.sqlite", settings=AppSettings(reviewer="ana"))
    qtbot.addWidget(win)
    win.show()
    return win, pid


@pytest.fixture
def window(qtbot, tmp_path, rendered):
    return _window(qtbot, tmp_path, rendered)


def drag(qtbot, view, start, end):
    """Press on a scene point, move with the button held, release on another (a marker drag)."""
    vp = view.viewport()
    a, b = view.mapFromScene(QPointF(*start)), view.mapFromScene(QPointF(*end))
    qtbot.mousePress(vp, Qt.MouseButton.LeftButton, pos=a)
    for t in np.linspace(0, 1, 6)[1:]:
        p = QPointF(a.x() + (b.x() - a.x()) * t, a.y() + (b.y() - a.y()) * t)
        QApplication.sendEvent(vp, QMouseEvent(QEvent.Type.MouseMove, p, vp.mapToGlobal(p), Qt.MouseButton.NoButton,
                                               Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier))
    qtbot.mouseRelease(vp, Qt.MouseButton.LeftButton, pos=b)


def click(qtbot, view, scene_pt):
    pos = view.mapFromScene(QPointF(*scene_pt))
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(pos.x(), pos.y()))


def test_tie_points_to_exported_footprint(qtbot, window, rendered, tmp_path):
    win, pid = window
    win.select_photo(pid)
    win.act_review.trigger()
    rv = win.review
    assert rv.photo_id == pid and not rv.btn_accept.isEnabled()  # nothing to accept yet
    rv.candidates.setCurrentRow(1)  # the retrieved tile: the satellite view covers it
    rv.setFocus()
    qtbot.keyClick(rv, Qt.Key.Key_G)
    dlg = rv.manual_dialog
    qtbot.addWidget(dlg)
    qtbot.waitUntil(lambda: dlg.view_ready, timeout=20_000)  # read in a worker thread
    assert "bluemarble" in dlg.map_status.text()
    qtbot.wait(50)
    xs = np.array([0.08, 0.9, 0.5, 0.12, 0.88, 0.45]) * W
    ys = np.array([0.1, 0.12, 0.5, 0.9, 0.85, 0.2]) * H
    lon, lat, hit = rendered.camera.pixel_to_lonlat(xs, ys, W, H)
    assert hit.all()
    for k, (x, y, lo, la) in enumerate(zip(xs, ys, lon, lat, strict=True)):
        click(qtbot, dlg.photo_view, (x * dlg.scale, y * dlg.scale))
        gx, gy = dlg.grid.lonlat_to_pixel(lo, la)
        click(qtbot, dlg.map_view, (float(gx), float(gy)))
        assert len(dlg.complete_pairs()) == k + 1
        assert dlg.btn_accept.isEnabled() == (k + 1 >= 4)
    assert dlg.fit is not None and dlg.fit.rms_px < 3.0
    assert dlg.table.rowCount() == 6 and dlg.table.item(0, 5).text() != "—"
    assert "RMS" in dlg.rms_label.text()
    # a seventh pair put at the wrong place on the map is flagged, then deleted with Del
    click(qtbot, dlg.photo_view, (0.3 * W * dlg.scale, 0.6 * H * dlg.scale))
    gx, gy = dlg.grid.lonlat_to_pixel((lon[1] + lon[2]) / 2, (lat[1] + lat[2]) / 2)
    click(qtbot, dlg.map_view, (float(gx), float(gy)))
    assert len(dlg.complete_pairs()) == 7 and dlg.fit.rms_px > 5.0 and dlg.table.item(6, 0).toolTip()
    dlg.table.selectRow(6)
    qtbot.keyClick(dlg.table, Qt.Key.Key_Delete)
    assert len(dlg.pairs) == 6 and dlg.fit.rms_px < 3.0
    qtbot.mouseClick(dlg.btn_accept, Qt.MouseButton.LeftButton)
    assert not dlg.isVisible()
    assert win.catalog.get_photo(pid).status == "accepted"
    loc = win.catalog.latest_localization(pid)
    assert loc.method["stage"] == "manual" and loc.method["by"] == "ana"
    assert "manual georeferencing by ana from 6 tie points" in rv.info_labels["Method"].text()

    out = tmp_path / "manual.geojson"
    with qtbot.waitSignal(win.jobFinished, timeout=30_000) as done:
        win.start_export("geojson", out, status=["accepted"])
    assert done.args[1].exported == 1
    feat = json.loads(out.read_text())["features"][0]
    truth = rendered.footprint.polygon()
    side = truth.length / 4
    # clicks land on whole screen pixels and the frame is ~380 km on a curved Earth: 2 % of a side
    assert shape(feat["geometry"]).hausdorff_distance(truth) < 0.02 * side


def test_nudge_a_proposed_footprint(qtbot, tmp_path, rendered):
    truth = rendered.footprint
    proposal = [[lon + 0.5, lat - 0.3] for lon, lat in truth.to_list()]  # off by ~50 km
    win, pid = _window(qtbot, tmp_path, rendered, proposal=proposal)
    win.select_photo(pid)
    win.act_review.trigger()
    rv = win.review
    with qtbot.waitActive(win):  # offscreen, showing the satellite view leaves no window active
        win.activateWindow()
    rv.setFocus()
    qtbot.keyClick(rv, Qt.Key.Key_G)
    dlg = rv.manual_dialog
    qtbot.addWidget(dlg)
    qtbot.waitUntil(lambda: dlg.view_ready, timeout=20_000)
    qtbot.wait(50)
    qtbot.mouseClick(dlg.btn_seed, Qt.MouseButton.LeftButton)
    assert len(dlg.complete_pairs()) == 4 and dlg.fit is not None
    before = dlg.fit.footprint().polygon().hausdorff_distance(truth.polygon())
    for i, (photo_xy, _) in enumerate(list(dlg.pairs)):  # drag each map marker to the true place
        lon, lat, _hit = rendered.camera.pixel_to_lonlat(np.array([photo_xy[0]]), np.array([photo_xy[1]]), W, H)
        gx, gy = dlg.grid.lonlat_to_pixel(lon[0], lat[0])
        marker = dlg.markers[i][1]
        drag(qtbot, dlg.map_view, (marker.pos().x(), marker.pos().y()), (float(gx), float(gy)))
    after = dlg.fit.footprint().polygon().hausdorff_distance(truth.polygon())
    assert after < before / 4
    qtbot.mouseClick(dlg.btn_accept, Qt.MouseButton.LeftButton)
    stored = win.catalog.latest_localization(pid)
    assert stored.method["stage"] == "manual" and win.catalog.get_photo(pid).status == "accepted"
    assert shape({"type": "Polygon", "coordinates": [stored.footprint + stored.footprint[:1]]}
                 ).hausdorff_distance(truth.polygon()) < 0.02 * truth.polygon().length / 4
