"""EarthLoc (Berton et al., CVPR 2024): ResNet-50 to layer3 + MixVPR + Linear, 4096-D.

Module names follow the published code so `best_trained_model.pt` loads strictly; torchgeo's
port of the same weights (timm ResNet names: `backbone.conv1...` instead of
`backbone.model.conv1...`, no layer4 / fc keys since timm's are Identity there) is renamed on
load by `to_original_keys`.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import IMAGENET_MEAN, IMAGENET_STD, RetrievalModel
from .mixvpr import MixVPR
from .resnet import ResNetTrunk


class _Backbone(nn.Module):
    """Holds the trunk under `.model`, as EarthLoc's backbone wrapper does."""

    def __init__(self):
        super().__init__()
        self.model = ResNetTrunk((3, 4, 6))  # layer4 removed: stride 16, 1024 channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class EarthLoc(RetrievalModel):
    def __init__(self, image_size: int = 320, descriptor_dim: int = 4096):
        super().__init__()
        self.name = "earthloc"
        self.input_size = (image_size, image_size)
        self.descriptor_dim = descriptor_dim
        self.mean = IMAGENET_MEAN
        self.std = IMAGENET_STD
        side = -(-image_size // 16)
        self.backbone = _Backbone()
        self.aggregator = MixVPR(1024, (side, side), descriptor_dim // 4, mix_depth=4, mlp_ratio=1, out_rows=4)
        self.fc = nn.Linear(descriptor_dim, descriptor_dim)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.aggregator(self.backbone(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[2:]) != tuple(self.input_size):
            raise ValueError(f"EarthLoc takes exactly {self.input_size[0]}x{self.input_size[1]} inputs, got {tuple(x.shape[2:])}")
        return super().forward(x)


def to_original_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename torchgeo/timm keys (`backbone.conv1.weight`) to EarthLoc's (`backbone.model.conv1.weight`).

    Original-layout dicts pass through unchanged; torchvision/timm classifier keys
    (`fc` of the ResNet, layer4) that a full-backbone export may carry are dropped.
    """
    if any(k.startswith("backbone.model.") for k in state):
        return state
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("backbone."):
            rest = key[len("backbone."):]
            if rest.startswith(("layer4.", "fc.")):
                continue
            out["backbone.model." + rest] = value
        else:
            out[key] = value
    return out


def to_torchgeo_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of `to_original_keys` (for exporting to torchgeo, and for tests)."""
    return {
        ("backbone." + k[len("backbone.model."):] if k.startswith("backbone.model.") else k): v
        for k, v in state.items()
    }


__all__ = ["EarthLoc", "to_original_keys", "to_torchgeo_keys"]
