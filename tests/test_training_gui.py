"""Tools > Improve retrieval from accepted photos: a real window, a real catalogue, a worker job."""

from __future__ import annotations

import json
import shutil

import pytest
import training_fixtures as tf
from PySide6.QtCore import Qt

from astroapp.training.astroloc import TrainSettings
from astroapp.training.run import PairOptions


@pytest.fixture(scope="module")
def world(request):
    return tf.world(request)


@pytest.fixture
def win(qtbot, tmp_path, world):
    from astroapp.gui.main_window import MainWindow
    from astroapp.gui.settings import AppSettings

    shutil.copy(world["catalog"], tmp_path / "catalog.sqlite")
    w = MainWindow(tmp_path / "catalog.sqlite", settings=AppSettings(device="cpu"))
    qtbot.addWidget(w)
    w.show()
    return w


def _options(world, tmp_path, steps: int) -> dict:
    return {"source": world["tiles"], "out_dir": tmp_path / "run", "promote_if_better": False,
            "pair_options": PairOptions(cell_deg=15),
            "settings": TrainSettings(steps=steps, batch_size=8, clusters=4, lr=1e-3, eval_every=steps,
                                      checkpoint_every=2, model_config=dict(tf.TINY), threads=1)}


def _menu_action(win, menu_title: str, text: str):
    for menu_action in win.menuBar().actions():
        if menu_action.text().replace("&", "") == menu_title:
            for act in menu_action.menu().actions():
                if act.text().replace("&", "").startswith(text):
                    return act
    raise AssertionError(f"no {menu_title} > {text} menu entry")


def test_improve_retrieval_runs_in_a_worker_from_the_tools_menu(win, qtbot, world, tmp_path):
    win.training_options = _options(world, tmp_path, 3)
    _menu_action(win, "Tools", "Improve retrieval from accepted photos").trigger()
    assert win.job is not None and win.job_kind == "train"
    seen = []
    win.job.worker.yielded.connect(lambda p: seen.append(p))
    qtbot.waitUntil(lambda: win.job is None, timeout=240_000)
    assert [p.done for p in seen if p.stage == "train"][-1] == 3
    message = win.statusBar().currentMessage()
    assert "finished" in message and "validation R@1" in message, message
    assert (tmp_path / "run" / "astroloc-tiny.md").is_file()


def test_cancel_stops_training_with_a_checkpoint(win, qtbot, world, tmp_path):
    win.training_options = _options(world, tmp_path, 200)
    _menu_action(win, "Tools", "Improve retrieval from accepted photos").trigger()
    job = win.job
    qtbot.waitUntil(lambda: job.last.stage == "train" and job.last.done >= 2, timeout=240_000)
    qtbot.mouseClick(win.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: win.job is None, timeout=120_000)
    assert "cancelled" in win.statusBar().currentMessage()
    step = json.loads((tmp_path / "run" / "checkpoint.json").read_text())["step"]
    assert 2 <= step < 200
    assert not (tmp_path / "run" / "astroloc-tiny.safetensors").exists()
