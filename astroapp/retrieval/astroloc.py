"""AstroLoc (ICCV 2025) architecture: DINOv2 ViT + SALAD + Linear, L2-normalised.

The configuration follows secondary sources (METHODS.md marks it unverified): ViT-B/14,
SALAD 256 + 64x128 -> Linear 2048; `astroloc-tiny` uses ViT-S/14 -> Linear 512. Parameter
names: `backbone.*` = DINOv2's, `aggregator.*` = SALAD's, `fc.*` the final projection. Only
a local weights file is ever read; nothing is downloaded.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import IMAGENET_MEAN, IMAGENET_STD, RetrievalModel
from .salad import SALAD
from .vit import DinoV2ViT

VARIANTS = {
    "astroloc": {"arch": "vitb14", "descriptor_dim": 2048, "input_size": (322, 322)},
    "astroloc-tiny": {"arch": "vits14", "descriptor_dim": 512, "input_size": (224, 224)},
}


class AstroLoc(RetrievalModel):
    def __init__(self, variant: str = "astroloc", input_size: tuple[int, int] | list[int] | None = None, sinkhorn_iters: int = 3,
                 depth: int | None = None, clusters: int = 64, cluster_dim: int = 128, token_dim: int = 256):
        """`depth`, `clusters`, `cluster_dim`, `token_dim`: smaller than the paper's only for
        tiny CPU models (tests, `astroapp.training`); they are stored in the weights' config."""
        super().__init__()
        cfg = VARIANTS[variant]
        self.name = variant
        self.input_size = tuple(int(s) for s in (input_size or cfg["input_size"]))
        if any(s % 14 for s in self.input_size):
            raise ValueError(f"AstroLoc input sides must be multiples of 14, got {self.input_size}")
        self.descriptor_dim = cfg["descriptor_dim"]
        self.mean = IMAGENET_MEAN
        self.std = IMAGENET_STD
        self.backbone = DinoV2ViT(cfg["arch"], depth=depth)
        self.aggregator = SALAD(self.backbone.embed_dim, clusters, cluster_dim, token_dim, sinkhorn_iters=sinkhorn_iters)
        self.fc = nn.Linear(self.aggregator.out_dim, self.descriptor_dim)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        cls, fmap = self.backbone(x)
        return self.fc(self.aggregator(cls, fmap))


def to_astroloc_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Accept common wrappings: `model.` prefixes, DINOv2 under `backbone.model.`."""
    out = {}
    for key, value in state.items():
        if key.startswith("model."):
            key = key[len("model."):]
        if key.startswith("backbone.model."):
            key = "backbone." + key[len("backbone.model."):]
        out[key] = value
    return out
