"""Scale-aware first step of coregistration: find the photo in windows of its surroundings.

EarthMatch's loop starts from the central tile of the 3x3 surroundings, which works when the
photo's footprint is about that tile. Real photos often cover a third to a tenth of the
surroundings' width, anywhere in them: seen whole at 512 px the photo is then a few dozen
pixels of the view, and a global ratio test drowns in look-alike texture. So the photo is
looked for at the scale it should have, in overlapping windows (side `WINDOW_FACTOR` times the
expected footprint, half a window apart), with the ratio test local to each window. The
surroundings' features are computed once (tile by tile, so a feature cap per image does not
thin them out); the photo's once per scale, at about the size its footprint has in the
surroundings (fine detail the surroundings cannot show only adds wrong matches). Windows
overlap, so each window's best and second-best match per photo feature is merged from the
cells their edges cut (`window_cells`): one pass over the similarities per scale. After each
scale the window whose homography has most inliers so far seeds the iterative loop.

The expected footprint comes from the viewing hints (focal length, tilt, altitude ->
ground width of the frame) and the surroundings' ground width (from their georeference, or
given); with either unknown, a small pyramid of scales is searched, and when the hinted
scales find nothing, the rest of the pyramid (`other_ratios`). A search matches the photo
against a hundred windows or more, so it runs only for matchers that match many windows from
one descriptor product (`match_subsets`, SIFT's); the others keep EarthMatch's central start.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from astroapp.matching.base import Features, Matcher, Matches
from astroapp.matching.cancel import check_cancel
from astroapp.matching.geometry import apply_h, is_convex, quad_area, scale_centres

log = logging.getLogger(__name__)

WINDOW_FACTOR = 1.75  # window side / expected footprint side
DEFAULT_RATIOS = (1.6, 2.6, 4.2, 6.8, 11.0)  # surroundings width / photo width, factor ~1.6
RATIO_STEP = 1.6
MAX_RATIO = 16.0  # a footprint smaller than this is a few pixels of the surroundings
HINT_MARGIN = 1.35  # widen the hinted ratio range by this factor each way
MIN_PHOTO_SIDE = 160  # px: below this a photo has too few features to seed anything
SEARCH_SIDE = 256  # px: the photo's side at the coarse scales of the search
MAX_SEARCH_SURROUNDINGS = 1024  # px: the surroundings' side at most, for the search
# A window this good seeds a loop, whose first step at full size verifies it cheaply (see
# coregister.MIN_FIRST_INLIERS): small footprints (scale ratio ~10) reach 8-10 in their
# window, wrong pairs' best windows ~6 by chance (real cross pairs).
MIN_SEED_INLIERS = 8
CLEAR_SEED_INLIERS = 24  # a seed this good, and twice what a finer scale finds: scan no further
STRONG_SEED_INLIERS = 40  # stop scanning finer scales after a window this good
MIN_MATCHES = 8


@dataclass
class Seed:
    """The best window's homography: rotated photo square (side S, centres) -> surroundings
    (3S, centres)."""

    homography: np.ndarray
    inliers: int
    ratio: float
    window: tuple[float, float, float]  # x0, y0, side in surroundings px
    k: int = 0


def searchable(matcher: Matcher) -> bool:
    """Whether the matcher matches many windows from one descriptor product (cheaply)."""
    return callable(getattr(matcher, "match_subsets", None))


def ratios_for(footprint_km: tuple[float, float] | None,
               surroundings_km: float | None) -> tuple[float, ...]:
    """Scale ratios (surroundings width / photo width) to search, coarse to fine."""
    if footprint_km is None or not surroundings_km or surroundings_km <= 0:
        return DEFAULT_RATIOS
    lo = surroundings_km / footprint_km[1] / HINT_MARGIN
    hi = surroundings_km / footprint_km[0] * HINT_MARGIN
    if hi < 1.0 or lo > MAX_RATIO:
        # The hints put the photo outside what these surroundings can show (a wrong focal
        # length, or imagery whose scale is not the ground's, as the bundled world's renders
        # with their focal scaling): they say nothing here, search the whole pyramid.
        return DEFAULT_RATIOS
    lo, hi = max(lo, 1.0), min(hi, MAX_RATIO)
    n = max(1, math.ceil(math.log(hi / lo) / math.log(RATIO_STEP)) + 1)
    return tuple(float(r) for r in np.geomspace(lo, hi, n)) if n > 1 else (float(lo),)


def other_ratios(ratios: tuple[float, ...]) -> tuple[float, ...]:
    """The pyramid's ratios that `ratios` (a hinted range) leaves out: those more than half
    a pyramid step from every searched one, coarse to fine."""
    half = math.log(RATIO_STEP) / 2
    return tuple(r for r in DEFAULT_RATIOS
                 if all(abs(math.log(r / h)) > half for h in ratios))


def windows(side: int, ratio: float) -> list[tuple[float, float, float]]:
    """Overlapping square windows (x0, y0, w) over a side x side image for a photo whose
    footprint is side / ratio wide: w = WINDOW_FACTOR footprints, half a window apart."""
    w = min(float(side), WINDOW_FACTOR * side / ratio)
    n = 1 if w >= side else math.ceil((side - w) / (w / 2)) + 1
    starts = np.linspace(0.0, side - w, n)
    return [(float(x), float(y), w) for y in starts for x in starts]


def tiled_features(image: np.ndarray, tile: int, features_fn: Any) -> Features:
    """Features of a large image computed tile by tile (tile x tile, 32 px of overlap for
    the detector's border), merged in the image's coordinates."""
    h, w = image.shape[:2]
    pad = 32
    pts, descs = [], []
    extras: dict[str, list] = {}
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            ya, xa = max(0, y0 - pad), max(0, x0 - pad)
            yb, xb = min(h, y0 + tile + pad), min(w, x0 + tile + pad)
            f = features_fn(np.ascontiguousarray(image[ya:yb, xa:xb]))
            if len(f) == 0:
                continue
            p = f.keypoints + np.array([xa, ya], np.float32)
            own = ((p[:, 0] >= x0) & (p[:, 0] < x0 + tile) & (p[:, 1] >= y0)
                   & (p[:, 1] < y0 + tile))
            pts.append(p[own])
            descs.append(f.descriptors[own])
            for k, v in f.extra.items():
                if isinstance(v, np.ndarray) and v.shape[:1] == (len(f),):
                    extras.setdefault(k, []).append(v[own])
    if not pts:
        return Features(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32), (w, h))
    extra = {k: np.concatenate(v) for k, v in extras.items() if len(v) == len(pts)}
    return Features(np.concatenate(pts).astype(np.float32), np.concatenate(descs), (w, h), extra)


def seeds(
    photo_features: Any,
    surr_features: Any,
    matcher: Matcher,
    surr_side: int,
    size: int,
    ratios: tuple[float, ...],
    ks: list[int],
    fit: Any,
    cancel: Any = None,
    native_side: int | None = None,
) -> Iterator[Seed]:
    """After each ratio (coarse to fine, over rotations `ks`), the window whose homography
    has most inliers so far, when that scale improved it and it reaches MIN_SEED_INLIERS.

    The caller runs the iterative loop from each seed as it comes and stops iterating once
    one is accepted: a photo found at a coarse scale does not pay for the finer ones.

    At each ratio the photo is shrunk to about its footprint's size in the surroundings (at
    most SEARCH_SIDE px) and the surroundings by as much as keeps that footprint, so the
    search costs little at every scale. `photo_features(side, k)` gives the photo's features
    at side x side (rotated by -k quarter turns), `surr_features(side)` the surroundings'
    at side x side; `fit(matches, max_iters=...)` a homography and its inlier mask.
    `native_side`: the surroundings' own resolution (features are never computed on more
    pixels than the surroundings have).
    """
    best: Seed | None = None
    for ratio in ratios:
        ratio_best = 0
        before = best
        full = min(surr_side, native_side or surr_side, MAX_SEARCH_SURROUNDINGS)
        side = int(np.clip(round(full / ratio), MIN_PHOTO_SIDE, SEARCH_SIDE))
        # Two resolutions of the surroundings: full, or half when the footprint stays at
        # least 3/4 of the photo's side there (SIFT bridges such scale gaps).
        s_side = full // 2 if full / (2 * ratio) >= 0.75 * side else full
        fs = surr_features(s_side)
        limit = float(s_side) ** 2
        from_square = scale_centres((size, size), (side, side))
        to_surr = scale_centres((s_side, s_side), (surr_side, surr_side))
        square = np.array([[-0.5, -0.5], [side - 0.5, -0.5], [side - 0.5, side - 0.5],
                           [-0.5, side - 0.5]])
        for k in ks:
            fq = photo_features(side, k)
            if len(fq) < MIN_MATCHES:
                continue
            check_cancel(cancel)
            wins = windows(s_side, ratio)
            for (x0, y0, w), matches in zip(wins, _match_windows(matcher, fq, fs, wins),
                                            strict=True):
                if len(matches) < MIN_MATCHES:
                    continue
                got = fit(matches, max_iters=500)
                if got is None:
                    continue
                h, inl = got
                n = int(inl.sum())
                ratio_best = max(ratio_best, n)
                if n < MIN_SEED_INLIERS or (best is not None and n <= best.inliers):
                    continue
                quad = apply_h(h, square)
                area = quad_area(quad) if is_convex(quad) else -1.0
                if not 0 < area <= limit:
                    continue
                scale = surr_side / s_side
                best = Seed(to_surr @ h @ from_square, n, float(ratio),
                            (x0 * scale, y0 * scale, w * scale), k)
        log.debug("window search: ratio %.2f, photo %d px, surroundings %d px, %d windows, "
                  "most inliers %d", ratio, side, s_side, len(windows(s_side, ratio)), ratio_best)
        if best is not None and best is not before:
            yield best
        if best is not None and (best.inliers >= STRONG_SEED_INLIERS or (
                best.ratio < ratio and ratio_best * 2 < best.inliers >= CLEAR_SEED_INLIERS)):
            break  # a sure window, or past the scale where the photo showed (less than half)


def window_cells(kp: np.ndarray, wins: list[tuple[float, float, float]]
                 ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The grid cut by every window's edges: each cell's keypoint indices, and each window's
    cells (a window is exactly the union of its cells: the same test, x0 <= x < x0 + w, in
    the keypoints' float32)."""
    def cuts(vals: set[float]) -> np.ndarray:
        return np.unique(np.array(sorted(vals), np.float32))

    cx = cuts({v for x0, _, w in wins for v in (x0, x0 + w)})
    cy = cuts({v for _, y0, w in wins for v in (y0, y0 + w)})
    ix = np.searchsorted(cx, kp[:, 0].astype(np.float32), side="right") - 1
    iy = np.searchsorted(cy, kp[:, 1].astype(np.float32), side="right") - 1
    nx, ny = len(cx) - 1, len(cy) - 1
    inside = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
    cell_of = np.where(inside, iy * nx + ix, -1)
    order = np.argsort(cell_of, kind="stable")
    bounds = np.searchsorted(cell_of[order], np.arange(nx * ny + 1))
    cells = [order[bounds[c]:bounds[c + 1]] for c in range(nx * ny)]
    groups = []
    for x0, y0, w in wins:
        xa, xb = np.searchsorted(cx, np.float32([x0, x0 + w]))
        ya, yb = np.searchsorted(cy, np.float32([y0, y0 + w]))
        groups.append((np.arange(ya, yb)[:, None] * nx + np.arange(xa, xb)[None, :]).ravel())
    return cells, groups


def _match_windows(matcher: Matcher, fq: Features, fs: Features,
                   wins: list[tuple[float, float, float]]) -> list[Matches]:
    """Matches of the photo against each window's features, from one descriptor product
    (per cell of the windows' grid when the matcher can merge cells, SIFT's)."""
    kp = fs.keypoints
    if callable(getattr(matcher, "match_cells", None)):
        cells, groups = window_cells(kp, wins)
        return matcher.match_cells(fq, fs, cells, groups)  # type: ignore[attr-defined]
    members = [np.flatnonzero((kp[:, 0] >= x0) & (kp[:, 0] < x0 + w) & (kp[:, 1] >= y0)
                              & (kp[:, 1] < y0 + w)) for x0, y0, w in wins]
    return matcher.match_subsets(fq, fs, members)  # type: ignore[attr-defined]
