"""Where in its surroundings a photo lies, found by correlating orientation fields.

When keypoints find nothing (a frozen lake that is dark in the mosaic, haze, a 50 mm photo
whose detail is a few lakes) the photo's outlines may still agree with the mosaic's. This
search tries every pose of the photo over the surroundings at a coarse size: angles a few
degrees apart, scales between the footprints the surroundings can hold, and stretches of
the square's sides (a photo squashed to a square, or foreshortened); for each it correlates
the photo's polarity-invariant orientation field (`orientation`) with the surroundings'
(normalised cross-correlation of the two channels, through the FFT) and keeps the best
translation. A template's chance correlation grows as it shrinks, so poses are ranked by the
peak's height over its own correlation map's spread (peak-to-sidelobe ratio), which makes
small and large footprints comparable. The few best distinct poses go to `dense_refine`,
which decides: a pose is only a starting point.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from astroapp.matching.cancel import check_cancel
from astroapp.matching.geometry import scale_centres
from astroapp.matching.orientation import equalised_grey, orientation_field

SEARCH_SIDE = 256  # px: photo and surroundings sides for the search
ANGLE_STEP_DEG = 5.0
SCALE_STEP = 1.17  # footprint scales this far apart (the correlation peak tolerates ~8 %)
MIN_RATIO, MAX_RATIO = 1.4, 5.0  # surroundings width / footprint width the search covers
STRETCHES = (1.0, 1.25, 1.5, 2.0)  # each along the square's x (and its inverse along y)
MIN_TEMPLATE_PX = 24
DISTINCT_PX = 0.06  # poses closer than this fraction of the side (and angle) are one
DISTINCT_DEG = 15.0
SIGMA = 1.0


@dataclass(frozen=True)
class Pose:
    """A similarity-plus-stretch pose of the photo square over the surroundings."""

    score: float  # peak-to-sidelobe ratio of the correlation
    ratio: float  # surroundings width / footprint width
    stretch: float  # footprint width / height, over the square's own
    angle_deg: float
    affine: np.ndarray  # 3x3: photo square pixel centres -> surroundings pixel centres


def ratios_between(lo: float, hi: float) -> tuple[float, ...]:
    """Ratios from lo to hi (clipped to what the search covers), SCALE_STEP apart."""
    lo, hi = max(MIN_RATIO, lo), min(MAX_RATIO, hi)
    if lo > hi:
        lo, hi = MIN_RATIO, MAX_RATIO
    n = max(1, math.ceil(math.log(hi / lo) / math.log(SCALE_STEP)) + 1)
    return tuple(float(r) for r in np.geomspace(lo, hi, n))


def stretches(base: float = 1.0) -> tuple[float, ...]:
    """Footprint width/height stretches to try: `base` (the photo's own aspect, 1 for a
    square file) times each of STRETCHES and their inverses."""
    out = {round(base * s, 6) for s in STRETCHES} | {round(base / s, 6) for s in STRETCHES}
    return tuple(sorted(out))


def _linear(ratio: float, stretch: float, angle_deg: float, n: int, side: int) -> np.ndarray:
    """2x2 map of the n-px photo square (about its centre) onto the side-px surroundings."""
    w = side / ratio * math.sqrt(stretch) / n
    h = side / ratio / math.sqrt(stretch) / n
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return rot @ np.diag([w, h])


def search_poses(
    photo: np.ndarray,
    surroundings: np.ndarray,
    ratios: tuple[float, ...],
    aspects: tuple[float, ...],
    photo_mask: np.ndarray | None = None,
    angle_step: float = ANGLE_STEP_DEG,
    side: int = SEARCH_SIDE,
    top: int = 5,
    cancel: Any = None,
) -> list[Pose]:
    """The `top` best distinct poses of `photo` (square, RGB or grey uint8) over
    `surroundings` (square), best first. `photo_mask` (255: ground) keeps clouds out of the
    template. Affines map the given images' pixel centres."""
    n = side
    surr_small = cv2.resize(surroundings, (side, side), interpolation=cv2.INTER_AREA)
    surr_field, _ = orientation_field(equalised_grey(surr_small, 4), SIGMA)
    grey = equalised_grey(cv2.resize(photo, (n, n), interpolation=cv2.INTER_AREA), 4)
    valid = np.ones((n, n), np.uint8)
    if photo_mask is not None:
        valid = (cv2.resize(photo_mask, (n, n), interpolation=cv2.INTER_NEAREST) > 0).astype(np.uint8)
    centre = np.array([(n - 1) / 2.0, (n - 1) / 2.0])
    box = np.array([[0, 0], [n - 1, 0], [n - 1, n - 1], [0, n - 1]], np.float64) - centre
    erode = np.ones((7, 7), np.uint8)
    found: list[tuple[float, float, float, float, np.ndarray]] = []
    for ratio, stretch, angle in itertools.product(ratios, aspects,
                                                   np.arange(0.0, 360.0, angle_step)):
        check_cancel(cancel)
        lin = _linear(ratio, stretch, float(angle), n, side)
        corners = box @ lin.T
        lo = corners.min(axis=0)
        w, h = (int(v) for v in np.ceil(corners.max(axis=0) - lo) + 1)
        if min(w, h) < MIN_TEMPLATE_PX or max(w, h) >= side:
            continue
        t = np.hstack([lin, (-lo - lin @ centre)[:, None]])
        warped = cv2.warpAffine(grey, t, (w, h), flags=cv2.INTER_AREA,
                                borderMode=cv2.BORDER_REFLECT)
        inside = cv2.warpAffine(valid, t, (w, h), flags=cv2.INTER_NEAREST)
        inside = cv2.erode(inside, erode).astype(np.float32)
        if inside.mean() < 0.25:
            continue
        field, _ = orientation_field(warped, SIGMA)
        corr = cv2.matchTemplate(surr_field, field * inside[..., None], cv2.TM_CCORR_NORMED)
        corr = np.nan_to_num(corr, nan=0.0, posinf=0.0, neginf=0.0)
        _, peak, _, loc = cv2.minMaxLoc(corr)
        psr = (peak - float(corr.mean())) / (float(corr.std()) + 1e-6)
        # photo centre -> surroundings: the template's top-left at loc holds -lo
        shift = np.array(loc, np.float64) - lo
        affine = np.eye(3)
        affine[:2, :2] = lin
        affine[:2, 2] = shift - lin @ centre
        found.append((psr, ratio, stretch, float(angle), affine))
    found.sort(key=lambda f: -f[0])
    to_small = scale_centres(photo.shape[1::-1], (n, n))
    to_surr = scale_centres((side, side), surroundings.shape[1::-1])
    kept: list[Pose] = []
    for psr, ratio, stretch, angle, affine in found:
        centre_at = affine[:2, :2] @ centre + affine[:2, 2]
        if any(np.linalg.norm(centre_at - (k.affine[:2, :2] @ centre + k.affine[:2, 2])) < DISTINCT_PX * side
               and _angle_gap(angle, k.angle_deg) < DISTINCT_DEG for k in kept):
            continue
        kept.append(Pose(psr, ratio, stretch, angle, affine))
        if len(kept) >= top:
            break
    return [Pose(p.score, p.ratio, p.stretch, p.angle_deg, to_surr @ p.affine @ to_small) for p in kept]


def _angle_gap(a: float, b: float) -> float:
    d = abs(a - b) % 360.0
    return min(d, 360.0 - d)
