"""AstroLoc's two losses, on L2-normalised descriptors (cosine similarities).

- `pairwise_loss`: photos against satellite blocks. A block whose footprint overlaps the
  photo by the pair builder's IoU is pulled towards it (attraction 1 - s); a block that does
  not touch the photo is pushed below a margin (repulsion max(0, s - margin), averaged over
  the negatives that still violate it); a block that touches the photo without being a pair
  is neither.
- `multi_similarity_loss`: Wang et al.'s multi-similarity loss (CVPR 2019) with its pair
  mining, on satellite blocks only: views of one place (the same block or blocks alike by
  IoU) are positives, blocks that do not touch are negatives. AstroLoc applies it to clusters
  of satellite imagery sampled by their relevance to astronaut photography; the sampling
  (clusters weighted by how many photos fall there) is the trainer's.

The paper's exact formulas are not public in full (METHODS.md marks them unverified); these
are the standard forms of the losses it names.
"""

from __future__ import annotations

import torch


def pairwise_loss(photos: torch.Tensor, blocks: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                  margin: float = 0.5) -> torch.Tensor:
    """photos (P,D), blocks (B,D) unit rows; positive/negative: (P,B) boolean masks."""
    sim = photos @ blocks.T
    zero = sim.sum() * 0.0
    attract = (1.0 - sim[positive]).mean() if positive.any() else zero
    violations = (sim - margin).clamp(min=0.0)[negative]
    active = violations > 0
    repel = violations[active].mean() if active.any() else zero
    return attract + repel


def multi_similarity_loss(emb: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                          alpha: float = 2.0, beta: float = 50.0, base: float = 0.5,
                          epsilon: float = 0.1) -> torch.Tensor:
    """emb (N,D) unit rows; positive/negative (N,N) boolean masks (the diagonal is ignored)."""
    sim = emb @ emb.T
    eye = torch.eye(len(emb), dtype=torch.bool, device=emb.device)
    positive = positive & ~eye
    negative = negative & ~eye
    losses = []
    for i in range(len(emb)):
        pos, neg = sim[i][positive[i]], sim[i][negative[i]]
        if len(pos) == 0 or len(neg) == 0:
            continue
        # mining: negatives harder than the easiest positive, positives harder than the hardest negative
        neg = neg[neg + epsilon > pos.min()]
        pos = pos[pos - epsilon < sim[i][negative[i]].max()]
        if len(pos) == 0 or len(neg) == 0:
            continue
        losses.append(torch.log1p(torch.exp(-alpha * (pos - base)).sum()) / alpha
                      + torch.log1p(torch.exp(beta * (neg - base)).sum()) / beta)
    if not losses:
        return sim.sum() * 0.0
    return torch.stack(losses).mean()
