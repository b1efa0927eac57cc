"""Polarity-invariant gradient orientation fields, for matching across seasons and haze.

A keypoint descriptor compares gradient directions, so a lake that is dark in a summer
Sentinel-2 mosaic and bright (frozen, or seen through haze) in the photo describes as a
different thing. Its outline is the same: the gradient's *axis* does not change when the
contrast flips. Doubling the gradient's angle maps opposite directions onto one, so
correlating doubled-angle fields (two channels: cos 2a and sin 2a, weighted by the
gradient's strength relative to its neighbourhood) scores outlines and ridges whatever
their polarity and whatever the local contrast (haze lowers it, CLAHE raises it unevenly).
This is the representation the dense coregistration stage (`dense_search`, `dense_refine`)
correlates; see Fitch et al., "Orientation correlation" (2002), whose polarity-sensitive
version this doubles.
"""

from __future__ import annotations

import cv2
import numpy as np

CLAHE_CLIP = 2.0
CONTEXT = 6.0  # neighbourhood (in gradient-smoothing sigmas) a gradient's strength is relative to
EPS = 1e-2


def equalised_grey(image: np.ndarray, grid: int = 8) -> np.ndarray:
    """uint8 grey of an RGB uint8 image (or grey already), contrast-limited equalised."""
    grey = image if image.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    return cv2.createCLAHE(CLAHE_CLIP, (grid, grid)).apply(np.ascontiguousarray(grey))


def orientation_field(grey: np.ndarray, sigma: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 2) float32 doubled-angle orientation field and (H, W) relative gradient strength.

    `sigma` smooths before differentiating: the scale of the outlines that count (1 px at a
    coarse search, 1.5 px at the 512 px refinement, where sensor noise and fields' furrows
    would otherwise dominate).
    """
    g = cv2.GaussianBlur(grey.astype(np.float32), (0, 0), sigma)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    mag = np.sqrt(gx * gx + gy * gy)
    local = cv2.GaussianBlur(mag, (0, 0), CONTEXT * sigma) + EPS
    strength = mag / local
    # (gx + i gy)^2 / |g| = |g| e^{2ia}; divided by the local mean strength
    inv = 1.0 / ((mag + 1e-3) * local)
    field = np.empty(grey.shape[:2] + (2,), np.float32)
    field[..., 0] = (gx * gx - gy * gy) * inv
    field[..., 1] = (2.0 * gx * gy) * inv
    return field, strength.astype(np.float32)
