"""Pictures the review view shows, computed without Qt: the satellite view of a localization,
its georeference, and where the photo's pixels land on it.

A footprint's four corners fix the photo -> Web Mercator homography exactly (the pipeline's
photo -> surroundings homography composed with the surroundings' affine georeference), so
the review can redraw any localization from what the catalogue stores, at any extent.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import cv2
import numpy as np

from astroapp.catalog.photo_reader import PhotoReadError, read_photo
from astroapp.geo.footprint import lons_near, unwrap_lons
from astroapp.geo.sources.bluemarble import plate_carree
from astroapp.geo.tiles import WORLD, MercatorGrid, lonlat_to_mercator, mercator_to_lonlat
from astroapp.matching.geometry import apply_h

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=8)
def _open_source(source_id: str):
    from astroapp.geo.sources import open_source

    return open_source(source_id)


world_rgb = functools.lru_cache(maxsize=1)(plate_carree)  # the Blue Marble, decoded once per app


def read_blue_marble(bounds, width: int, height: int) -> np.ndarray:
    """The bundled world (plate carree) resampled onto a Mercator box, longitudes wrapped."""
    world = world_rgb()
    h, w = world.shape[:2]
    xmin, ymin, xmax, ymax = bounds
    xs = xmin + (np.arange(width) + 0.5) * (xmax - xmin) / width
    ys = ymax - (np.arange(height) + 0.5) * (ymax - ymin) / height
    # Mercator is separable: longitude depends on x only, latitude on y only
    lon, _ = mercator_to_lonlat(xs, np.zeros_like(xs))
    _, lat = mercator_to_lonlat(np.zeros_like(ys), ys)
    px1 = ((np.asarray(lon) + 180.0) / 360.0 * w - 0.5).astype(np.float32)
    py1 = ((90.0 - np.asarray(lat)) / 180.0 * h - 0.5).astype(np.float32)
    px, py = np.meshgrid(px1, py1)
    return cv2.remap(world, px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)


def read_satellite(source_id: str | None, bounds, width: int, height: int) -> tuple[np.ndarray, str]:
    """RGB view of a Mercator box from the localization's tile source, else the bundled world.

    Returns the image and the name of what it came from (shown to the reviewer).
    """
    if source_id:
        try:
            src = _open_source(source_id)
            return np.ascontiguousarray(src.read_mercator(bounds, width, height)), source_id
        except Exception as exc:  # noqa: BLE001 - a missing source still gets a view
            log.info("tile source %r unavailable (%s): showing the bundled world", source_id, exc)
    return read_blue_marble(bounds, width, height), "bundled Blue Marble"


def mercator_corners(corners) -> np.ndarray:
    """(K, 2) Mercator metres of lon/lat corners, x continuous across the antimeridian (the
    box around a footprint there extends past +-WORLD; sources wrap it)."""
    pts = np.array(corners, dtype=np.float64).reshape(-1, 2)
    mx, my = lonlat_to_mercator(pts[:, 0], np.clip(pts[:, 1], -85.0, 85.0))
    mx = np.array(unwrap_lons(np.asarray(mx, dtype=np.float64), period=2 * WORLD))
    return np.column_stack([mx, np.asarray(my, dtype=np.float64)])


def view_bounds(corner_sets, margin: float = 1.0, min_size_m: float = 20_000.0):
    """A square Mercator box around the given footprints, `margin` times their size around."""
    pts = np.vstack([mercator_corners(c) for c in corner_sets])
    cx, cy = (pts[:, 0].min() + pts[:, 0].max()) / 2, (pts[:, 1].min() + pts[:, 1].max()) / 2
    half = max(np.ptp(pts[:, 0]), np.ptp(pts[:, 1]), min_size_m) * (1 + 2 * margin) / 2
    half = min(half, WORLD)
    return (cx - half, cy - half, cx + half, cy + half)


def photo_to_view_h(corners, photo_size: tuple[int, int], grid: MercatorGrid) -> np.ndarray:
    """Homography from photo pixels (edge coordinates) to pixels of the view `grid`."""
    w, h = photo_size
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)
    merc = mercator_corners(corners)
    vx, vy = grid.mercator_to_pixel(merc[:, 0], merc[:, 1])
    dst = np.column_stack([np.asarray(vx, dtype=np.float64), np.asarray(vy, dtype=np.float64)])
    return cv2.getPerspectiveTransform(src.astype(np.float32), dst.astype(np.float32)).astype(np.float64)


def warp_to_photo(view: np.ndarray, h_photo_to_view: np.ndarray, photo_size: tuple[int, int]) -> np.ndarray:
    """The satellite view resampled into the photo's frame (what the photo should look like)."""
    w, h = photo_size
    # OpenCV samples at pixel centres: shift edge coordinates by half a pixel on both sides
    shift = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]], dtype=np.float64)
    unshift = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]], dtype=np.float64)
    m = unshift @ h_photo_to_view @ shift
    return cv2.warpPerspective(view, m, (int(w), int(h)), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)


def lonlat_to_view(lon, lat, grid: MercatorGrid) -> np.ndarray:
    """(K, 2) view pixels of lon/lat points, longitudes taken nearest to the view's centre."""
    mx, my = lonlat_to_mercator(np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64))
    xmin, _, xmax, _ = grid.bounds_3857
    mx = lons_near(mx, (xmin + xmax) / 2, period=2 * WORLD)
    vx, vy = grid.mercator_to_pixel(mx, my)
    return np.column_stack([np.ravel(vx), np.ravel(vy)])


def photo_frame(gcps, fallback: tuple[int, int] | None) -> tuple[float, float] | None:
    """Size of the pixel frame a localization's photo coordinates refer to.

    The pipeline may decode a large photo at a reduced scale; its GCP grid spans that frame
    edge to edge (x from 0 to width, y from 0 to height), so the largest GCP x and y are it.
    """
    try:
        arr = np.asarray(gcps, dtype=np.float64)
        if arr.ndim == 2 and arr.shape[1] >= 2 and len(arr) >= 4:
            w, h = float(arr[:, 0].max()), float(arr[:, 1].max())
            if w > 0 and h > 0:
                return w, h
    except (TypeError, ValueError):
        pass
    return (float(fallback[0]), float(fallback[1])) if fallback else None


def correspondence_pairs(correspondences, grid: MercatorGrid) -> tuple[np.ndarray, np.ndarray]:
    """(K, 2) photo points and (K, 2) view points of stored inlier correspondences.

    The pipeline stores each inlier as (photo x, photo y, lon, lat): the photo keypoint and
    the ground position of the satellite keypoint it matched.
    """
    arr = np.asarray(correspondences if correspondences is not None else [], dtype=np.float64)
    if arr.size == 0 or arr.ndim != 2 or arr.shape[1] < 4:
        return np.zeros((0, 2)), np.zeros((0, 2))
    photo = arr[:, :2]
    view = lonlat_to_view(arr[:, 2], arr[:, 3], grid)
    ok = np.isfinite(view).all(axis=1) & np.isfinite(photo).all(axis=1)
    return photo[ok], view[ok]


def satellite_view(source_id: str | None, footprint, margin: float,
                   view_px: int) -> tuple[MercatorGrid, np.ndarray, str]:
    """A square satellite view around a footprint (`margin` times its size around): its
    grid, pixels and what they came from."""
    grid = MercatorGrid(view_bounds([footprint], margin=margin), view_px, view_px)
    sat, origin = read_satellite(source_id, grid.bounds_3857, view_px, view_px)
    return grid, sat, origin


@dataclass
class ReviewImages:
    """What the review's pair view shows for one photo, computed off the UI thread: the
    photo at display size, the satellite view (plain or warped into the photo's frame), the
    inlier correspondences in those images' pixels, the outline to draw on the satellite
    view, and the captions."""

    photo: np.ndarray | None
    satellite: np.ndarray | None
    photo_pts: np.ndarray
    view_pts: np.ndarray
    quad: np.ndarray | None
    caption_left: str
    caption_right: str
    source_id: str | None


def review_images(photo_path, photo_size: tuple[int, int] | None, localization, candidate,
                  warp: bool, max_side: int = 1600, view_px: int = 768) -> ReviewImages:
    """The pair view's pictures for a photo and its localization, or one of its retrieval
    candidates (`candidate`, outlined on its satellite view); `warp` resamples the
    satellite view into the photo's frame. An unreadable photo is logged and left out.

    Photo coordinates stored with a localization refer to the full-size displayed frame
    (`astroapp.catalog.photo_reader`); they are scaled to the returned photo's pixels.
    """
    try:
        frame = read_photo(photo_path, max_side=max_side)
        photo, photo_size = frame.rgb, frame.file_size
    except PhotoReadError as exc:
        log.warning("%s", exc)
        photo = None
    loc, cand = localization, candidate
    sat = quad = None
    photo_pts = view_pts = np.zeros((0, 2))
    right, source_id = "no localization yet", None
    if cand is not None and cand.footprint:
        source_id = cand.source_id
        grid, sat, origin = satellite_view(source_id, cand.footprint, 0.5, view_px)
        quad = np.column_stack(grid.mercator_to_pixel(*mercator_corners(cand.footprint).T))
        right = f"candidate #{cand.rank} {cand.tile_id} ({origin}); tile outlined"
    elif loc is not None and loc.footprint and photo_size is not None:
        source_id = loc.source_id
        grid, sat, origin = satellite_view(source_id, loc.footprint, 0.35, view_px)
        size = photo_frame(loc.gcps, photo_size)
        h = photo_to_view_h(loc.footprint, size, grid)
        photo_pts, view_pts = correspondence_pairs(loc.correspondences, grid)
        # photo points: pipeline frame -> displayed image pixels
        to_display = photo.shape[1] / size[0] if photo is not None else 1.0
        photo_pts = photo_pts * to_display
        if warp and photo is not None:
            h_display = h @ np.diag([1 / to_display, 1 / to_display, 1.0])
            sat = warp_to_photo(sat, h_display, (photo.shape[1], photo.shape[0]))
            if len(view_pts):  # where each matched satellite keypoint lands in the warped view
                view_pts = apply_h(np.linalg.inv(h_display), view_pts)
            right = f"satellite warped into the photo's frame ({origin})"
        else:
            fw, fh = size
            quad = apply_h(h, np.array([[0, 0], [fw, 0], [fw, fh], [0, fh]], dtype=float))
            right = f"matched satellite view ({origin}); footprint outlined"
    n = len(photo_pts) if sat is not None else 0
    left = "photo" + (f" {photo_size[0]}x{photo_size[1]}" if photo_size else "")
    if n:
        total = loc.inliers if loc is not None and loc.inliers else n
        left += (f" — {n} inlier correspondences" if total <= n
                 else f" — {n} of the {total} coregistration inliers (stored sample)")
    return ReviewImages(photo, sat, photo_pts, view_pts, quad, left, right, source_id)
