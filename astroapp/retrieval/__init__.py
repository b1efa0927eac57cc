"""Retrieval models: images -> L2-normalised global descriptors for the tile index.

    model = load_model("astroapp-small")          # or "earthloc", "astroloc", "astroloc-tiny"
    desc = model(preprocess(images, model))       # (B, D) float32, unit norm
"""

from astroapp.checkpoints import WeightsError

from .base import IMAGENET_MEAN, IMAGENET_STD, RetrievalModel, preprocess
from .registry import (
    DEFAULT_MODEL,
    RANDOM,
    available_models,
    build_model,
    default_weights,
    describe_models,
    get_spec,
    load_model,
)

__all__ = [
    "DEFAULT_MODEL",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "RANDOM",
    "RetrievalModel",
    "WeightsError",
    "available_models",
    "build_model",
    "default_weights",
    "describe_models",
    "get_spec",
    "load_model",
    "preprocess",
]
