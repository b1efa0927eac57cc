"""DINOv2-style Vision Transformer (register-free, patch 14) with DINOv2's parameter names.

Plain torch, so DINOv2 / AstroLoc state_dicts load without the hub code (which downloads).
The position embedding is stored for the pre-training grid (518 px -> 37x37) and resized
bicubically to the grid of any input whose sides are multiples of the patch size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

VIT_CONFIGS = {
    "vits14": {"dim": 384, "depth": 12, "heads": 6},
    "vitb14": {"dim": 768, "depth": 12, "heads": 12},
    "vitl14": {"dim": 1024, "depth": 24, "heads": 16},
}


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float = 1e-5):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoV2ViT(nn.Module):
    """Returns (cls token (B,D), patch tokens as a map (B,D,H/14,W/14)), both after the final norm."""

    def __init__(self, arch: str = "vitb14", patch: int = 14, pretrain_size: int = 518, depth: int | None = None):
        super().__init__()
        cfg = dict(VIT_CONFIGS[arch], **({"depth": depth} if depth else {}))  # depth: tiny test/benchmark models
        dim = cfg["dim"]
        self.patch_size = patch
        self.embed_dim = dim
        self.pretrain_grid = pretrain_size // patch
        self.patch_embed = PatchEmbed(patch, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.pretrain_grid**2, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))  # unused at inference; kept for key compatibility
        self.blocks = nn.ModuleList([Block(dim, cfg["heads"]) for _ in range(cfg["depth"])])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def interpolated_pos_embed(self, gh: int, gw: int) -> torch.Tensor:
        g = self.pretrain_grid
        if (gh, gw) == (g, g):
            return self.pos_embed
        cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        grid = patch_pos.reshape(1, g, g, -1).permute(0, 3, 1, 2).float()
        grid = F.interpolate(grid, size=(gh, gw), mode="bicubic", align_corners=False)
        patch_pos = grid.permute(0, 2, 3, 1).reshape(1, gh * gw, -1).to(self.pos_embed.dtype)
        return torch.cat([cls_pos, patch_pos], dim=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, h, w = x.shape
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f"ViT input sides must be multiples of {p}, got {h}x{w}")
        gh, gw = h // p, w // p
        tokens = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(b, -1, -1), tokens], dim=1)
        tokens = tokens + self.interpolated_pos_embed(gh, gw)
        for block in self.blocks:
            tokens = block(tokens)
        tokens = self.norm(tokens)
        cls, patches = tokens[:, 0], tokens[:, 1:]
        return cls, patches.transpose(1, 2).reshape(b, self.embed_dim, gh, gw)
