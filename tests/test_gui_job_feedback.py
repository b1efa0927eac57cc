"""Job feedback in the real window (offscreen, real SQLite, real JPEGs): a log tab that keeps
each job's summary and per-photo outcomes named by photo (not database id), duplicate counts
of an import, new imports selected, an ETA that moves between reports."""

from __future__ import annotations

import io
import shutil
import time

import numpy as np
from PIL import Image

from astroapp.gui.workers import callback_job
from astroapp.pipeline.localize import LocalizeOutcome, _finished
from astroapp.progress import Progress


def _jpeg(path, seed):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(buf, "JPEG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())


def test_import_log_duplicates_and_selection(qtbot, window, tmp_path):
    win = window
    roll = tmp_path / "roll"
    _jpeg(roll / "ISS064-E-1.jpg", 1)
    with qtbot.waitSignal(win.jobFinished, timeout=30_000):
        win.start_import([roll])
    _jpeg(roll / "ISS064-E-2.jpg", 2)
    _jpeg(roll / "ISS064-E-3.jpg", 3)
    shutil.copy(roll / "ISS064-E-1.jpg", roll / "copy_of_1.jpg")  # same content, other name
    with qtbot.waitSignal(win.jobFinished, timeout=30_000) as done:
        win.start_import([roll])
    report = done.args[1]
    assert (report.added, report.duplicates, report.already) == (2, 1, 1)
    log = win.log_view.toPlainText()
    assert "2 added, 1 duplicates of catalogued photos, 1 already catalogued, 0 failed" in log
    assert "2 added, 1 duplicates" in win.statusBar().currentMessage()
    assert sorted(win.selected_ids()) == sorted(report.added_ids)  # the new photos, selected


def test_localize_progress_names_photos_and_stays_in_the_log(qtbot, window, tmp_path):
    win = window
    _jpeg(tmp_path / "r" / "ISS064-E-77.jpg", 7)
    with qtbot.waitSignal(win.jobFinished, timeout=30_000):
        win.start_import([tmp_path / "r"])
    photo = win.model.photo_at(0)
    pid = photo.id

    def core(progress, cancel):  # the pipeline's own per-photo event
        out = LocalizeOutcome(photo_id=pid, outcome="review", reason="no confident candidate")
        progress(_finished(1, 1, photo.label, out))
        return None

    with qtbot.waitSignal(win.jobFinished, timeout=10_000):
        win._start_job("localize", callback_job(core), "Localize 1 photo", [pid])
    log = win.log_view.toPlainText()
    assert "ISS064-E-77: to review: no confident candidate" in log and f"photo {pid}:" not in log


def test_eta_moves_between_reports(qtbot, window):
    win = window

    def core(progress, cancel):
        progress(Progress("localize", 1, 10, item="first"))
        while not cancel.is_set():
            time.sleep(0.02)

    win._start_job("localize", callback_job(core), "Slow job", [])
    qtbot.waitUntil(lambda: win.progress.maximum() == 10, timeout=5000)
    first = win.progress.format()
    qtbot.wait(2300)
    assert win.progress.format() != first and "ETA" in win.progress.format()
    win.cancel_job()
    qtbot.waitUntil(lambda: win.job is None, timeout=5000)
    assert "Slow job cancelled" in win.log_view.toPlainText()
