"""kill -9 during `astroapp localize` (issue 15, item 8): the photo it was working on is left
`localizing`; the next localization (CLI or GUI) sees its worker is gone and takes it up
again, while a photo leased by a live worker is left alone."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
import torch
from test_index_cli import _weights, tiles_folder  # noqa: F401 - the fixture is used below

from astroapp.catalog import Catalog
from astroapp.catalog.leases import INTERRUPTED, localizing_reason, release_stale_localizing
from astroapp.cli import main

REPO = Path(__file__).resolve().parents[1]


def status_of(db: Path, photo_id: int) -> str | None:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            row = con.execute("SELECT status FROM photos WHERE id = ?", (photo_id,)).fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return None
    return row[0] if row else None


@pytest.fixture
def setup(tmp_path, tiles_folder):  # noqa: F811
    folder, src = tiles_folder
    weights = _weights(tmp_path / "w.safetensors", 0)
    torch.set_num_threads(1)
    assert main(["index", "build", str(folder), "--model", "astroapp-small", "--weights",
                 weights, "--out", str(tmp_path / "idx"), "-q", "--device", "cpu"]) == 0
    db = tmp_path / "cat.sqlite"
    ids = []
    with Catalog(db) as cat:
        for i, ref in enumerate(list(src.tiles())[:2]):
            path = tmp_path / f"photo{i}.jpg"
            img = cv2.resize(src.image(ref.tile_id), (512, 512), interpolation=cv2.INTER_CUBIC)
            cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            ids.append(cat.add_photo(path=path, sha256=f"{i:064d}"))
    cmd = [sys.executable, "-m", "astroapp", "--catalog", str(db), "localize", "--index",
           str(tmp_path / "idx"), "--model", "astroapp-small", "--weights", weights, "-q"]
    return db, ids, cmd


def test_sigkill_mid_localize_then_the_next_run_takes_the_photo_up(setup):
    db, ids, cmd = setup
    with Catalog(db) as cat:
        cat.set_status(ids[1], "localized")  # one photo to localize: keeps the test short
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    try:
        while status_of(db, ids[0]) != "localizing":
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "localize never started"
            time.sleep(0.005)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    with Catalog(db) as cat:
        stuck = [p.id for p in cat.photos(status=["localizing"])]
        assert stuck  # the kill left it there
        assert f"pid {proc.pid} " in cat.get_photo(stuck[0]).status_reason
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    assert "left in 'localizing' by an interrupted run went back to new" in run.stderr
    with Catalog(db) as cat:
        assert cat.photos(status=["localizing"]) == []
        assert cat.photos(status=["new"]) == []  # the released photo was localized this time
        for pid in stuck:
            assert cat.latest_localization(pid) is not None


def test_only_rows_without_a_live_worker_are_released(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        with Catalog(tmp_path / "c.sqlite") as cat:
            rows = {}
            for name, reason in [
                ("mine", localizing_reason()),  # this process: alive
                ("live", f"localizing: pid {sleeper.pid} (start ?) on {socket.gethostname()}"),
                ("dead", f"localizing: pid {dead.pid} (start 1) on {socket.gethostname()}"),
                ("reused", localizing_reason().replace("(start ", "(start 9")),  # pid reused
                ("other-host", f"localizing: pid {dead.pid} (start 1) on another-host-x"),
                ("no-lease", None),
            ]:
                pid = cat.add_photo(path=f"/p/{name}.jpg", sha256=name.ljust(64, "0"))
                cat.set_status(pid, "localizing", reason)
                rows[name] = pid
            released = release_stale_localizing(cat)
            assert sorted(released) == sorted(rows[n] for n in ("dead", "reused", "no-lease"))
            for name, pid in rows.items():
                photo = cat.get_photo(pid)
                if pid in released:
                    assert (photo.status, photo.status_reason) == ("new", INTERRUPTED)
                else:
                    assert photo.status == "localizing", name
            assert release_stale_localizing(cat) == []
    finally:
        sleeper.kill()
        sleeper.wait()


def test_gui_localize_all_takes_up_a_photo_a_dead_worker_left(qtbot, setup):
    from astroapp.gui.main_window import MainWindow
    from astroapp.gui.settings import AppSettings

    db, ids, cmd = setup
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with Catalog(db) as cat:
        cat.set_status(ids[0], "localizing",
                       f"localizing: pid {dead.pid} (start 1) on {socket.gethostname()}")
        cat.set_status(ids[1], "localized")
    weights = cmd[cmd.index("--weights") + 1]
    index = cmd[cmd.index("--index") + 1]
    win = MainWindow(db, settings=AppSettings(model="astroapp-small", weights=weights,
                                              index_dir=index, device="cpu"))
    qtbot.addWidget(win)
    win.show()
    assert win.localize_all() is not None
    assert win.job_ids == [ids[0]]
    qtbot.waitUntil(lambda: win.job is None, timeout=300_000)
    with Catalog(db) as cat:
        photo = cat.get_photo(ids[0])
        assert photo.status != "localizing" and cat.latest_localization(ids[0]) is not None
