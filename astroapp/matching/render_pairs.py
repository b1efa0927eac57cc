"""Photo/surroundings pairs rendered from a tile source with known truth.

Used by `astroapp calibrate` (inlier counts of correct and wrong pairs) and by the accuracy
benchmark: a synthetic astronaut photo of the bundled world, the block of the database grid
that contains it (what a perfect retrieval returns), and the block's 3x3 surroundings.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import mercantile
import numpy as np

from astroapp.geo.footprint import Footprint
from astroapp.geo.tiles import (
    BLOCK_SIZE,
    MercatorGrid,
    block_bounds,
    block_footprint,
    lonlat_to_mercator,
    surroundings,
)

if TYPE_CHECKING:
    from astroapp.geo.render import Camera


@dataclass
class RenderedPair:
    photo: np.ndarray
    truth: Footprint  # the photo's true footprint
    zoom: int
    row: int
    col: int
    surroundings: np.ndarray
    grid: MercatorGrid
    correct: bool  # the block is the one containing the photo
    seed: int


def containing_block(lon: float, lat: float, zoom: int, size: int = BLOCK_SIZE) -> tuple[int, int]:
    """(row, col) of the database block (even top-left tile) whose centre is nearest (lon, lat)."""
    n = 2**zoom
    tile = mercantile.tile(lon, lat, zoom)
    ul = mercantile.ul(tile)
    lr = mercantile.ul(mercantile.Tile(tile.x + 1, tile.y + 1, zoom))
    fx = tile.x + (lon - ul.lng) / max(lr.lng - ul.lng, 1e-12)
    fy = tile.y + (ul.lat - lat) / max(ul.lat - lr.lat, 1e-12)
    row = int(np.clip(round((fy - size / 2) / 2) * 2, 0, n - size))
    col = int(np.clip(round((fx - size / 2) / 2) * 2, 0, n - size))
    return row, col


def zoom_for(footprint: Footprint, zooms: tuple[int, ...]) -> int:
    """The finest zoom whose block is at least as wide as the footprint (EarthLoc's choice)."""
    lons = [c[0] for c in footprint.corners]
    lats = [c[1] for c in footprint.corners]
    mx, my = lonlat_to_mercator(np.array(lons), np.array(lats))
    extent = max(np.ptp(mx), np.ptp(my))
    for zoom in sorted(zooms, reverse=True):
        xmin, _, xmax, _ = block_bounds(zoom, 0, 0)
        if xmax - xmin >= extent:
            return zoom
    return min(zooms)


def surroundings_of(source, zoom: int, row: int, col: int, side: int) -> tuple[np.ndarray, MercatorGrid]:
    """The 3x3 surroundings image of a block (3*side px square, north-up) and its grid."""
    bounds, grid = surroundings(zoom, row, col, side=side)
    return source.read_mercator(bounds, grid.width, grid.height), grid


def render_pairs(
    source,
    n: int,
    seed: int = 0,
    wrong_per_photo: int = 1,
    split: str | None = "train",
    side: int = 512,
    zooms: tuple[int, ...] | None = None,
) -> Iterator[list[RenderedPair]]:
    """For each of n renders: its correct pair, then `wrong_per_photo` pairs with the
    surroundings of other photos' blocks (far away, so certainly wrong)."""
    from astroapp.geo.render import random_camera, render_photo

    zooms = tuple(zooms or getattr(source, "zooms", None) or (6, 7, 8))
    rng = np.random.default_rng(seed)
    cams = []
    for _ in range(n):
        photo_seed = int(rng.integers(2**31))
        prng = np.random.default_rng(photo_seed)
        cam = random_camera(prng, source, split=split)
        render = render_photo(source, cam, side, prng)
        cams.append((render, photo_seed))
    blocks = []
    for render, _ in cams:
        zoom = zoom_for(render.footprint, zooms)
        lon, lat = render.footprint.centroid()
        blocks.append((zoom, *containing_block(lon, lat, zoom)))
    for i, (render, photo_seed) in enumerate(cams):
        zoom, row, col = blocks[i]
        surr, grid = surroundings_of(source, zoom, row, col, side)
        pairs = [RenderedPair(render.image, render.footprint, zoom, row, col, surr, grid, True,
                              photo_seed)]
        others = [j for j in range(len(cams)) if j != i]
        rng.shuffle(others)
        for j in others:
            if len(pairs) > wrong_per_photo:
                break
            oz, orow, ocol = blocks[j]
            big = surroundings(oz, orow, ocol, side=side)[1].footprint()
            if big.intersects(render.footprint) or block_footprint(oz, orow, ocol).intersects(
                render.footprint
            ):
                continue
            osurr, ogrid = surroundings_of(source, oz, orow, ocol, side)
            pairs.append(RenderedPair(render.image, render.footprint, oz, orow, ocol, osurr,
                                      ogrid, False, photo_seed))
        yield pairs


def corner_errors_km(predicted: Footprint, truth: Footprint) -> np.ndarray:
    """Geodesic distance (km) between corresponding corners."""
    from astroapp.geo.footprint import GEOD

    p = np.array(predicted.corners)
    t = np.array(truth.corners)
    _, _, dist = GEOD.inv(p[:, 0], p[:, 1], t[:, 0], t[:, 1])
    return np.asarray(dist) / 1000.0


def is_correct_localization(predicted: Footprint | None, truth: Footprint, min_iou: float = 0.5) -> bool:
    """Correct when the predicted footprint overlaps the true one with IoU >= `min_iou`.

    Stricter than EarthMatch's criterion (the footprint enlarged 3x contains the true centre)
    yet tolerant of the residual a single homography leaves on footprints so large that the
    Earth's curvature shows (over ~1000 km).
    """
    if predicted is None:
        return False
    return bool(predicted.iou(truth) >= min_iou)


@dataclass
class Condition:
    """One cell of the real-conditions sweep: how the photo relates to its surroundings."""

    ratio: float = 3.0  # surroundings width / photo footprint width
    cloud: float = 0.0  # cloud cover fraction of the photo
    haze: float = 0.0  # haze strength (geo.render.Augment.haze)
    tilt: float = 0.0  # degrees off nadir

    def label(self) -> str:
        return (f"ratio {self.ratio:g}, cloud {100 * self.cloud:.0f} %, haze {self.haze:g}, "
                f"tilt {self.tilt:g} deg")


def condition_pair(source, cond: Condition, rng: np.random.Generator, side: int = 512,
                   photo_side: int = 512) -> tuple[RenderedPair, Camera]:
    """A rendered photo under `cond` and surroundings `cond.ratio` times as wide as its
    footprint, placed at random inside them (not centred: a retrieved candidate rarely is),
    north-up at 3*side px. The camera is drawn over land with the widest lens the tilt
    allows below the horizon (the bundled world is coarse: wide footprints keep detail)."""
    import math

    from astroapp.geo.render import (
        MAX_OFF_NADIR_DEG,
        SENSOR_MM,
        Augment,
        focal_scale_for,
        random_camera,
        render_photo,
    )
    from astroapp.geo.tiles import MercatorGrid

    scale = focal_scale_for(source)
    half_diag = math.hypot(*SENSOR_MM) / 2
    f_lo = scale * half_diag / math.tan(math.radians(MAX_OFF_NADIR_DEG - cond.tilt - 0.5))
    cam = random_camera(rng, source, focal_mm=(f_lo, 1.3 * f_lo), tilt_deg=(cond.tilt, cond.tilt),
                        max_lat=40.0)
    aug = Augment(color=0.5, haze=(cond.haze, cond.haze), cloud_cover=(cond.cloud, cond.cloud),
                  cloud_probability=1.0 if cond.cloud > 0 else 0.0, blur_sigma=(0.0, 0.8),
                  noise_sigma=(0.0, 2.0))
    render = render_photo(source, cam, photo_side, rng, augment=aug)
    lons = [c[0] for c in render.footprint.corners]
    lats = [c[1] for c in render.footprint.corners]
    mx, my = lonlat_to_mercator(np.array(lons), np.array(lats))
    extent = float(max(np.ptp(mx), np.ptp(my)))
    width = cond.ratio * extent
    room = max(width - extent, 0.0) / 2 * 0.9
    cx = (mx.min() + mx.max()) / 2 + rng.uniform(-room, room)
    cy = (my.min() + my.max()) / 2 + rng.uniform(-room, room)
    box = (cx - width / 2, cy - width / 2, cx + width / 2, cy + width / 2)
    grid = MercatorGrid(box, 3 * side, 3 * side)
    surr = source.read_mercator(box, grid.width, grid.height)
    pair = RenderedPair(render.image, render.footprint, 0, 0, 0, surr, grid, True, 0)
    return pair, cam


def shifted_wrong_pair(source, pair: RenderedPair, rng: np.random.Generator) -> RenderedPair | None:
    """The same photo against surroundings of the same size that do not contain any of its
    footprint (tested in Mercator, across the antimeridian): certainly wrong. None when 200
    random places all overlap it (surroundings a large part of the world wide)."""
    from astroapp.geo.tiles import WORLD, MercatorGrid

    xmin, ymin, xmax, ymax = pair.grid.bounds_3857
    width = xmax - xmin
    lons = [c[0] for c in pair.truth.corners]
    lats = [c[1] for c in pair.truth.corners]
    tx, ty = lonlat_to_mercator(np.array(lons), np.array(lats))
    for _ in range(200):
        lon = float(rng.uniform(-180, 180))
        lat = float(rng.uniform(-40, 40))
        cx, cy = (float(v[0]) for v in lonlat_to_mercator(np.array([lon]), np.array([lat])))
        box = (cx - width / 2, cy - width / 2, cx + width / 2, cy + width / 2)
        apart = all(
            tx.max() + shift < box[0] or tx.min() + shift > box[2] or ty.max() < box[1]
            or ty.min() > box[3] for shift in (-2 * WORLD, 0.0, 2 * WORLD))
        if not apart:
            continue
        grid = MercatorGrid(box, pair.grid.width, pair.grid.height)
        surr = source.read_mercator(box, grid.width, grid.height)
        if float(surr.std()) > 12.0:  # not open ocean
            return RenderedPair(pair.photo, pair.truth, 0, 0, 0, surr, grid, False, 0)
    return None
