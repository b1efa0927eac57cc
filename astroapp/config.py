"""Where things live, and which device to compute on."""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_data_dir

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
MODELS_DIR = Path(os.environ.get("ASTROAPP_MODELS", REPO_DIR / "models"))
RESOURCES_DIR = Path(os.environ.get("ASTROAPP_RESOURCES", REPO_DIR / "resources"))

# The retrieval model used when none is named (its weights ship in models/). Kept here, not in
# astroapp.retrieval, so building the CLI parser does not import torch.
DEFAULT_RETRIEVAL_MODEL = "astroapp-small"


def data_dir() -> Path:
    """The user's data dir (catalogue, demo cache, indexes); ASTROAPP_HOME overrides it."""
    root = os.environ.get("ASTROAPP_HOME") or user_data_dir("astroapp", appauthor=False)
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_catalog_path() -> Path:
    return data_dir() / "catalog.sqlite"


def pick_device(device: str | None = None) -> str:
    """CUDA when present (or asked for), else CPU."""
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"
