"""EarthMatch coregistration: iterative homography of a photo onto a candidate's surroundings.

The photo (resized to S x S, rotated by the retrieved angle) is matched against an S x S view
of the candidate's 3x3 surroundings (3S x 3S, north-up). Each iteration estimates a
homography, composes it with the previous ones and re-warps the surroundings so that the
predicted quadrilateral fills the view; after a few iterations the view and the photo are
nearly aligned, so the last inlier count says how well they agree. The published rejection
rules apply: no homography, a non-convex (or mirrored) quadrilateral, or one larger than the
surroundings.

Two additions for real astronaut photos (issue 13): both images are normalised (haze
stretched per channel) and the photo's keypoints keep off clouds, space and hardware
(`photometric`); and the loop starts from the windows of a scale-aware search
(`window_search`) instead of the central tile: from each better window as the scales are
scanned (hinted scales first, then the rest of the pyramid), stopping at the first accepted
result, and from the central tile when none is accepted. The loop ends early once a step
moves the view by a pixel or less (the next view would be the same). When none is accepted
and the hints say the photo is oblique (>= 25 deg off nadir), the search runs again on the
photo stretched by 1/cos(tilt) along a few directions (`tilt`, ASIFT), at the hinted scales.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from astroapp.matching import dense_refine, dense_search, tilt, window_search
from astroapp.matching.base import Features, Matcher, Matches
from astroapp.matching.cancel import check_cancel
from astroapp.matching.geometry import (
    CENTRE_TO_EDGE,
    EDGE_TO_CENTRE,
    apply_h,
    edge_corners,
    is_convex,
    quad_area,
    rot90_centres,
    scale_centres,
)
from astroapp.matching.imageio import resize_square
from astroapp.matching.photometric import keypoint_mask, normalise

if TYPE_CHECKING:
    from astroapp.geo.footprint import Footprint
    from astroapp.geo.tiles import MercatorGrid
    from astroapp.geo.viewing import ViewingHints

log = logging.getLogger(__name__)

DEFAULT_SIZE = 512
DEFAULT_ITERATIONS = 4
RANSAC_THRESHOLD_PX = 3.0
MIN_MATCHES = 8
MIN_FIRST_INLIERS = 12  # a loop (after a search) whose first step finds fewer is not pursued
CONVERGED_PX = 1.0  # a step that moves no corner of the view further than this ends the loop
DENSE_NAME = "dense-orientation"  # the dense stage's calibration (models/matchers/<name>.json)
DENSE_POSES = 5  # the dense search's best distinct poses refined, best first


class PreparedPhoto:
    """A photo resized to S x S with its features cached per rotation.

    Build it once per photo and pass it to `coregister` for every candidate: the photo's
    features are then computed once, not once per candidate and iteration.
    """

    def __init__(
        self,
        photo: np.ndarray,
        matcher: Matcher,
        size: int = DEFAULT_SIZE,
        frame_size: tuple[int, int] | None = None,
    ) -> None:
        """`frame_size` (w, h): the pixel frame results refer to when `photo` is a reduced
        decode of a larger file (results are then in the full file's pixels)."""
        if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8:
            raise ValueError(f"photo must be RGB uint8 (H, W, 3), got {photo.dtype} {photo.shape}")
        self.matcher = matcher
        self.size = int(size)
        decoded = (int(photo.shape[1]), int(photo.shape[0]))
        self.original_size = tuple(int(v) for v in frame_size) if frame_size else decoded
        square = resize_square(photo, self.size)
        # Keypoints stay off clouds, space and hardware; haze is stretched away.
        self.mask = keypoint_mask(square)
        self.square = normalise(square, self.mask, clahe=not _equalises(matcher))
        # original photo pixel centres -> square pixel centres
        self.to_square = scale_centres(self.original_size, (self.size, self.size))
        self._features: dict[int, Features] = {}
        self._scaled: dict[tuple[int, int], Features] = {}
        self._patches: dense_refine.PhotoPatches | None = None

    def patches(self) -> dense_refine.PhotoPatches:
        """The square's orientation field for the dense stage (computed once)."""
        if self._patches is None:
            # No cloud mask: it also takes what is bright and grey (frozen lakes, salt,
            # snow) and the outlines around it, which are what the dense stage matches
            # (ISS062-E-24032: 142 patch inliers with it, 170 without; wrong pairs alike).
            self._patches = dense_refine.PhotoPatches(self.square, None)
        return self._patches

    def rotation(self, k: int) -> np.ndarray:
        """Pixel-centre map from the original photo to the square rotated by -k quarter turns."""
        return rot90_centres(-k, (self.size, self.size)) @ self.to_square

    def image(self, k: int) -> np.ndarray:
        return np.ascontiguousarray(np.rot90(self.square, -k))

    def features(self, k: int) -> Features:
        k %= 4
        if k not in self._features:
            if k != 0 and self.matcher.rotation_invariant:
                # A quarter turn permutes pixels exactly: rotate the keypoints of k=0.
                base = self.features(0)
                rot = rot90_centres(-k, (self.size, self.size))
                pts = apply_h(rot, base.keypoints).astype(np.float32)
                self._features[k] = Features(pts, base.descriptors, base.image_size, base.extra)
            else:
                mask = np.ascontiguousarray(np.rot90(self.mask, -k))
                self._features[k] = _features_masked(self.matcher, self.image(k), mask)
        return self._features[k]

    def features_at(self, side: int, k: int) -> Features:
        """Features of the photo shrunk to side x side (rotated by -k quarter turns), in that
        small image's pixel centres: what the window search matches at coarse scales."""
        if side >= self.size:
            return self.features(k)
        key = (int(side), k % 4)
        if key not in self._scaled:
            small = resize_square(self.image(k), side)
            mask = resize_square(np.ascontiguousarray(np.rot90(self.mask, -k)), side)
            self._scaled[key] = _features_masked(self.matcher, small, mask)
        return self._scaled[key]

    def warped(self, affine: np.ndarray) -> PreparedPhoto:
        """This photo with its square mapped by `affine` (3x3, square pixel centres onto
        themselves, e.g. a tilt stretch): results still refer to the original photo's pixels."""
        out = object.__new__(PreparedPhoto)
        out.matcher, out.size, out.original_size = self.matcher, self.size, self.original_size
        dsize = (self.size, self.size)
        out.square = cv2.warpAffine(self.square, affine[:2], dsize, flags=cv2.INTER_LINEAR)
        # Off the warped square (black) and its edge: no keypoints.
        mask = cv2.warpAffine(self.mask, affine[:2], dsize, flags=cv2.INTER_NEAREST)
        out.mask = cv2.erode(mask, np.ones((5, 5), np.uint8))
        out.to_square = affine @ self.to_square
        out._features, out._scaled, out._patches = {}, {}, None
        return out


def _equalises(matcher: Matcher) -> bool:
    """Whether the matcher equalises contrast itself (SIFT's CLAHE): then ours is not added."""
    return bool(getattr(matcher, "clahe", False))


@dataclass
class CoregResult:
    """Outcome of one photo-candidate coregistration.

    Pixel coordinates are edge coordinates ((0, 0) = top-left corner of the image) of the
    original photo and of the surroundings image as given.
    """

    accepted: bool
    confidence: float
    inliers: int
    homography: np.ndarray | None  # 3x3, photo px -> surroundings px
    corners_px: np.ndarray | None  # (4, 2) TL, TR, BR, BL in surroundings px
    correspondences: np.ndarray  # (K, 4): photo x, y, surroundings x, y (final inliers)
    photo_size: tuple[int, int]
    surroundings_size: tuple[int, int]
    seconds: float
    angle: int | None = None  # rotation (0/90/180/270) of the kept attempt
    reason: str | None = None  # why the candidate was rejected (None when a footprint exists)
    iteration_inliers: list[int] = field(default_factory=list)
    grid: MercatorGrid | None = None
    matcher: str = ""
    threshold: int | None = None
    stage: str = "keypoints"  # "keypoints" (the matcher's) or "dense" (orientation fields)

    @property
    def has_footprint(self) -> bool:
        return self.homography is not None and self.grid is not None

    def photo_to_surroundings(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        if self.homography is None:
            raise ValueError(f"no homography: {self.reason}")
        pts = apply_h(self.homography, np.column_stack([np.ravel(x), np.ravel(y)]))
        return pts[:, 0].reshape(np.shape(x)), pts[:, 1].reshape(np.shape(y))

    def pixel_to_lonlat(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """Lon/lat of photo pixels (edge coordinates of the original photo), vectorised."""
        if self.grid is None:
            raise ValueError("the surroundings have no georeference (no MercatorGrid given)")
        sx, sy = self.photo_to_surroundings(x, y)
        return self.grid.pixel_to_lonlat(sx, sy)

    @property
    def footprint(self) -> Footprint | None:
        if not self.has_footprint:
            return None
        from astroapp.geo.footprint import Footprint

        corners = edge_corners(self.photo_size)
        lon, lat = self.pixel_to_lonlat(corners[:, 0], corners[:, 1])
        return Footprint(tuple((float(a), float(b)) for a, b in zip(lon, lat, strict=True)))

    def gcps(self, n: int = 5) -> list[tuple[float, float, float, float]]:
        """An n x n grid of ground control points (photo x, photo y, lon, lat) for export."""
        if n < 2:
            raise ValueError("a GCP grid needs n >= 2")
        w, h = self.photo_size
        xs, ys = np.meshgrid(np.linspace(0, w, n), np.linspace(0, h, n))
        lon, lat = self.pixel_to_lonlat(xs.ravel(), ys.ravel())
        return [
            (float(a), float(b), float(c), float(d))
            for a, b, c, d in zip(xs.ravel(), ys.ravel(), np.ravel(lon), np.ravel(lat), strict=True)
        ]

    def to_json(self) -> dict:
        """The `astroapp match --json` object (plus a few diagnostic fields)."""
        out: dict[str, Any] = {
            "accepted": bool(self.accepted),
            "confidence": round(float(self.confidence), 6),
            "inliers": int(self.inliers),
            "homography": None if self.homography is None else self.homography.tolist(),
            "corners_px": None if self.corners_px is None else self.corners_px.tolist(),
            "seconds": round(float(self.seconds), 4),
            "angle": self.angle,
            "reason": self.reason,
            "matcher": self.matcher,
            "threshold": self.threshold,
            "iteration_inliers": list(self.iteration_inliers),
            "stage": self.stage,
        }
        fp = self.footprint
        if fp is not None:
            out["footprint"] = fp.to_list()
        return out


@dataclass
class _Attempt:
    k: int
    inliers: int
    h_square: np.ndarray | None  # rotated square photo (centres) -> surroundings 3S (centres)
    pts_q: np.ndarray
    pts_s: np.ndarray
    reason: str | None
    iteration_inliers: list[int]
    photo: PreparedPhoto | None = None  # the (tilt-stretched) photo it matched; None: the photo


def _view_mask(h_surr_to_view: np.ndarray, surr_size: int, size: int) -> np.ndarray:
    """Where the view shows surroundings pixels (not the black border), eroded a little."""
    ones = np.full((surr_size, surr_size), 255, np.uint8)
    mask = cv2.warpPerspective(ones, h_surr_to_view, (size, size), flags=cv2.INTER_NEAREST)
    return cv2.erode(mask, np.ones((7, 7), np.uint8))


def _features_masked(matcher: Matcher, image: np.ndarray, mask: np.ndarray) -> Features:
    """Features inside `mask` when the matcher takes one; a TypeError from inside the matcher
    is its bug and propagates (it used to be retried without the mask, hiding it)."""
    if accepts_mask(matcher):
        return matcher.features(image, mask=mask)  # type: ignore[call-arg]
    return matcher.features(image)


def accepts_mask(matcher: Matcher) -> bool:
    """Whether `matcher.features` has a `mask` parameter (or takes **kwargs)."""
    import inspect

    try:
        params = inspect.signature(matcher.features).parameters
    except (TypeError, ValueError):  # builtins without a signature: call it the plain way
        return False
    return "mask" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def fit_homography(matches: Matches, max_iters: int = 2000) -> tuple[np.ndarray, np.ndarray] | None:
    """MAGSAC homography a -> b and its inlier mask (bool), or None when none is found."""
    h, inl = cv2.findHomography(matches.points_a, matches.points_b, cv2.USAC_MAGSAC,
                                RANSAC_THRESHOLD_PX, maxIters=max_iters, confidence=0.999)
    if h is None or inl is None or not np.all(np.isfinite(h)):
        return None
    return h, inl.ravel().astype(bool)


def _iterate(
    photo: PreparedPhoto, k: int, surr: np.ndarray, iterations: int, cancel: Any = None,
    start: np.ndarray | None = None, min_first: int = 0,
) -> _Attempt:
    """The iterative loop from `start` (view / photo square centres -> surroundings 3S
    centres; default the central tile). A first step with fewer than `min_first` inliers
    ends the attempt (the next views would follow a chance homography)."""
    size = photo.size
    feats_q = photo.features(k)
    # Start from the central tile: surroundings (3S) -> view is a shift by -S.
    h_total = np.array([[1, 0, size], [0, 1, size], [0, 0, 1]], dtype=np.float64)
    if start is not None:
        h_total = np.asarray(start, dtype=np.float64) / start[2, 2]
    quad_limit = float(surr.shape[0] * surr.shape[1])
    square = np.array(
        [[-0.5, -0.5], [size - 0.5, -0.5], [size - 0.5, size - 0.5], [-0.5, size - 0.5]]
    )
    per_iter: list[int] = []
    empty = np.zeros((0, 2), np.float32)
    if len(feats_q) < MIN_MATCHES:
        return _Attempt(k, 0, None, empty, empty, "too few features in the photo", per_iter)
    pts_q = pts_s = empty
    for _ in range(iterations):
        check_cancel(cancel)
        to_view = np.linalg.inv(h_total)
        view = cv2.warpPerspective(surr, to_view, (size, size), flags=cv2.INTER_LINEAR)
        mask = _view_mask(to_view, surr.shape[0], size)
        feats_v = _features_masked(photo.matcher, view, mask)
        matches = photo.matcher.match(feats_q, feats_v)
        if len(matches) < MIN_MATCHES:
            return _Attempt(k, 0, None, empty, empty, "too few matches", per_iter)
        fit = fit_homography(matches)
        if fit is None:
            return _Attempt(k, 0, None, empty, empty, "no homography found", per_iter)
        h, inl = fit
        per_iter.append(int(inl.sum()))
        if len(per_iter) == 1 and per_iter[0] < min_first:
            return _Attempt(k, per_iter[0], None, empty, empty, "too few inliers", per_iter)
        h_total = h_total @ h
        h_total /= h_total[2, 2]
        quad = apply_h(h_total, square)
        if not is_convex(quad):
            return _Attempt(k, int(inl.sum()), None, empty, empty, "non-convex quadrilateral", per_iter)
        area = quad_area(quad)
        if area <= 0:
            return _Attempt(k, int(inl.sum()), None, empty, empty, "mirrored quadrilateral", per_iter)
        if area > quad_limit:
            return _Attempt(k, int(inl.sum()), None, empty, empty, "quadrilateral larger than the surroundings", per_iter)
        pts_q = matches.points_a[inl]
        pts_s = apply_h(np.linalg.inv(to_view), matches.points_b[inl]).astype(np.float32)
        if np.abs(apply_h(h, square) - square).max() <= CONVERGED_PX:
            break  # the next view would be this one to within a pixel: nothing left to refine
    return _Attempt(k, per_iter[-1], h_total, pts_q, pts_s, None, per_iter)


def coregister(
    photo: np.ndarray | PreparedPhoto,
    surroundings_img: np.ndarray,
    grid: MercatorGrid | None = None,
    matcher: Matcher | None = None,
    angle: int | None = None,
    size: int = DEFAULT_SIZE,
    iterations: int = DEFAULT_ITERATIONS,
    calibration: Any | None = None,
    cancel: Any | None = None,
    hints: ViewingHints | None = None,
    surroundings_km: float | None = None,
    search: bool = True,
    dense: bool = False,
) -> CoregResult:
    """Coregister a photo against a candidate's 3x3 surroundings (north-up, RGB uint8).

    `angle` is the retrieved rotation (degrees counter-clockwise applied to the database
    image, so the photo is turned back by it); None tries all four and keeps the best
    (a single attempt for rotation-invariant matchers, where turning changes nothing).
    `grid` georeferences `surroundings_img`; without it the result has no footprint.
    `cancel` (a threading.Event) is polled before every iteration: CoregCancelled.
    `hints` (focal length, tilt, altitude) and the surroundings' ground width (from `grid`,
    else `surroundings_km`) set the scales the first step searches; without them it
    searches a pyramid of scales. `search=False` starts from the central tile only
    (EarthMatch's original loop), as do matchers without `match_subsets`.
    `dense=True`: when keypoints accept nothing, `coregister_dense` runs too and its result
    is returned when it is accepted (or when keypoints found no homography at all).
    """
    from astroapp.matching.calibration import calibration_for
    from astroapp.matching.registry import get_matcher

    t0 = time.perf_counter()
    if isinstance(photo, PreparedPhoto):
        prepared = photo
        if matcher is not None and matcher is not prepared.matcher:
            raise ValueError("the prepared photo was built with another matcher")
    else:
        prepared = PreparedPhoto(photo, matcher or get_matcher("sift"), size)
    matcher = prepared.matcher
    size = prepared.size
    if calibration is None:
        calibration = calibration_for(matcher)
    _check_surroundings(surroundings_img)
    surr_size = (int(surroundings_img.shape[1]), int(surroundings_img.shape[0]))
    side = 3 * size
    surr = normalise(resize_square(surroundings_img, side), clahe=not _equalises(matcher))
    surr_to_orig = scale_centres((side, side), surr_size)

    if angle is None:
        ks = [0] if matcher.rotation_invariant else [0, 1, 2, 3]
    else:
        if int(angle) % 90 != 0:
            raise ValueError(f"angle must be a multiple of 90 degrees, got {angle}")
        ks = [(int(angle) // 90) % 4]
    attempts: list[_Attempt] = []
    # The search matches against a hundred windows or more: only for matchers that match
    # many windows from one descriptor product (SIFT); a learned matcher pays per window.
    search = search and window_search.searchable(matcher)
    if search:
        ratios = _hinted_ratios(hints, grid, surroundings_km)
        surr_features = _SurroundingsFeatures(matcher, surr, size)

        def scan(photo: PreparedPhoto, scans: tuple[tuple[float, ...], ...]) -> bool:
            # The loop runs from each better window as the scales are scanned, coarse to
            # fine, and the scan stops at the first accepted one (True); a seed whose first
            # step finds fewer inliers than a seed has is not pursued (a chance window).
            for ratios_ in scans:
                for seed in window_search.seeds(
                        photo.features_at, surr_features, matcher, side, size, ratios_, ks,
                        fit_homography, cancel, native_side=max(surr_size)):
                    attempts.append(_iterate(photo, seed.k, surr, iterations, cancel,
                                             start=seed.homography,
                                             min_first=MIN_FIRST_INLIERS))
                    attempts[-1].photo = photo
                    if _accepted(attempts[-1], calibration):
                        return True
            return False

        # The hinted scales first; when they find nothing, the rest of the pyramid (a wrong
        # focal length, or a photo cropped to less than its lens shows, must not prevent a
        # match).
        scan(prepared, (ratios, window_search.other_ratios(ratios)))
    if not any(_accepted(a, calibration) for a in attempts):
        # EarthMatch's central start, for what the search missed; after a search, a start
        # whose first step finds less than a seed would is not pursued.
        first = MIN_FIRST_INLIERS if search else 0
        attempts += [_iterate(prepared, k, surr, iterations, cancel, min_first=first) for k in ks]
    if search and hints is not None and not any(_accepted(a, calibration) for a in attempts):
        # An oblique photo: its foreshortening undone along each direction in turn (ASIFT),
        # at the hinted scales only, until one is accepted.
        stretches = ((f, d) for f in tilt.stretch_factors(hints.tilt_deg)
                     for d in tilt.directions(f))
        for factor, direction in stretches:
            if scan(prepared.warped(tilt.stretch(size, direction, factor)), (ratios,)):
                break
    ok = [a for a in attempts if a.h_square is not None]
    best = max(ok or attempts, key=lambda a: a.inliers)
    result = _result(prepared, best, surr_to_orig, surr_size, calibration, grid, t0,
                     angle=best.k * 90 if (angle is not None or len(ks) > 1) else None)
    if dense and not result.accepted:
        fallback = coregister_dense(prepared, surroundings_img, grid, cancel=cancel, hints=hints,
                                    surroundings_km=surroundings_km)
        if fallback.accepted or (result.homography is None and fallback.homography is not None):
            fallback.seconds = time.perf_counter() - t0
            return fallback
    return result


def _result(prepared: PreparedPhoto, best: _Attempt, surr_to_orig: np.ndarray,
            surr_size: tuple[int, int], calibration: Any, grid: MercatorGrid | None,
            t0: float, angle: int | None, stage: str = "keypoints") -> CoregResult:
    """The kept attempt as a CoregResult in the original photo's and surroundings' pixels."""
    homography = corners = None
    corr = np.zeros((0, 4), np.float64)
    if best.h_square is not None:
        # original photo (edges) -> centres -> rotated square -> 3S surroundings -> original
        src = best.photo or prepared
        h = CENTRE_TO_EDGE @ surr_to_orig @ best.h_square @ src.rotation(best.k) @ EDGE_TO_CENTRE
        homography = h / h[2, 2]
        corners = apply_h(homography, edge_corners(prepared.original_size))
        back = CENTRE_TO_EDGE @ np.linalg.inv(src.rotation(best.k))
        pq = apply_h(back, best.pts_q)
        ps = apply_h(CENTRE_TO_EDGE @ surr_to_orig, best.pts_s)
        corr = np.hstack([pq, ps])
    confidence = float(calibration.probability(best.inliers)) if homography is not None else 0.0
    accepted = homography is not None and best.inliers >= calibration.threshold
    return CoregResult(
        accepted=bool(accepted),
        confidence=confidence,
        inliers=int(best.inliers) if homography is not None else 0,
        homography=homography,
        corners_px=corners,
        correspondences=corr,
        photo_size=prepared.original_size,
        surroundings_size=surr_size,
        seconds=time.perf_counter() - t0,
        angle=angle,
        reason=best.reason,
        iteration_inliers=best.iteration_inliers,
        grid=grid,
        matcher=prepared.matcher.name if stage == "keypoints" else DENSE_NAME,
        threshold=int(calibration.threshold),
        stage=stage,
    )


def coregister_dense(
    photo: PreparedPhoto,
    surroundings_img: np.ndarray,
    grid: MercatorGrid | None = None,
    calibration: Any | None = None,
    cancel: Any | None = None,
    hints: ViewingHints | None = None,
    surroundings_km: float | None = None,
    poses: int = DENSE_POSES,
) -> CoregResult:
    """Coregister by orientation fields (`dense_search`, `dense_refine`), for the photos
    keypoints cannot match: frozen or flooded water, haze, seasons, low detail. Slower than
    `coregister` (~5-10 s a candidate), so the pipeline runs it only after keypoints have
    failed on every candidate, on the best few. Any rotation is searched (`angle` is not
    needed); its inlier counts have their own calibration (`dense-orientation`)."""
    t0 = time.perf_counter()
    if calibration is None:
        calibration = dense_calibration()
    _check_surroundings(surroundings_img)
    size = photo.size
    surr_size = (int(surroundings_img.shape[1]), int(surroundings_img.shape[0]))
    side = 3 * size
    surr = resize_square(surroundings_img, side)
    surr_to_orig = scale_centres((side, side), surr_size)
    hinted = _hinted_ratios(hints, grid, surroundings_km)
    ratios = dense_search.ratios_between(min(hinted), max(hinted))
    w, h = photo.original_size
    # an oblique photo: its foreshortening along ASIFT's directions too (tilt.py)
    found = dense_search.search_poses(photo.square, surr, ratios, dense_search.stretches(w / h),
                                      top=poses, cancel=cancel, base_aspect=w / h,
                                      tilt_deg=hints.tilt_deg if hints is not None else None)
    patches = photo.patches()
    empty = np.zeros((0, 2), np.float32)
    attempts = [_Attempt(0, 0, None, empty, empty, "no pose found", [])]
    for pose in found:
        fit = dense_refine.refine(patches, surr, pose.affine, cancel=cancel)
        attempts.append(_Attempt(0, fit.inliers, fit.homography, fit.pts_photo, fit.pts_surr,
                                 fit.reason, fit.iteration_inliers))
        if _accepted(attempts[-1], calibration):
            break
    ok = [a for a in attempts if a.h_square is not None]
    best = max(ok or attempts, key=lambda a: a.inliers)
    return _result(photo, best, surr_to_orig, surr_size, calibration, grid, t0, angle=None,
                   stage="dense")


def dense_settings() -> dict[str, Any]:
    """What the dense stage's inlier counts depend on (kept with its calibration)."""
    return {"size": DEFAULT_SIZE, "patch": dense_refine.PATCH, "step": dense_refine.STEP,
            "radii": list(dense_refine.RADII), "min_peak": dense_refine.MIN_PEAK,
            "min_distinct": dense_refine.MIN_DISTINCT, "sigma": dense_refine.SIGMA,
            "search_side": dense_search.SEARCH_SIDE, "coarse_side": dense_search.COARSE_SIDE,
            "coarse_angle_step": dense_search.COARSE_ANGLE_STEP_DEG,
            "survivors": dense_search.SURVIVORS, "scale_step": dense_search.SCALE_STEP,
            "polished": dense_search.POLISHED, "poses": DENSE_POSES, "cloud_mask": False}


def dense_calibration() -> Any:
    """The dense stage's calibration (`dense-orientation`), see `astroapp calibrate --dense`."""
    from astroapp.matching.calibration import calibration_named

    return calibration_named(DENSE_NAME, dense_settings())


def _check_surroundings(surroundings_img: np.ndarray) -> None:
    if surroundings_img.ndim != 3 or surroundings_img.shape[2] != 3 or surroundings_img.dtype != np.uint8:
        raise ValueError(
            f"surroundings must be RGB uint8 (H, W, 3), got {surroundings_img.dtype} {surroundings_img.shape}"
        )


def _hinted_ratios(hints: ViewingHints | None, grid: MercatorGrid | None,
                   surroundings_km: float | None) -> tuple[float, ...]:
    """The scale ratios the viewing hints and the surroundings' width point to (both stages)."""
    return window_search.ratios_for(
        hints.ground_width_km() if hints is not None else None,
        _ground_width_km(grid) if grid is not None else surroundings_km)


def _accepted(attempt: _Attempt, calibration: Any) -> bool:
    return attempt.h_square is not None and attempt.inliers >= calibration.threshold


class _SurroundingsFeatures:
    """Features of the 3S surroundings shrunk to a given side (cached per side), computed
    tile by tile and off black (no-data) areas."""

    def __init__(self, matcher: Matcher, surr: np.ndarray, tile: int) -> None:
        self.matcher, self.surr, self.tile = matcher, surr, tile
        self._cache: dict[int, Features] = {}

    def _features(self, img: np.ndarray) -> Features:
        mask = np.where(img.max(axis=2) > 0, 255, 0).astype(np.uint8)
        return _features_masked(self.matcher, img, mask)

    def __call__(self, side: int) -> Features:
        if side not in self._cache:
            img = resize_square(self.surr, side)
            # Tiles of half the side (at least S): the matcher's feature cap then keeps
            # each tile's strongest features, dense enough for windows of any size.
            tile = max(self.tile, (side + 1) // 2)
            self._cache[side] = window_search.tiled_features(img, tile, self._features)
        return self._cache[side]


def _ground_width_km(grid: MercatorGrid) -> float:
    """Ground width of a north-up Mercator grid at its centre latitude (Web Mercator's
    scale factor is 1 / cos(latitude))."""
    lon, lat = grid.pixel_to_lonlat(np.array([grid.width / 2]), np.array([grid.height / 2]))
    xmin, _, xmax, _ = grid.bounds_3857
    return float((xmax - xmin) * np.cos(np.radians(float(lat[0]))) / 1000.0)
