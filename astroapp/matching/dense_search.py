"""Where in its surroundings a photo lies, found by correlating orientation fields.

When keypoints find nothing (a frozen lake that is dark in the mosaic, haze, a 50 mm photo
whose detail is a few lakes) the photo's outlines may still agree with the mosaic's. This
search tries every pose of the photo over the surroundings: angles a few degrees apart,
scales between the footprints the surroundings can hold, and stretches of the square's sides
(a photo squashed to a square, or foreshortened); for each it correlates the photo's
polarity-invariant orientation field (`orientation`) with the surroundings' (normalised
cross-correlation, the two channels taken as one complex number, through the FFT with the
surroundings' spectrum computed once) and keeps the best translation. A template's chance
correlation grows as it shrinks, so poses are ranked by the peak's height over its own
correlation map's spread (peak-to-sidelobe ratio), which makes small and large footprints
comparable.

An oblique photo sees the ground foreshortened along its line of sight; stretching the
square along its own axes does not undo that unless the line of sight happens to lie along
one of them. Given the tilt (`tilt_deg`), the search adds the stretches `tilt` simulates
(1/cos of the tilt): along the line of sight on the ground when its azimuth is known
(`azimuth_deg`, from the nadir point to the photo's centre; one more shape per stretch), else
along ASIFT's sampled directions in the photo (a few more per stretch). On the four found
real pairs foreshortened by a further 1.7 (54 deg) along two directions
(benchmarks/dense_search.py), the axes-only search found 3 of the 8, the tilt's stretches 6
(either way; the 50 mm photo's small lakes were lost by all), wrong pairs no better. The
direction holds on a real oblique photo: ISS064-E-358's (43 deg) alignment, its 3:2 frame's
squash to a square taken out, stretches the ground 1.46 along a bearing of 82 deg; NASA's
nadir -> centre bearing is 68 deg, 1/cos(43 deg) = 1.37.

The search runs coarse to fine: every pose at a smaller side (0.4 of the pixels); the best
`SURVIVORS` again at the full side, with the angles and scales either side of theirs; the best
few distinct ones climbed to their peak in angle and scale (it is narrow: a pose a grid step
off scores about as high as chance ones). The few best distinct poses go to `dense_refine`,
which decides: a pose is only a starting point.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from astroapp.matching import tilt
from astroapp.matching.cancel import check_cancel
from astroapp.matching.geometry import scale_centres
from astroapp.matching.orientation import equalised_grey, orientation_field

SEARCH_SIDE = 256  # px: photo and surroundings sides for the (fine) search
ANGLE_STEP_DEG = 5.0
# The coarse level: every pose at this side and angle step (a 50 mm photo's lakes are lost at
# 128 px; ISS062-E-24032's peak is so narrow in angle that at 7.5 degrees its true pose ranked
# 40th at the coarse level and fell out after it, at 5 degrees it ranks first), then the best
# SURVIVORS at SEARCH_SIDE, each at its angle and half a coarse step either side.
COARSE_SIDE = 160  # px (0: no coarse level, every pose at SEARCH_SIDE)
COARSE_ANGLE_STEP_DEG = 5.0
SURVIVORS = 48
SCALE_STEP = 1.1  # footprint scales this far apart at the coarse level (see search_poses)
MIN_RATIO, MAX_RATIO = 1.4, 5.0  # surroundings width / footprint width the search covers
STRETCHES = (1.0, 1.25, 1.5, 2.0)  # each along the square's x (and its inverse along y)
MIN_TEMPLATE_FRACTION = 24 / 256  # of the side: smaller templates correlate by chance
MIN_WINDOW_ENERGY = 0.5  # of the surroundings' mean field energy per imaged pixel
POLISHED = 10  # best distinct poses whose angle and scale are climbed to their peak
POLISH_ROUNDS = 2
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
    tilt_stretch: float = 1.0  # a foreshortening undone on top of `stretch` (1: none)
    # ...along this direction (degrees counter-clockwise from the x axis, as seen on screen):
    # on the ground (the surroundings) when the azimuth was given, else in the photo
    tilt_direction_deg: float = 0.0


@dataclass(frozen=True)
class _Shape:
    """A pose's shape: its linear map is (1/ratio) * left @ R(angle) @ right, in units of
    the search side (left, right 2x2 with unit determinant)."""

    stretch: float
    tilt_stretch: float
    tilt_direction_deg: float
    left: np.ndarray
    right: np.ndarray


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


def _rotation(angle_deg: float) -> np.ndarray:
    a = math.radians(angle_deg)
    return np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])


def _along(factor: float, direction_deg: float) -> np.ndarray:
    """Unit-determinant stretch by `factor` along a direction (counter-clockwise from the x
    axis as seen on screen, where y points down) against its perpendicular."""
    a = math.radians(direction_deg)
    u = np.array([math.cos(a), -math.sin(a)])
    return (np.eye(2) + (factor - 1.0) * np.outer(u, u)) / math.sqrt(factor)


def _shapes(aspects: tuple[float, ...], base: float, tilt_deg: tuple[float, float] | None,
            azimuth_deg: float | None) -> list[_Shape]:
    """The aspects' shapes (stretches along the square's axes), then the tilt's: each of
    `tilt.stretch_factors` along the line of sight on the ground (azimuth given) or along
    `tilt.directions` in the photo, applied to the photo's own aspect `base`."""
    eye = np.eye(2)
    out = [_Shape(s, 1.0, 0.0, eye, np.diag([math.sqrt(s), 1.0 / math.sqrt(s)])) for s in aspects]
    own = np.diag([math.sqrt(base), 1.0 / math.sqrt(base)])
    for factor in tilt.stretch_factors(tilt_deg):
        if azimuth_deg is not None:
            ground = 90.0 - azimuth_deg  # a bearing (clockwise from north), north up
            out.append(_Shape(base, factor, ground % 360.0, _along(factor, ground), own))
        else:
            out.extend(_Shape(base, factor, d, eye, _along(factor, d) @ own)
                       for d in tilt.directions(factor))
    return out


class _Level:
    """The photo and the surroundings at one search side: the surroundings' orientation
    field as a complex image, its spectrum and energy computed once for every pose."""

    def __init__(self, photo: np.ndarray, surroundings: np.ndarray, photo_mask: np.ndarray | None,
                 side: int) -> None:
        self.side = side
        small = cv2.resize(surroundings, (side, side), interpolation=cv2.INTER_AREA)
        field, _ = orientation_field(equalised_grey(small, 4), SIGMA)
        self.spectrum = cv2.dft(field, flags=cv2.DFT_COMPLEX_OUTPUT)
        energy = np.ascontiguousarray((field * field).sum(axis=2))
        self.energy = cv2.integral(energy, sdepth=cv2.CV_64F)
        # no-data (black) parts of the surroundings have no field: a window mostly over them
        # would divide chance by almost nothing
        imaged = small.max(axis=2) > 0 if small.ndim == 3 else small > 0
        self.floor = MIN_WINDOW_ENERGY * float(energy[imaged].mean()) if imaged.any() else 0.0
        self.grey = equalised_grey(cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA), 4)
        self.valid = np.ones((side, side), np.uint8)
        if photo_mask is not None:
            self.valid = (cv2.resize(photo_mask, (side, side), interpolation=cv2.INTER_NEAREST) > 0
                          ).astype(np.uint8)
        self.centre = np.array([(side - 1) / 2.0, (side - 1) / 2.0])
        self.box = np.array([[0, 0], [side - 1, 0], [side - 1, side - 1], [0, side - 1]],
                            np.float64) - self.centre
        self.erode = np.ones((max(3, side // 37 | 1),) * 2, np.uint8)  # 7 px at 256
        self._pad = np.zeros((side, side, 2), np.float32)

    def correlate(self, template: np.ndarray) -> np.ndarray:
        """Normalised cross-correlation (as cv2.TM_CCORR_NORMED) of an (h, w, 2) template
        at every position where it lies inside the surroundings: the real part of the
        complex correlation is the sum of the two channels' correlations."""
        h, w = template.shape[:2]
        pad = self._pad
        pad.fill(0.0)
        pad[:h, :w] = template
        prod = cv2.mulSpectrums(self.spectrum, cv2.dft(pad, flags=cv2.DFT_COMPLEX_OUTPUT), 0,
                                conjB=True)
        side = self.side
        corr = cv2.idft(prod, flags=cv2.DFT_SCALE)[: side - h + 1, : side - w + 1, 0]
        e = self.energy
        window = e[h:, w:] - e[:-h, w:] - e[h:, :-w] + e[:-h, :-w]
        norm = np.sqrt(np.maximum(window, 0.0) * float((template * template).sum()))
        enough = (norm > 1e-9) & (window >= self.floor * h * w)
        return np.where(enough, corr / np.maximum(norm, 1e-9), 0.0)

    def score(self, ratio: float, shape: _Shape, angle: float) -> tuple[float, np.ndarray] | None:
        """Peak-to-sidelobe ratio of one pose and its affine (this level's pixel centres),
        or None when its template is too small, too large or mostly cloud."""
        return self.score_linear(shape.left @ _rotation(angle) @ shape.right / ratio)

    def score_linear(self, lin: np.ndarray) -> tuple[float, np.ndarray] | None:
        """`score` for a pose given by its 2x2 map of the photo square (about its centre)
        onto the surroundings, both at this level's side."""
        side = self.side
        corners = self.box @ lin.T
        lo = corners.min(axis=0)
        w, h = (int(v) for v in np.ceil(corners.max(axis=0) - lo) + 1)
        if min(w, h) < MIN_TEMPLATE_FRACTION * side or max(w, h) >= side:
            return None
        t = np.hstack([lin, (-lo - lin @ self.centre)[:, None]])
        warped = cv2.warpAffine(self.grey, t, (w, h), flags=cv2.INTER_AREA,
                                borderMode=cv2.BORDER_REFLECT)
        inside = cv2.warpAffine(self.valid, t, (w, h), flags=cv2.INTER_NEAREST)
        inside = cv2.erode(inside, self.erode).astype(np.float32)
        if inside.mean() < 0.25:
            return None
        field, _ = orientation_field(warped, SIGMA)
        corr = self.correlate(field * inside[..., None])
        _, peak, _, loc = cv2.minMaxLoc(corr)
        psr = (peak - float(corr.mean())) / (float(corr.std()) + 1e-6)
        # photo centre -> surroundings: the template's top-left at loc holds -lo
        shift = np.array(loc, np.float64) - lo
        affine = np.eye(3)
        affine[:2, :2] = lin
        affine[:2, 2] = shift - lin @ self.centre
        return psr, affine


def _angles(step: float) -> Iterator[float]:
    return (float(a) for a in np.arange(0.0, 360.0, step))


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
    coarse_side: int = COARSE_SIDE,
    tilt_deg: tuple[float, float] | None = None,
    azimuth_deg: float | None = None,
    base_aspect: float = 1.0,
) -> list[Pose]:
    """The `top` best distinct poses of `photo` (square, RGB or grey uint8) over
    `surroundings` (square), best first. `photo_mask` (255: ground) keeps clouds out of the
    template. `tilt_deg` (min, max degrees off nadir, as `ViewingHints.tilt_deg`) adds the
    foreshortenings it implies, along `azimuth_deg` (the line of sight's bearing on the
    ground, clockwise from north, from the nadir point to the photo's centre) when given;
    `base_aspect` is the photo's own width / height (what the square squashed).
    `coarse_side` 0 searches every pose at `side` (slower, for comparison). Affines map the
    given images' pixel centres."""
    fine = _Level(photo, surroundings, photo_mask, side)
    shapes = _shapes(aspects, base_aspect, tilt_deg, azimuth_deg)
    found: list[tuple[float, float, _Shape, float, np.ndarray]] = []
    if coarse_side and coarse_side < side:
        coarse = _Level(photo, surroundings, photo_mask, coarse_side)
        coarse_found = []
        coarse_step = COARSE_ANGLE_STEP_DEG * angle_step / ANGLE_STEP_DEG
        for ratio, shape, angle in itertools.product(ratios, shapes, _angles(coarse_step)):
            check_cancel(cancel)
            got = coarse.score(ratio, shape, angle)
            if got is not None:
                coarse_found.append((got[0], ratio, shape, angle))
        coarse_found.sort(key=lambda f: -f[0])
        tried: set[tuple[float, int, float]] = set()
        # the peak is narrow in scale (5 % off lowers it by a quarter): the survivors are
        # tried half a scale step either side too
        half = math.sqrt(SCALE_STEP)
        for _, ratio0, shape, angle in coarse_found[:SURVIVORS]:
            for da, r in itertools.product((-coarse_step / 2, 0.0, coarse_step / 2),
                                           (ratio0 / half, ratio0, ratio0 * half)):
                a = float((angle + da) % 360.0)
                if (round(r, 6), id(shape), a) in tried:
                    continue
                tried.add((round(r, 6), id(shape), a))
                check_cancel(cancel)
                got = fine.score(r, shape, a)
                if got is not None:
                    found.append((got[0], r, shape, a, got[1]))
    else:
        for ratio, shape, angle in itertools.product(ratios, shapes, _angles(angle_step)):
            check_cancel(cancel)
            got = fine.score(ratio, shape, angle)
            if got is not None:
                found.append((got[0], ratio, shape, angle, got[1]))
    found.sort(key=lambda f: -f[0])
    polished = [_polish(fine, f, angle_step / 2, cancel)
                for f in _distinct(found, fine.centre, side, max(top, POLISHED))]
    polished.sort(key=lambda f: -f[0])
    kept = [Pose(psr, ratio, shape.stretch, angle, affine, shape.tilt_stretch, shape.tilt_direction_deg)
            for psr, ratio, shape, angle, affine in _distinct(polished, fine.centre, side, top)]
    to_small = scale_centres(photo.shape[1::-1], (side, side))
    to_surr = scale_centres((side, side), surroundings.shape[1::-1])
    return [Pose(p.score, p.ratio, p.stretch, p.angle_deg, to_surr @ p.affine @ to_small,
                 p.tilt_stretch, p.tilt_direction_deg) for p in kept]


_Found = tuple[float, float, _Shape, float, np.ndarray]  # psr, ratio, shape, angle, affine


def _distinct(found: list[_Found], centre: np.ndarray, side: int, n: int) -> list[_Found]:
    """The first n of `found` (best first) that no better one lies close to."""
    kept: list[_Found] = []
    for f in found:
        at = f[4][:2, :2] @ centre + f[4][:2, 2]
        if any(np.linalg.norm(at - (k[4][:2, :2] @ centre + k[4][:2, 2])) < DISTINCT_PX * side
               and _angle_gap(f[3], k[3]) < DISTINCT_DEG for k in kept):
            continue
        kept.append(f)
        if len(kept) >= n:
            break
    return kept


def _polish(level: _Level, f: _Found, step_deg: float, cancel: Any) -> _Found:
    """Climb the peak-to-sidelobe ratio from a pose, in angle and scale, with halving steps:
    the peak is narrow (ISS062-E-24032's true pose scores 9 at its angle, 4.8 five degrees
    off), so a pose a grid step off would rank behind chance ones."""
    step_ratio = SCALE_STEP ** 0.25
    for _ in range(POLISH_ROUNDS):
        for _ in range(4):
            psr, ratio, shape, angle, _affine = f
            moves = ((ratio * step_ratio, angle), (ratio / step_ratio, angle),
                     (ratio, (angle + step_deg) % 360.0), (ratio, (angle - step_deg) % 360.0))
            best = f
            for r, a in moves:
                check_cancel(cancel)
                got = level.score(r, shape, a)
                if got is not None and got[0] > best[0]:
                    best = (got[0], r, shape, a, got[1])
            if best is f:
                break
            f = best
        step_deg /= 2
        step_ratio = math.sqrt(step_ratio)
    return f


def _angle_gap(a: float, b: float) -> float:
    d = abs(a - b) % 360.0
    return min(d, 360.0 - d)
