"""MixVPR aggregation (Ali-bey et al., WACV 2023) as EarthLoc configures it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FeatureMixer(nn.Module):
    """Residual MLP over the flattened spatial positions of each channel."""

    def __init__(self, dim: int, mlp_ratio: float = 1.0):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.mix = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mix(x)


class MixVPR(nn.Module):
    """(B,C,H,W) -> mixers over H*W -> channel projection -> row projection -> L2 (B, out_channels*out_rows)."""

    def __init__(
        self,
        in_channels: int = 1024,
        in_hw: tuple[int, int] = (20, 20),
        out_channels: int = 1024,
        mix_depth: int = 4,
        mlp_ratio: float = 1.0,
        out_rows: int = 4,
    ):
        super().__init__()
        self.in_hw = in_hw
        hw = in_hw[0] * in_hw[1]
        self.mix = nn.Sequential(*[FeatureMixer(hw, mlp_ratio) for _ in range(mix_depth)])
        self.channel_proj = nn.Linear(in_channels, out_channels)
        self.row_proj = nn.Linear(hw, out_rows)
        self.out_dim = out_channels * out_rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[2:]) != tuple(self.in_hw):
            raise ValueError(
                f"MixVPR expects a {self.in_hw[0]}x{self.in_hw[1]} feature map, got "
                f"{x.shape[2]}x{x.shape[3]} (wrong input image size?)"
            )
        x = self.mix(x.flatten(2))  # (B, C, HW)
        x = self.channel_proj(x.transpose(1, 2))  # (B, HW, C')
        x = self.row_proj(x.transpose(1, 2))  # (B, C', rows)
        return F.normalize(x.flatten(1), p=2, dim=1)
