"""Photo/surroundings pairs rendered from a tile source with known truth.

Used by `astroapp calibrate` (inlier counts of correct and wrong pairs) and by the accuracy
benchmark: a synthetic astronaut photo of the bundled world, the block of the database grid
that contains it (what a perfect retrieval returns), and the block's 3x3 surroundings.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

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
