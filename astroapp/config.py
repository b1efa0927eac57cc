"""Where things live, and which device to compute on."""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

from platformdirs import user_data_dir

PACKAGE_DIR = Path(__file__).resolve().parent


def bundled_dir(package: str, env: str) -> Path:
    """A folder of package data (`astroapp.bundled.*`), or the folder the environment names.

    Read through importlib.resources so a wheel finds its own copy and an editable install
    finds the checkout's top-level models/ and resources/ (pyproject.toml maps them).
    """
    override = os.environ.get(env)
    if override:
        return Path(override)
    return Path(str(files(package)))


MODELS_DIR = bundled_dir("astroapp.bundled.models", "ASTROAPP_MODELS")
RESOURCES_DIR = bundled_dir("astroapp.bundled.resources", "ASTROAPP_RESOURCES")

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
