"""How well a coregistration agrees with a published alignment, or with the photo itself.

A published EarthMatch result is the surroundings warped so the photo's footprint fills the
frame; warping the surroundings by our homography the same way and comparing grey levels
(NCC) says whether both alignments agree. Gradient-magnitude NCC compares structure across
the photo/satellite radiometry (it tells a sound warp from a smear).
"""

from __future__ import annotations

import cv2
import numpy as np


def _gray(img: np.ndarray, side: int = 256) -> np.ndarray:
    small = cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float64)


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    return float((a * b).sum() / max(np.sqrt((a * a).sum() * (b * b).sum()), 1e-12))


def ncc(img_a: np.ndarray, img_b: np.ndarray) -> float:
    """Normalised cross-correlation of the grey levels at 256 px."""
    return _ncc(_gray(img_a), _gray(img_b))


def gradient_ncc(img_a: np.ndarray, img_b: np.ndarray) -> float:
    """NCC of gradient magnitudes: structure agreement across photo/satellite radiometry."""

    def grad(img: np.ndarray) -> np.ndarray:
        g = cv2.GaussianBlur(_gray(img), (0, 0), 1.5)
        return np.hypot(cv2.Sobel(g, cv2.CV_64F, 1, 0), cv2.Sobel(g, cv2.CV_64F, 0, 1))

    return _ncc(grad(img_a), grad(img_b))


def warp_to_photo(surroundings: np.ndarray, homography: np.ndarray,
                  photo_size: tuple[int, int], out_size: tuple[int, int]) -> np.ndarray:
    """The surroundings warped into the photo's frame (as a published warp is), at out_size
    (w, h); `homography` maps photo px (edge coordinates, frame photo_size) to surroundings px."""
    w, h = out_size
    to_frame = np.diag([w / photo_size[0], h / photo_size[1], 1.0]) @ np.linalg.inv(homography)
    return cv2.warpPerspective(surroundings, to_frame, (w, h), flags=cv2.INTER_LINEAR)
