"""SALAD aggregation (Izquierdo & Civera, CVPR 2024): optimal-transport assignment of local
features to clusters, with a dustbin that absorbs uninformative features, plus a global token.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sinkhorn_with_dustbin(scores: torch.Tensor, dustbin: torch.Tensor, iters: int = 3, reg: float = 1.0) -> torch.Tensor:
    """Log transport plan (B, m+1, n) between m clusters + a dustbin (rows) and n features (columns).

    Marginals (after rescaling by n+m): every feature distributes a mass of 1 (columns sum to
    1), every cluster receives 1 and the dustbin the remaining n-m (rows). The solver ends on
    a column update, so column sums are exact and row sums converge with `iters`.
    """
    b, m, n = scores.shape
    if n <= m:
        raise ValueError(f"SALAD needs more local features ({n}) than clusters ({m}): use a larger input image")
    s = torch.cat([scores, dustbin.to(scores.dtype).expand(b, 1, n)], dim=1).float() / reg
    norm = -math.log(n + m)
    log_a = torch.full((m + 1,), norm, device=s.device)
    log_a[-1] = norm + math.log(n - m)
    log_b = torch.full((n,), norm, device=s.device)
    u = torch.zeros(b, m + 1, device=s.device)
    v = torch.zeros(b, n, device=s.device)
    for _ in range(iters):
        u = log_a - torch.logsumexp(s + v[:, None, :], dim=2)
        v = log_b - torch.logsumexp(s + u[:, :, None], dim=1)
    return s + u[:, :, None] + v[:, None, :] - norm


class SALAD(nn.Module):
    """(cls token (B,C), feature map (B,C,H,W)) -> L2-normalised (B, token_dim + clusters*cluster_dim)."""

    def __init__(
        self,
        in_channels: int = 768,
        num_clusters: int = 64,
        cluster_dim: int = 128,
        token_dim: int = 256,
        hidden: int = 512,
        sinkhorn_iters: int = 3,
    ):
        super().__init__()
        self.num_clusters = num_clusters
        self.cluster_dim = cluster_dim
        self.token_dim = token_dim
        self.sinkhorn_iters = sinkhorn_iters
        self.out_dim = token_dim + num_clusters * cluster_dim
        self.token_features = nn.Sequential(nn.Linear(in_channels, hidden), nn.ReLU(), nn.Linear(hidden, token_dim))
        self.cluster_features = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1), nn.Dropout(0.0), nn.ReLU(), nn.Conv2d(hidden, cluster_dim, 1)
        )
        self.score = nn.Sequential(nn.Conv2d(in_channels, hidden, 1), nn.Dropout(0.0), nn.ReLU(), nn.Conv2d(hidden, num_clusters, 1))
        self.dust_bin = nn.Parameter(torch.tensor(1.0))

    def assignment(self, feature_map: torch.Tensor) -> torch.Tensor:
        """Transport plan (B, clusters+1, H*W), dustbin last; each column sums to 1."""
        scores = self.score(feature_map).flatten(2)
        return sinkhorn_with_dustbin(scores, self.dust_bin, self.sinkhorn_iters).exp()

    def forward(self, cls: torch.Tensor, feature_map: torch.Tensor) -> torch.Tensor:
        f = self.cluster_features(feature_map).flatten(2)  # (B, l, n)
        p = self.assignment(feature_map)[:, :-1, :].to(f.dtype)  # (B, m, n), dustbin dropped
        clusters = F.normalize(torch.einsum("bln,bmn->blm", f, p), p=2, dim=1).flatten(1)
        token = F.normalize(self.token_features(cls), p=2, dim=-1)
        return F.normalize(torch.cat([token, clusters], dim=-1), p=2, dim=-1)
