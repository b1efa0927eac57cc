"""Tools > Improve retrieval from accepted photos: AstroLoc training as a background job.

The job pairs the catalogue's accepted photos with the tiles of the index the app localizes
with (Settings; the bundled world when none is set), trains AstroLoc (ViT-B/14 on CUDA,
ViT-S/14 on CPU; from DINOv2's backbone when `model fetch` installed it, random otherwise),
and reports loss and validation recall in the status bar. Cancel checkpoints it: the same
action later resumes. The model becomes the default only when it beats the current one.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtGui import QAction

from astroapp.gui.workers import callback_job

if TYPE_CHECKING:
    from astroapp.gui.main_window import MainWindow

TITLE = "Improve retrieval from accepted photos"


def dinov2_weights(variant: str) -> Path | None:
    """DINOv2's backbone for the variant, if `model fetch` (or the user) installed it."""
    from astroapp.fetch import FetchError, find_weights

    try:
        return find_weights("dinov2-vits14" if variant == "astroloc-tiny" else "dinov2-vitb14")
    except (FetchError, KeyError, ValueError):
        return None


def training_job(window: MainWindow):
    """The job's generator factory, with the window's settings at the time it starts."""
    import torch

    from astroapp.training.astroloc import TrainSettings
    from astroapp.training.run import train_from_catalog

    options = dict(getattr(window, "training_options", None) or {})
    settings = options.pop("settings", None) or TrainSettings(
        variant="astroloc" if torch.cuda.is_available() and window.settings.device != "cpu" else "astroloc-tiny")
    index = window.settings.index_dir or None
    init = options.pop("init_weights", None) or dinov2_weights(settings.variant)
    return callback_job(functools.partial(
        train_from_catalog, window.catalog_path, source=options.pop("source", None if index else "bluemarble"),
        index=index, settings=settings, init_weights=init, device=window.settings.device or None, **options))


def start_training(window: MainWindow):
    """Start the training job (None when another job is running)."""
    return window._start_job("train", training_job(window), TITLE)


def install(window: MainWindow) -> QAction:
    """Add the Tools menu and its action to the window."""
    act = window._action(f"{TITLE}…", lambda: start_training(window), None, None,
                         "Train the AstroLoc retrieval model on the accepted photos and the satellite tiles they "
                         "overlap (background job; Cancel keeps a checkpoint, running it again resumes)")
    menu = window.menuBar().addMenu("&Tools")
    menu.addAction(act)
    window.act_train_retrieval = act
    return act
