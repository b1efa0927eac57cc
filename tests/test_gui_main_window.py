"""The main window on a real catalogue: import in the background, failures, filters, grid,
drag and drop, settings. Offscreen Qt, real SQLite, real JPEGs."""

import io
import zipfile

import numpy as np
import piexif
import pytest
from PIL import Image
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from astroapp.catalog import Catalog
from astroapp.gui.dialogs import FailuresDialog, SettingsDialog
from astroapp.gui.settings import AppSettings, load_settings, save_settings


def _jpeg(path, seed, when=None, size=(48, 64)):
    rng = np.random.default_rng(seed)
    exif = {"Exif": {piexif.ExifIFD.DateTimeOriginal: when.encode()}} if when else {}
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(buf, "JPEG", exif=piexif.dump(exif))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())


@pytest.fixture
def roll(tmp_path):
    roll = tmp_path / "roll"
    _jpeg(roll / "ISS064-E-358.jpg", 1, "2020:11:23 10:11:12")
    _jpeg(roll / "a" / "iss064e000359.jpg", 2, "2020:11:23 10:11:13")
    _jpeg(roll / "a" / "b" / "ISS050-E-70536.JPG", 3, "2017:02:01 00:00:00")
    (roll / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    return roll


def wait_idle(qtbot, win, timeout=30_000):
    qtbot.waitUntil(lambda: win.job is None, timeout=timeout)


def test_import_runs_in_background_and_lists_failures(qtbot, window, roll):
    with qtbot.waitSignal(window.jobFinished, timeout=30_000) as done:
        assert window.start_import([roll]) is not None
        assert window.progress.isVisible() and window.act_localize_all.isEnabled() is False
    kind, report = done.args
    assert kind == "import" and report.added == 3 and report.failed == 1
    assert window.model.rowCount() == 4
    text = window.counts_label.text()
    assert "4 photos" in text and "new 3" in text and "failed 1" in text
    dlg = window.failures_dialog
    assert isinstance(dlg, FailuresDialog) and dlg.isVisible()
    assert dlg.table.rowCount() == 1 and dlg.table.item(0, 0).text().endswith("bad.jpg")
    assert dlg.table.item(0, 1).text()  # the reason
    assert not window.progress.isVisible()
    # a second import of the same roll adds nothing
    with qtbot.waitSignal(window.jobFinished, timeout=30_000) as again:
        window.start_import([roll])
    assert again.args[1].added == 0 and window.model.rowCount() == 4


def test_filters_search_and_status_counts(qtbot, window, roll):
    window.start_import([roll])
    wait_idle(qtbot, window)
    f = window.filters
    f.status.setCurrentIndex(f.status.findData("failed"))
    assert window.model.rowCount() == 1 and window.model.photo_at(0).name == "bad.jpg"
    f.status.setCurrentIndex(0)
    assert f.mission.findData("ISS064") > 0 and f.mission.findData("ISS050") > 0
    f.mission.setCurrentIndex(f.mission.findData("ISS050"))
    assert [p.nasa_id for p in map(window.model.photo_at, range(window.model.rowCount()))] == ["ISS050-E-70536"]
    f.mission.setCurrentIndex(0)
    f.search.setText("359")
    # the search is debounced (200 ms); the wait is generous because a long test process on a
    # loaded 2-core machine once missed 3 s here (one full CI-style run of two)
    qtbot.waitUntil(lambda: window.model.rowCount() == 1, timeout=10_000)
    assert window.model.photo_at(0).nasa_id == "ISS064-E-359"
    f.search.clear()
    qtbot.waitUntil(lambda: window.model.rowCount() == 4, timeout=10_000)
    f.date_from.setDate(f.date_from.date().fromString("2020-01-01", "yyyy-MM-dd"))
    f.date_to.setDate(f.date_to.date().fromString("2020-12-31", "yyyy-MM-dd"))
    f.date_on.setChecked(True)
    assert sorted(window.model.photo_at(r).nasa_id for r in range(window.model.rowCount())) == [
        "ISS064-E-358", "ISS064-E-359"]
    f.date_on.setChecked(False)
    f.conf_on.setChecked(True)  # nothing is localized: no photo has a confidence
    assert window.model.rowCount() == 0


def test_thumbnails_load_lazily_for_visible_rows(qtbot, window, tmp_path):
    roll = tmp_path / "r"
    for i in range(30):
        _jpeg(roll / f"ISS071-E-{i + 1}.jpg", 500 + i)
    window.resize(900, 330)  # a few table rows visible
    window.start_import([roll])
    wait_idle(qtbot, window)
    qtbot.wait(100)
    loaded = len(window.model.thumbs)
    assert 0 < loaded < 30
    window.tabs.setCurrentWidget(window.grid)
    window.grid.scrollToBottom()
    qtbot.waitUntil(lambda: window.model.thumbs.get(window.model.photo_at(29).id) is not None, timeout=5000)
    icon = window.model.data(window.model.index(29, 0), Qt.ItemDataRole.DecorationRole)
    thumb = window.catalog.thumbnail(window.model.photo_at(29).id)
    assert thumb and not icon.isNull()


def test_drop_of_a_zip_imports_it(qtbot, window, tmp_path):
    src = tmp_path / "zsrc"
    _jpeg(src / "ISS064-E-400.jpg", 7, "2020:11:24 01:02:03")
    _jpeg(src / "ISS064-E-401.jpg", 8, "2020:11:24 01:02:04")
    archive = tmp_path / "roll.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in src.iterdir():
            zf.write(p, p.name)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(archive)), QUrl("https://example.org/x.jpg")])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime,
                       Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(window.jobFinished, timeout=30_000) as done:
        window.dropEvent(event)
    assert done.args[1].added == 2
    assert sorted(p.nasa_id for p in window.catalog.photos()) == ["ISS064-E-400", "ISS064-E-401"]


def test_cancel_import_keeps_what_was_imported(qtbot, window, tmp_path):
    roll = tmp_path / "big"
    for i in range(150):
        _jpeg(roll / f"ISS070-E-{i + 1}.jpg", 100 + i, size=(200, 300))
    seen = []
    window.start_import([roll])
    window.job.worker.yielded.connect(seen.append)
    qtbot.waitUntil(lambda: len(seen) >= 3, timeout=20_000)
    with qtbot.waitSignal(window.jobFinished, timeout=10_000) as done:
        window.cancel_job()
    report = done.args[1]
    assert report.cancelled and 0 < report.added < 150
    with Catalog(window.catalog_path) as cat:
        assert cat.count() == report.added
        assert cat.imports()[-1].state == "cancelled"
    assert window.model.rowCount() == report.added


def test_settings_dialog_persists(qtbot, tmp_path):
    settings = AppSettings()
    dlg = SettingsDialog(settings)
    qtbot.addWidget(dlg)
    dlg.catalog.setText(str(tmp_path / "other.sqlite"))
    dlg.index_dir.setText(str(tmp_path / "index"))
    dlg.matcher.setCurrentText("sift")
    dlg.device.setCurrentIndex(dlg.device.findData("cpu"))
    dlg.reviewer.setText("analyst-7")
    assert dlg.verify.value() == 100  # geometric re-ranking of 100 tiles by default
    dlg.verify.setValue(30)
    value = dlg.value()
    save_settings(value)
    again = load_settings()
    assert again == value and again.verify_shortlist == 30
    from astroapp.gui.backend import localize_settings

    assert localize_settings(again).reranker().shortlist == 30
    assert localize_settings(AppSettings(verify_shortlist=0)).reranker() is None
    assert again.catalog_path() == tmp_path / "other.sqlite"
    assert again.reviewer_name() == "analyst-7" and again.device == "cpu"
    assert AppSettings().reviewer_name()  # the OS user by default


def test_astroapp_without_command_opens_the_app(monkeypatch, tmp_path):
    import astroapp.gui
    from astroapp.cli import main

    opened = []
    monkeypatch.setattr(astroapp.gui, "run_app", lambda catalog, demo=True: opened.append((catalog, demo)) or 0)
    assert main(["--catalog", str(tmp_path / "c.sqlite")]) == 0
    assert main(["gui", "--no-demo"]) == 0
    assert opened == [(tmp_path / "c.sqlite", True), (None, False)]


def test_export_dialog_offers_every_format(qtbot, window, tmp_path):
    from astroapp.gui.dialogs import ExportDialog

    dlg = ExportDialog(window, selected_ids=[1, 2], start_dir=tmp_path)
    qtbot.addWidget(dlg)
    assert [dlg.format.itemData(i) for i in range(dlg.format.count())] == ["geojson", "geotiff", "html", "csv"]
    dlg.format.setCurrentIndex(dlg.format.findData("html"))
    assert dlg.out.text().endswith("footprints.html")
    dlg.format.setCurrentIndex(dlg.format.findData("geotiff"))
    dlg.scope.setCurrentIndex(dlg.scope.count() - 1)
    value = dlg.value()
    assert value["fmt"] == "geotiff" and value["ids"] == [1, 2] and value["status"] is None
    assert value["out"] == tmp_path / "geotiff"


def test_app_starts_behind_a_splash_and_quits(tmp_path):
    """The real `astroapp.gui.app.run` in its own process: a QApplication whose event loop has
    run and quit stops delivering timers and queued signals, which would break every later
    Qt test of this process."""
    import os
    import subprocess
    import sys

    script = """
import gc, sys
from pathlib import Path
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
from astroapp.gui.app import application, run
from astroapp.gui.main_window import MainWindow
application()  # the timer below needs the app; run() takes this one
shown = []
def look_and_quit():  # repeats: a quit() before the event loop runs is ignored by Qt
    windows = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
    if windows:
        shown[:] = windows
        QApplication.instance().quit()
timer = QTimer()
timer.timeout.connect(look_and_quit)
timer.start(200)
rc = run(Path(sys.argv[1]), demo=False)
print("RESULT", rc, gc.get_freeze_count() > 0, shown[0].catalog_path if shown else None)
"""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "app.sqlite")], env=env,
                         capture_output=True, text=True, timeout=180)
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT")), "")
    # exits 0; the core's objects are out of the collector's way; the window shows the catalogue
    assert line == f"RESULT 0 True {tmp_path / 'app.sqlite'}", out.stdout + out.stderr
