"""Affine tilt simulation for oblique photos (ASIFT, Morel & Yu 2009).

A photo taken `t` degrees off nadir sees the ground foreshortened by about cos(t) along the
line of sight, whose direction in the frame (the camera's roll about its optical axis) is
unknown. SIFT's descriptors tolerate a foreshortening of ~1.4 (about 45 degrees); beyond, the
same ground looks too different from a nadir mosaic. Stretching the photo by 1/cos(t) along a
few directions undoes the foreshortening for the direction closest to the true one, so one
of the stretched photos matches like a nadir photo would. The directions are 72/t degrees
apart for a stretch t (ASIFT's longitude sampling): more for a stronger stretch, whose
descriptors tolerate less error in its direction.

Each stretch is an affine map of the photo square onto itself (stretched, then shrunk to fit
the square), so the homography found for a stretched photo composes with it into one that
maps the original photo's pixels.
"""

from __future__ import annotations

import math

import numpy as np

MIN_TILT_DEG = 25.0  # below this the foreshortening (< 1.10) is within SIFT's tolerance
DIRECTION_STEP_DEG = 72.0  # directions 72/t degrees apart for a stretch t (Morel & Yu)
MAX_STRETCH = 2.5  # 66 deg: a frame more oblique than this is mostly haze
FACTOR_STEP = 1.6  # stretches of a wide tilt range this far apart (SIFT bridges ~1.25 each way)
MIN_RANGE_STRETCH = 1.2  # 34 deg: a range's stretches below this are left to SIFT


def stretch_factors(tilt_deg: tuple[float, float] | None) -> tuple[float, ...]:
    """Stretch factors (1/cos of the tilt), ascending, worth simulating for a tilt range:
    none below MIN_TILT_DEG; the range's upper end, and for a wide range (a NASA code) more
    down to its lower end, FACTOR_STEP apart (SIFT bridges the rest), none under
    MIN_RANGE_STRETCH (the unstretched search has tried those)."""
    if tilt_deg is None:
        return ()
    lo, hi = (float(t) for t in tilt_deg)
    if hi <= MIN_TILT_DEG:
        return ()
    f_lo, f_hi = (min(MAX_STRETCH, 1.0 / math.cos(math.radians(t))) for t in (lo, hi))
    out = [f_hi]
    while out[-1] / FACTOR_STEP >= max(MIN_RANGE_STRETCH, f_lo / math.sqrt(FACTOR_STEP)):
        out.append(out[-1] / FACTOR_STEP)
    return tuple(reversed(out))


def directions(factor: float) -> tuple[float, ...]:
    """Stretch directions (degrees in [0, 180)) for a stretch `factor`, evenly spaced at
    most DIRECTION_STEP_DEG / factor apart: 3 at 30 deg off nadir, 4 at 49, 6 at 63."""
    n = max(1, math.ceil(180.0 * factor / DIRECTION_STEP_DEG))
    return tuple(180.0 * i / n for i in range(n))


def stretch(size: int, angle_deg: float, factor: float) -> np.ndarray:
    """Pixel-centre map (3x3) of a size x size square onto itself: a stretch by `factor`
    along the direction `angle_deg` (counter-clockwise from the x axis, as seen on screen),
    about the square's centre, then shrunk so the stretched square fits in the square."""
    a = math.radians(angle_deg)
    u = np.array([math.cos(a), -math.sin(a)])  # image y points down
    m = np.eye(2) + (factor - 1.0) * np.outer(u, u)
    half = (size - 1) / 2.0
    corners = np.array([[-half, -half], [half, -half], [half, half], [-half, half]])
    extent = np.abs(corners @ m.T).max()
    m *= half / extent
    out = np.eye(3)
    out[:2, :2] = m
    out[:2, 2] = half - m @ np.array([half, half])
    return out
