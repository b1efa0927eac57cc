"""The matcher interface: features once per image, matching many times.

Coregistration matches one photo against many candidate views (several candidates, four
iterations each), so a matcher splits the work into `features` (cached for the photo) and
`match` (cheap, per view).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Features:
    """Keypoints of one image, in OpenCV pixel-centre coordinates of that image."""

    keypoints: np.ndarray  # (N, 2) float32, x, y
    descriptors: np.ndarray  # (N, D)
    image_size: tuple[int, int]  # (width, height)
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.keypoints.shape[0])


@dataclass(frozen=True)
class Matches:
    """Putative correspondences between image a and image b (before geometric verification)."""

    points_a: np.ndarray  # (M, 2) float32
    points_b: np.ndarray  # (M, 2) float32

    def __len__(self) -> int:
        return int(self.points_a.shape[0])


@runtime_checkable
class Matcher(Protocol):
    """A local-feature matcher; `rotation_invariant` lets coregistration skip rotations."""

    name: str
    rotation_invariant: bool

    def features(self, image: np.ndarray) -> Features:
        """Features of an RGB uint8 image."""
        ...

    def match(self, feats_a: Features, feats_b: Features) -> Matches:
        """Putative matches from a to b."""
        ...


class MatcherUnavailable(RuntimeError):
    """A matcher cannot run here (missing package or weights); the message says how to fix it."""
