"""Small projective-geometry helpers shared by coregistration and its tests.

Inside the matching code pixel coordinates follow OpenCV (pixel centres at integers);
everything handed out (homographies, corners, correspondences) uses edge coordinates,
where (0, 0) is the top-left corner of the image and (W, H) the bottom-right one.
"""

from __future__ import annotations

import numpy as np

CENTRE_TO_EDGE = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]], dtype=np.float64)
EDGE_TO_CENTRE = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]], dtype=np.float64)


def scale_centres(src_size: tuple[int, int], dst_size: tuple[int, int]) -> np.ndarray:
    """Pixel-centre map of a resize from src (w, h) to dst (w, h), as cv2.resize samples."""
    sx = dst_size[0] / src_size[0]
    sy = dst_size[1] / src_size[1]
    scale = np.diag([sx, sy, 1.0])
    return EDGE_TO_CENTRE @ scale @ CENTRE_TO_EDGE


def rot90_centres(k: int, size: tuple[int, int]) -> np.ndarray:
    """Pixel-centre map of `np.rot90(img, k)` (counter-clockwise) for an image of size (w, h)."""
    w, h = size
    k %= 4
    if k == 0:
        return np.eye(3)
    if k == 1:  # a[r, c] -> b[w-1-c, r]
        return np.array([[0, 1, 0], [-1, 0, w - 1], [0, 0, 1]], dtype=np.float64)
    if k == 2:
        return np.array([[-1, 0, w - 1], [0, -1, h - 1], [0, 0, 1]], dtype=np.float64)
    return np.array([[0, -1, h - 1], [1, 0, 0], [0, 0, 1]], dtype=np.float64)  # k == 3


def apply_h(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a 3x3 homography to (N, 2) points."""
    pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    hom = np.hstack([pts, np.ones((len(pts), 1))]) @ np.asarray(h, dtype=np.float64).T
    with np.errstate(divide="ignore", invalid="ignore"):
        return hom[:, :2] / hom[:, 2:3]


def edge_corners(size: tuple[int, int]) -> np.ndarray:
    """TL, TR, BR, BL corners of an image of size (w, h) in edge coordinates."""
    w, h = size
    return np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)


def quad_area(quad: np.ndarray) -> float:
    """Signed shoelace area of a polygon (positive for clockwise in image coordinates)."""
    x, y = quad[:, 0], quad[:, 1]
    return float(0.5 * (np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def is_convex(quad: np.ndarray) -> bool:
    """True when the 4-gon is strictly convex and not self-intersecting."""
    if not np.all(np.isfinite(quad)):
        return False
    d1 = np.roll(quad, -1, axis=0) - quad
    d2 = np.roll(d1, -1, axis=0)
    cross = d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]
    return bool(np.all(cross > 0) or np.all(cross < 0))
