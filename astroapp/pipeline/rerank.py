"""Geometric re-ranking: verify a retrieval shortlist with local features, best first.

A global descriptor ranks a photo's true tiles high but seldom first (the bundled model puts
a correct tile in its top 100 for ~96 % of held-out photos, first for ~17 %). One SIFT match
and homography against each shortlisted tile, at a small size, tells a real overlap (tens
of geometrically consistent matches) from a look-alike (a handful), as hloc and VPR
re-rankers do. Candidates are reordered by inlier count; those below `min_inliers` keep
their retrieval order after the verified ones. Tiles are verified in retrieval order, and a
tile with `stop_inliers` ends the verification early (the common case once retrieval is
good, e.g. with the NASA nadir prior). Coregistration then tries far fewer wrong candidates.

    reranker = Reranker()                                  # SIFT, 256 px, shortlist 100
    cands = reranker.rerank(photo_rgb, cands, read_tile)   # read_tile(cand) -> RGB tile
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import cv2
import numpy as np

from astroapp.index.tile_index import MAX_SCALE_GAP
from astroapp.lru import LRUCache
from astroapp.matching.base import Features, Matcher
from astroapp.matching.coregister import MIN_MATCHES, fit_homography
from astroapp.matching.geometry import apply_h, edge_corners, is_convex, quad_area
from astroapp.matching.imageio import resize_square
from astroapp.pipeline.tiles import SourceCache, candidate_tile

log = logging.getLogger(__name__)

DEFAULT_SHORTLIST = 100
DEFAULT_SIZE = 256
MIN_INLIERS = 8  # below this a tile counts as unverified (chosen on training places)
STOP_INLIERS = 40  # verification stops at a tile this sure (wrong tiles: <= 13 on renders)
VERIFY_ALL = 250  # a search area with at most this many tiles is verified in full
MAX_SCALE = 4.0   # verification enlarges the finer image by at most this factor


@dataclasses.dataclass(frozen=True)
class Verification:
    inliers: int
    angle: int | None  # CCW multiple of 90 degrees turning the north-up tile like the photo


def homography_angle(h: np.ndarray, size: int) -> int:
    """The CCW multiple of 90 degrees that best turns the tile like the photo, read from the
    photo -> tile homography (the direction the photo's "up" takes in the tile)."""
    c = np.array([[size / 2, size / 2], [size / 2, size / 2 - 1.0]])
    (x0, y0), (x1, y1) = apply_h(h, c)
    # photo "up" seen in the tile; image y grows downwards
    up = math.degrees(math.atan2(x1 - x0, -(y1 - y0)))  # clockwise from tile-up
    return int(round(up / 90.0)) % 4 * 90


def verify(matcher: Matcher, photo: Features, tile: Features, size: int,
           fit_fn: Callable[..., Any] = fit_homography) -> Verification:
    """Inliers of the best photo -> tile homography (0 when none, or when it folds or
    mirrors the photo), and the tile rotation it implies. `fit_fn`: OpenCV's MAGSAC, or
    kornia's RANSAC on a GPU (matching.kornia_ransac.homography_fitter)."""
    matches = matcher.match(photo, tile)
    if len(matches) < MIN_MATCHES:
        return Verification(0, None)
    fit = fit_fn(matches, max_iters=1000)
    if fit is None:
        return Verification(0, None)
    h, inl = fit
    quad = apply_h(h, edge_corners((size, size)))
    if not is_convex(quad) or quad_area(quad) <= 0:
        return Verification(0, None)
    return Verification(int(inl.sum()), homography_angle(h, size))


def verified_order(inliers: Sequence[int], min_inliers: int = MIN_INLIERS) -> np.ndarray:
    """Indices: verified entries by inliers (most first), then the rest in their given order."""
    key = np.array([n if n >= min_inliers else 0 for n in inliers])
    return np.lexsort((np.arange(len(key)), -key))


def tile_reader(sources: Any, size: int) -> Callable[..., np.ndarray]:
    """`read_tile` for a tile index's candidates: the tile from its source, north-up, size x size
    (`read_tile(cand, side)` reads it at another side).

    `sources`: the index's `SourceCache` (or the index itself, whose sources are then opened)."""
    if not isinstance(sources, SourceCache):
        sources = SourceCache(sources)
    return lambda cand, side=size: candidate_tile(sources.get(cand.source_id), cand, side)


def tile_width_km(cand: Any) -> float | None:
    """Ground width of a candidate tile (km, along its top and bottom edges, averaged)."""
    fp = cand.footprint
    c = np.asarray(fp.corners if hasattr(fp, "corners") else fp, dtype=np.float64)
    if c.shape != (4, 2):
        return None
    from astroapp.index.region import haversine_km

    top = float(haversine_km(c[0, 0], c[0, 1], c[1:2, 0], c[1:2, 1])[0])
    bottom = float(haversine_km(c[3, 0], c[3, 1], c[2:3, 0], c[2:3, 1])[0])
    return (top + bottom) / 2 or None


def scale_sides(size: int, photo_km: float | None, tile_km: float | None) -> tuple[int, int]:
    """(photo side, tile side) in px that put a photo `photo_km` wide and a tile `tile_km`
    wide at about the same ground resolution: the finer one is enlarged (up to MAX_SCALE
    times `size`, in half-`size` steps so features are shared), never shrunk below `size`;
    unchanged when the two are more than MAX_SCALE_GAP apart (a hint that does not fit)."""
    if not photo_km or not tile_km:
        return size, size
    r = photo_km / tile_km
    if not 1.0 / MAX_SCALE_GAP <= r <= MAX_SCALE_GAP:
        return size, size  # the hint does not fit the tiles (see tile_index.MAX_SCALE_GAP)

    def side(f: float) -> int:
        f = min(max(f, 1.0), MAX_SCALE)
        return int(round(2 * f)) * size // 2

    return side(r), side(1.0 / r)


class Reranker:
    """Re-ranks candidate tiles of photos; tile features are cached (tiles recur across a
    roll), so a batch of photos over one area verifies quickly."""

    def __init__(self, matcher: Matcher | None = None, size: int = DEFAULT_SIZE,
                 shortlist: int = DEFAULT_SHORTLIST, min_inliers: int = MIN_INLIERS,
                 stop_inliers: int | None = STOP_INLIERS, cache_tiles: int = 512,
                 ransac: str = "opencv") -> None:
        from astroapp.matching.kornia_ransac import homography_fitter

        self.ransac, self._fit = ransac, homography_fitter(ransac)  # "kornia": on the GPU
        if matcher is None:
            from astroapp.matching.registry import get_matcher

            matcher = get_matcher("sift", calibrated=False)
        if shortlist < 1:
            raise ValueError(f"the re-ranking shortlist must hold at least 1 tile, got {shortlist}")
        if size < 64:
            raise ValueError(f"re-ranking needs tiles of at least 64 px, got {size}")
        self.matcher = matcher
        self.size = int(size)
        self.shortlist = int(shortlist)
        self.min_inliers = int(min_inliers)
        self.stop_inliers = int(stop_inliers) if stop_inliers else None
        self._cache: LRUCache[Hashable, Features] = LRUCache(max(1, cache_tiles))

    def settings(self) -> dict[str, Any]:
        return {"matcher": self.matcher.name, "size": self.size, "shortlist": self.shortlist,
                "min_inliers": self.min_inliers, "stop_inliers": self.stop_inliers}

    def features(self, image: np.ndarray, side: int | None = None) -> Features:
        side = side or self.size
        return self.matcher.features(resize_square(image, side, upscale=cv2.INTER_CUBIC))

    def tile_features(self, key: Hashable, load: Callable[[], np.ndarray]) -> Features:
        return self._cache.get_or_make(key, lambda: self.features(load()))

    def budget(self, n_tiles: int) -> int:
        """How many tiles to verify when the search area holds `n_tiles`: all of them when
        they are few (`VERIFY_ALL`), else the shortlist."""
        return max(self.shortlist, n_tiles) if n_tiles <= VERIFY_ALL else self.shortlist

    def verify_all(self, photo: Features | Callable[[int], tuple[Features, int]],
                   keys: Sequence[Hashable], load: Callable[[int], np.ndarray],
                   cancel: Any = None) -> list[Verification | None]:
        """Verify tiles in the given order (`load(i)`: tile i's RGB image, when not cached).

        `photo`: the photo's features, or `photo(i)` -> (features, side) for tile i (the photo
        at the scale of that tile). None for tiles left unverified: after a cancel, or once a
        tile reached `stop_inliers` (a sure match: the rest cannot beat it in practice). An
        unreadable tile verifies as 0.
        """
        out: list[Verification | None] = [None] * len(keys)
        for i, key in enumerate(keys):
            if cancel is not None and cancel.is_set():
                break
            try:
                tile = self.tile_features(key, lambda i=i: load(i))
            except Exception as exc:  # noqa: BLE001 - an unreadable tile stays unverified
                log.warning("re-ranking: tile %s unavailable: %s", key, exc)
                out[i] = Verification(0, None)
                continue
            feats, side = photo(i) if callable(photo) else (photo, self.size)
            out[i] = v = verify(self.matcher, feats, tile, side, self._fit)
            if self.stop_inliers and v.inliers >= self.stop_inliers:
                break
        return out

    def rerank(self, photo: np.ndarray | Features, candidates: Sequence[Any],
               read_tile: Callable[..., np.ndarray], cancel: Any = None, *,
               photo_width_km: float | None = None, budget: int | None = None) -> list[Any]:
        """The candidates (index `Candidate`s) of one photo, verified ones first, ranks
        renumbered; a verified candidate's angle comes from its homography. Only the first
        `budget` (default: `shortlist`) are verified (`Candidate.inliers` None for the others).

        With `photo_width_km` (the photo's expected ground width) and the photo as an image,
        each tile is verified at the photo's scale (`scale_sides`): a photo 5x finer than a
        block is matched against the block enlarged, not against 256 px of it;
        `read_tile(cand, side)` then reads the tile at that side."""
        head = list(candidates[: budget or self.shortlist])
        keys: list[Hashable] = [(c.source_id, c.tile_id) for c in head]
        if isinstance(photo, Features) or not photo_width_km:
            feats = photo if isinstance(photo, Features) else self.features(photo)
            results = self.verify_all(feats, keys, lambda i: read_tile(head[i]), cancel)
        else:
            sides = [scale_sides(self.size, photo_width_km, tile_width_km(c)) for c in head]
            keys = [(*key, ts) for key, (_ps, ts) in zip(keys, sides, strict=True)]
            photo_feats: dict[int, Features] = {}

            def photo_at(i: int) -> tuple[Features, int]:
                ps = sides[i][0]
                if ps not in photo_feats:
                    photo_feats[ps] = self.features(photo, ps)
                return photo_feats[ps], ps

            def load(i: int) -> np.ndarray:
                ts = sides[i][1]
                return read_tile(head[i]) if ts == self.size else read_tile(head[i], ts)

            results = self.verify_all(photo_at, keys, load, cancel)
        results += [None] * (len(candidates) - len(head))
        order = verified_order([v.inliers if v else 0 for v in results], self.min_inliers)
        out = []
        for rank, i in enumerate(order, start=1):
            cand, v = candidates[i], results[i]
            verified = v is not None and v.inliers >= self.min_inliers and v.angle is not None
            out.append(dataclasses.replace(cand, rank=rank, angle=v.angle if verified else cand.angle,
                                           inliers=v.inliers if v is not None else None))
        return out
