"""AstroLoc training at tiny scale on CPU: learning, checkpoints, cancel, SIGKILL + resume, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import training_fixtures as tf
from safetensors import safe_open

from astroapp.catalog.db import Catalog
from astroapp.cli import main
from astroapp.geo.sources.opener import open_source
from astroapp.retrieval.registry import load_model
from astroapp.retrieval.vit import DinoV2ViT
from astroapp.training.astroloc import TrainingError, TrainSettings, train_astroloc
from astroapp.training.pairs import build_pairs

CELL = 15


@pytest.fixture(scope="module")
def world(request):
    return tf.world(request)


@pytest.fixture(scope="module")
def data(world):
    with Catalog(world["catalog"]) as cat:
        source = open_source(world["tiles"])
        return build_pairs(cat, source, min_iou=0.1, cell_deg=CELL, val_fraction=0.2), source


def tiny(**kw) -> TrainSettings:
    base = {"steps": 30, "batch_size": 8, "clusters": 4, "lr": 1e-3, "eval_every": 30, "checkpoint_every": 10,
            "model_config": dict(tf.TINY), "threads": 1}
    return TrainSettings(**{**base, **kw})


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """30 steps from random init, once for the module (with its progress events)."""
    pairs, source = data
    events = []
    out = tmp_path_factory.mktemp("trained") / "run"
    return train_astroloc(pairs, source, out, tiny(), progress=events.append), events, out


def test_a_few_steps_lower_the_loss_and_raise_validation_recall(trained):
    result, events, run = trained
    losses = [h["loss"] for h in result.history if "loss" in h]
    assert len(losses) == 30
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    start, end = result.history[0], result.history[-1]
    assert start["step"] == 0 and end["step"] == 30
    assert end["R@1"] + end["R@10"] > start["R@1"] + start["R@10"]
    assert result.val_recalls == {k: end[k] for k in ("R@1", "R@10")}
    trains = [e for e in events if e.stage == "train"]
    assert [e.done for e in trains] == list(range(1, 31)) and all(e.total == 30 for e in trains)
    assert "validation R@1" in trains[-1].message and trains[-1].item == "astroloc-tiny"
    # the weights load like any model's, with their tiny config, and embed
    model = load_model("astroloc-tiny", weights=result.weights, device="cpu")
    assert model.input_size == (56, 56) and len(model.backbone.blocks) == 2
    # checkpoints: safetensors + JSON only (nothing pickled), the newest named by checkpoint.json
    files = sorted(p.name for p in run.iterdir())
    assert all(f.endswith((".safetensors", ".json", ".md")) for f in files)
    pointer = json.loads((run / "checkpoint.json").read_text())
    assert pointer["step"] == 30
    with safe_open(str(run / pointer["weights"]), "pt") as f:
        keys = list(f.keys())
    assert any(k.startswith("optim.") for k in keys) and "rng.torch" in keys and "rng.gen.jitter" in keys


def test_cancel_keeps_a_checkpoint_and_the_same_folder_resumes(data, tmp_path):
    pairs, source = data
    cancel = threading.Event()
    settings = tiny(steps=8, eval_every=100, checkpoint_every=100)

    def stop_at_3(p):
        if p.stage == "train" and p.done == 3:
            cancel.set()

    first = train_astroloc(pairs, source, tmp_path / "run", settings, progress=stop_at_3, cancel=cancel)
    assert first.cancelled and first.step == 3 and first.weights is None
    assert json.loads((tmp_path / "run" / "checkpoint.json").read_text())["step"] == 3
    events = []
    second = train_astroloc(pairs, source, tmp_path / "run", settings, progress=events.append)
    assert not second.cancelled and second.step == 8
    assert "resumed at step 3" in events[0].message
    assert [h["step"] for h in second.history] == list(range(0, 9))
    # another run's settings never mix with this folder's checkpoint
    with pytest.raises(TrainingError, match="other data or settings"):
        train_astroloc(pairs, source, tmp_path / "run", tiny(steps=9, eval_every=100, checkpoint_every=100))


def _cli(world, out: Path, steps: int) -> list[str]:
    return [sys.executable, "-m", "astroapp", "model", "train", "astroloc", "--from-catalog",
            "--catalog", world["catalog"], "--source", world["tiles"], "--cell-deg", str(CELL),
            "--steps", str(steps), "--batch-size", "8", "--clusters", "4", "--lr", "1e-3", "--threads", "1",
            "--eval-every", "100", "--checkpoint-every", "2", "--model-config", json.dumps(tf.TINY),
            "--out", str(out), "--no-promote"]


@pytest.mark.slow
def test_sigkill_mid_training_resumes_to_the_same_step_and_weights(world, data, tmp_path):
    steps = 6
    env = {**os.environ, "ASTROAPP_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(_cli(world, tmp_path / "killed", steps), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    pointer = tmp_path / "killed" / "checkpoint.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if pointer.is_file() and json.loads(pointer.read_text())["step"] >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = json.loads(pointer.read_text())["step"]
    assert 2 <= killed_at < steps
    done = subprocess.run(_cli(world, tmp_path / "killed", steps), env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"resumed at step {killed_at}" in done.stderr
    report = json.loads((tmp_path / "killed" / "astroloc-tiny.json").read_text())
    assert report["steps"] == steps
    assert [h["step"] for h in report["history"]] == list(range(0, steps + 1))
    # the resumed run ends with exactly the weights of a run that was never interrupted
    pairs, source = data
    whole = train_astroloc(pairs, source, tmp_path / "whole", tiny(steps=steps, eval_every=100, checkpoint_every=2))
    with safe_open(str(whole.weights), "pt") as a, safe_open(str(tmp_path / "killed" / "astroloc-tiny.safetensors"), "pt") as b:
        assert set(a.keys()) == set(b.keys())
        for k in a.keys():
            assert torch.equal(a.get_tensor(k), b.get_tensor(k)), k


def test_init_from_a_dinov2_backbone_file(data, tmp_path):
    pairs, source = data
    torch.manual_seed(3)
    backbone = DinoV2ViT("vits14", depth=2)
    torch.save(backbone.state_dict(), tmp_path / "dinov2_vits14_pretrain.pth")  # DINOv2's key layout
    result = train_astroloc(pairs, source, tmp_path / "run", tiny(steps=2, eval_every=100),
                            init_weights=tmp_path / "dinov2_vits14_pretrain.pth")
    assert result.report["start"].startswith("DINOv2 backbone")
    assert result.report["settings"]["backbone_lr_scale"] is None  # auto: 0.1 from pretrained weights
    torch.save(DinoV2ViT("vitb14", depth=2).state_dict(), tmp_path / "vitb.pth")  # the wrong backbone
    with pytest.raises(TrainingError, match="wrong shapes"):
        train_astroloc(pairs, source, tmp_path / "run2", tiny(steps=2), init_weights=tmp_path / "vitb.pth")


def test_promoted_only_when_it_beats_the_current_default(trained, data):
    from astroapp.checkpoints import save_safetensors
    from astroapp.retrieval.registry import build_model, default_weights
    from astroapp.training.astroloc import ImageStore, validation_set
    from astroapp.training.card import compare_with_default, promote

    result, _, _ = trained
    pairs, source = data
    val = validation_set(pairs, ImageStore(pairs, source, 112))
    home = Path(os.environ["ASTROAPP_HOME"])
    installed = home / "models" / "astroloc-tiny.safetensors"
    # the current default is this very model: equal recall does not beat it
    installed.parent.mkdir(parents=True)
    installed.write_bytes(result.weights.read_bytes())
    same = compare_with_default(result, val, "cpu")
    assert same.baseline.startswith("astroloc-tiny") and same.baseline_recalls == same.trained_recalls
    assert not same.better
    # the current default is the untrained starting point: the trained model beats it
    torch.manual_seed(0)
    save_safetensors(build_model("astroloc-tiny", dict(tf.TINY)), installed,
                     {"architecture": "astroloc-tiny", "config": dict(tf.TINY)})
    versus_start = compare_with_default(result, val, "cpu")
    assert versus_start.better, (versus_start.trained_recalls, versus_start.baseline_recalls)
    assert promote(result) == installed == default_weights("astroloc-tiny")
    assert installed.read_bytes() == result.weights.read_bytes()


def test_cli_trains_writes_a_card_and_model_list_shows_it(world, capsys):
    home = Path(os.environ["ASTROAPP_HOME"])
    args = _cli(world, home / "unused", 3)[3:]
    i = args.index("--out")
    del args[i : i + 2]  # the default folder: <data dir>/models/trained/astroloc-tiny
    assert main(args) == 0
    out = capsys.readouterr().out
    run = home / "models" / "trained" / "astroloc-tiny"
    card = (run / "astroloc-tiny.md").read_text()
    assert "## Data" in card and "## Validation" in card and "3 steps" in card and "current default" in card
    report = json.loads((run / "astroloc-tiny.json").read_text())
    assert report["steps"] == 3 and "R@1" in report["val_recalls"] and "baseline_recalls" in report["comparison"]
    assert "not made the default" in out  # --no-promote
    assert f"--weights {run / 'astroloc-tiny.safetensors'}" in out  # how to re-embed an index with it
    assert main(["model", "list"]) == 0
    assert str(run / "astroloc-tiny.safetensors") in capsys.readouterr().out
