"""From a rough pose to a homography, by correlating orientation-field patches.

EarthMatch's loop, with patches instead of keypoints: the surroundings are warped so that
the pose's footprint fills an S x S view, the photo square is cut into overlapping patches,
and each patch is looked for in the view within a small radius (normalised correlation of
the polarity-invariant orientation fields, `orientation`). A patch whose best offset is not
clearly better than its second best (a featureless field, a repeated furrow) gives nothing.
The offsets that agree on one homography (MAGSAC, 3 px) are the inliers; the homography is
composed with the view's and the next view drawn from it, with a smaller radius. The
inlier count is what the dense stage's calibration turns into a confidence: a wrong pose
lines up about as many patches as chance does (10-20 of ~200-800), a right one most of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from astroapp.matching.cancel import check_cancel
from astroapp.matching.geometry import apply_h, is_convex, quad_area
from astroapp.matching.orientation import equalised_grey, orientation_field

PATCH = 32  # px of the S x S photo square
STEP = 16
RADII = (32, 16, 16)  # search radius (px of the view) per iteration
SIGMA = 1.5
MIN_PEAK = 0.3  # normalised correlation a patch's best offset must reach
MIN_DISTINCT = 1.15  # ...and its ratio over the best offset more than 4 px away
MIN_VALID = 0.5  # fraction of a patch on usable ground (off clouds)
RANSAC_PX = 3.0
MIN_CORRESPONDENCES = 8
CONVERGED_PX = 1.0


@dataclass
class DenseFit:
    """The refinement's outcome: `homography` maps photo-square pixel centres to the
    surroundings' (None when a rule rejected it, `reason` says which)."""

    inliers: int
    homography: np.ndarray | None
    pts_photo: np.ndarray  # (K, 2) inlier patch centres, photo square pixels
    pts_surr: np.ndarray  # (K, 2) their matches, surroundings pixels
    reason: str | None = None
    iteration_inliers: list[int] = field(default_factory=list)
    correspondences: int = 0


class PhotoPatches:
    """The photo square's orientation field and usable-ground mask, computed once per photo."""

    def __init__(self, square: np.ndarray, mask: np.ndarray | None = None) -> None:
        self.size = int(square.shape[0])
        self.field, _ = orientation_field(equalised_grey(square), SIGMA)
        ground = np.ones(square.shape[:2], np.float32) if mask is None else (mask > 0).astype(np.float32)
        # fraction of usable ground under each patch, by its top-left corner
        self.ground = cv2.boxFilter(ground, -1, (PATCH, PATCH), anchor=(0, 0),
                                    normalize=True, borderType=cv2.BORDER_CONSTANT)


def correspondences(photo: PhotoPatches, view_field: np.ndarray, view_valid: np.ndarray,
                    radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Patch centres in the photo square and their best offsets' centres in the view."""
    size = photo.size
    pts_p: list[tuple[float, float]] = []
    pts_v: list[tuple[float, float]] = []
    half = PATCH / 2.0
    for y in range(radius, size - PATCH - radius + 1, STEP):
        for x in range(radius, size - PATCH - radius + 1, STEP):
            if photo.ground[y, x] < MIN_VALID:
                continue
            ya, yb, xa, xb = y - radius, y + PATCH + radius, x - radius, x + PATCH + radius
            if view_valid[ya:yb, xa:xb].min() == 0:
                continue
            corr = cv2.matchTemplate(view_field[ya:yb, xa:xb], photo.field[y:y + PATCH, x:x + PATCH],
                                     cv2.TM_CCORR_NORMED)
            _, best, _, loc = cv2.minMaxLoc(corr)
            if not np.isfinite(best) or best < MIN_PEAK:
                continue
            cv2.circle(corr, loc, 4, -1.0, -1)
            if best < MIN_DISTINCT * max(float(corr.max()), 1e-3):
                continue
            pts_p.append((x + half - 0.5, y + half - 0.5))
            pts_v.append((xa + loc[0] + half - 0.5, ya + loc[1] + half - 0.5))
    return np.float32(pts_p).reshape(-1, 2), np.float32(pts_v).reshape(-1, 2)


def refine(photo: PhotoPatches, surroundings: np.ndarray, start: np.ndarray,
           iterations: int = len(RADII), cancel: Any = None) -> DenseFit:
    """Refine `start` (3x3: photo square pixel centres -> `surroundings` pixel centres)."""
    size = photo.size
    h_total = np.asarray(start, np.float64) / start[2, 2]
    sh, sw = surroundings.shape[:2]
    grey = equalised_grey(surroundings) if surroundings.ndim == 3 else surroundings
    ones = np.full((sh, sw), 255, np.uint8)
    square = np.array([[-0.5, -0.5], [size - 0.5, -0.5], [size - 0.5, size - 0.5], [-0.5, size - 0.5]])
    empty = np.zeros((0, 2), np.float32)
    per_iter: list[int] = []
    pts_p = pts_s = empty
    n_corr = 0
    for it in range(iterations):
        check_cancel(cancel)
        to_view = np.linalg.inv(h_total)
        view = cv2.warpPerspective(grey, to_view, (size, size), flags=cv2.INTER_LINEAR)
        valid = cv2.warpPerspective(ones, to_view, (size, size), flags=cv2.INTER_NEAREST)
        view_field, _ = orientation_field(view, SIGMA)
        pp, pv = correspondences(photo, view_field, valid, RADII[min(it, len(RADII) - 1)])
        n_corr = len(pp)
        if n_corr < MIN_CORRESPONDENCES:
            return DenseFit(0, None, empty, empty, "too few patch matches", per_iter, n_corr)
        h, inl = cv2.findHomography(pp, pv, cv2.USAC_MAGSAC, RANSAC_PX, maxIters=2000,
                                    confidence=0.999)
        if h is None or inl is None or not np.all(np.isfinite(h)):
            return DenseFit(0, None, empty, empty, "no homography found", per_iter, n_corr)
        inl = inl.ravel().astype(bool)
        per_iter.append(int(inl.sum()))
        h_total = h_total @ h
        h_total /= h_total[2, 2]
        quad = apply_h(h_total, square)
        if not is_convex(quad):
            return DenseFit(per_iter[-1], None, empty, empty, "non-convex quadrilateral", per_iter, n_corr)
        area = quad_area(quad)
        if area <= 0:
            return DenseFit(per_iter[-1], None, empty, empty, "mirrored quadrilateral", per_iter, n_corr)
        if area > float(sh * sw):
            return DenseFit(per_iter[-1], None, empty, empty,
                            "quadrilateral larger than the surroundings", per_iter, n_corr)
        pts_p = pp[inl]
        pts_s = apply_h(h_total @ np.linalg.inv(h), pv[inl]).astype(np.float32)
        if np.abs(apply_h(h, square) - square).max() <= CONVERGED_PX:
            break
    return DenseFit(per_iter[-1], h_total, pts_p, pts_s, None, per_iter, n_corr)
