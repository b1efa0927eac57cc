"""Web Mercator (EPSG:3857) tile grid: EarthLoc's 4x4 blocks and georeferenced images.

A database image is a block of `size` x `size` XYZ tiles (256 px each) whose top-left tile is
(zoom, row, col) with even row and col, so neighbouring blocks overlap by half. Tile maths is
mercantile's; lon/lat <-> metres is pyproj's.

Pixel convention of `MercatorGrid`: continuous coordinates with (0, 0) at the top-left
*corner* of the top-left pixel and (width, height) at the bottom-right corner of the image
(pixel (i, j) has its centre at (i + 0.5, j + 0.5)); the same as a rasterio transform. Code
that samples with OpenCV (centres at integers) subtracts 0.5.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import mercantile
import numpy as np
from rasterio.transform import Affine

from astroapp.geo.footprint import Footprint, wrap_lon

TILE_PX = 256
BLOCK_SIZE = 4
WORLD = 20037508.342789244  # half the Web Mercator world width in metres
EARTH_CIRCUMFERENCE_M = 2 * WORLD
MAX_LAT = 85.0511287798066

Bounds = tuple[float, float, float, float]  # (xmin, ymin, xmax, ymax) in EPSG:3857 metres

# EPSG:3857 is the spherical Mercator on the WGS84 semi-major axis; its closed form is used
# instead of a pyproj Transformer, which segfaults when used from Qt thread-pool threads
# (superqt workers: a thread-local PROJ object dies with each run's thread state; pyproj
# 3.7.2, PySide6 6.12). It agrees with pyproj to 3e-8 m (tests/test_geo_tiles.py).
_R = WORLD / math.pi

_BLOCK_ID = re.compile(r"^(\d{1,2})_(\d{1,7})_(\d{1,7})$")


def block_id(zoom: int, row: int, col: int) -> str:
    """EarthLoc image id `ZZ_RRRR_CCCC` of the block whose top-left tile is (zoom, row, col)."""
    return f"{zoom:02d}_{row:04d}_{col:04d}"


def parse_block_id(text: str) -> tuple[int, int, int]:
    """`'09_0266_0426'` -> (9, 266, 426); ValueError on anything else."""
    m = _BLOCK_ID.match(text.strip())
    if not m:
        raise ValueError(f"not an EarthLoc block id (ZZ_RRRR_CCCC): {text!r}")
    zoom, row, col = (int(g) for g in m.groups())
    _check_tile(zoom, row, col)
    return zoom, row, col


def _check_tile(zoom: int, row: int, col: int, size: int = 1) -> None:
    if not 0 <= zoom <= 30:
        raise ValueError(f"zoom out of range: {zoom}")
    n = 2**zoom
    if not (0 <= row and row + size <= n and 0 <= col and col + size <= n):
        raise ValueError(f"block ({zoom}, {row}, {col}) x{size} is outside the {n}x{n} grid")


def block_bounds(zoom: int, row: int, col: int, size: int = BLOCK_SIZE) -> Bounds:
    """Mercator (xmin, ymin, xmax, ymax) of `size` x `size` tiles from top-left (row, col)."""
    _check_tile(zoom, row, col, size)
    tl = mercantile.xy_bounds(mercantile.Tile(col, row, zoom))
    br = mercantile.xy_bounds(mercantile.Tile(col + size - 1, row + size - 1, zoom))
    return (tl.left, br.bottom, br.right, tl.top)


def block_footprint(zoom: int, row: int, col: int, size: int = BLOCK_SIZE) -> Footprint:
    return bounds_footprint(block_bounds(zoom, row, col, size))


def bounds_footprint(bounds: Bounds) -> Footprint:
    """Footprint (TL, TR, BR, BL) of a north-up mercator box; boxes may exceed the world."""
    xmin, ymin, xmax, ymax = bounds
    lons, lats = mercator_to_lonlat(np.array([xmin, xmax]), np.array([ymin, ymax]))
    west, east = float(lons[0]), float(lons[1])
    if xmax - xmin >= 2 * WORLD - 1e-6:
        west, east = -180.0, 180.0
    south, north = float(lats[0]), float(lats[1])
    return Footprint(((west, north), (east, north), (east, south), (west, south)))


def mercator_to_lonlat(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised EPSG:3857 -> lon/lat; x beyond the world wraps to [-180, 180)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    xw = (x + WORLD) % (2 * WORLD) - WORLD
    lon = np.degrees(xw / _R)
    lat = np.degrees(2.0 * np.arctan(np.exp(y / _R)) - math.pi / 2)
    return np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)


def lonlat_to_mercator(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised lon/lat -> EPSG:3857; latitudes are clipped to the Mercator limit."""
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.clip(np.asarray(lat, dtype=np.float64), -MAX_LAT, MAX_LAT)
    lon = np.where(np.abs(lon) > 180.0, wrap_lon(lon), lon)  # as pyproj wraps
    x = _R * np.radians(lon)
    y = _R * np.log(np.tan(math.pi / 4 + np.radians(lat) / 2))
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)


def tile_resolution_m(zoom: int) -> float:
    """Metres per pixel of a 256-px tile at `zoom` in Mercator units (true at the equator)."""
    return EARTH_CIRCUMFERENCE_M / (TILE_PX * 2**zoom)


def ground_resolution_m(zoom: int, lat: float) -> float:
    """Metres on the ground per pixel at `zoom` and latitude `lat`."""
    return tile_resolution_m(zoom) * math.cos(math.radians(lat))


@dataclass(frozen=True)
class MercatorGrid:
    """Georeference of a north-up image covering a mercator box (see module pixel convention)."""

    bounds_3857: Bounds
    width: int
    height: int

    def __post_init__(self) -> None:
        xmin, ymin, xmax, ymax = self.bounds_3857
        if not (xmax > xmin and ymax > ymin):
            raise ValueError(f"empty mercator bounds {self.bounds_3857}")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"grid size must be positive, got {self.width}x{self.height}")
        object.__setattr__(self, "bounds_3857", tuple(float(v) for v in self.bounds_3857))

    @property
    def res_x(self) -> float:
        return (self.bounds_3857[2] - self.bounds_3857[0]) / self.width

    @property
    def res_y(self) -> float:
        return (self.bounds_3857[3] - self.bounds_3857[1]) / self.height

    @cached_property
    def transform(self) -> Affine:
        """rasterio Affine: pixel (col, row) -> mercator (x, y)."""
        xmin, _, _, ymax = self.bounds_3857
        return Affine(self.res_x, 0.0, xmin, 0.0, -self.res_y, ymax)

    def pixel_to_mercator(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        xmin, _, _, ymax = self.bounds_3857
        return (xmin + np.asarray(x, np.float64) * self.res_x,
                ymax - np.asarray(y, np.float64) * self.res_y)

    def mercator_to_pixel(self, mx, my) -> tuple[np.ndarray, np.ndarray]:
        xmin, _, _, ymax = self.bounds_3857
        return ((np.asarray(mx, np.float64) - xmin) / self.res_x,
                (ymax - np.asarray(my, np.float64)) / self.res_y)

    def pixel_to_lonlat(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates -> (lon, lat), vectorised; lon wrapped to [-180, 180)."""
        return mercator_to_lonlat(*self.pixel_to_mercator(x, y))

    def lonlat_to_pixel(self, lon, lat) -> tuple[np.ndarray, np.ndarray]:
        """(lon, lat) -> pixel coordinates; picks the copy of lon nearest the grid's centre."""
        mx, my = lonlat_to_mercator(lon, lat)
        cx = 0.5 * (self.bounds_3857[0] + self.bounds_3857[2])
        mx = mx + np.round((cx - mx) / (2 * WORLD)) * 2 * WORLD
        return self.mercator_to_pixel(mx, my)

    def footprint(self) -> Footprint:
        return bounds_footprint(self.bounds_3857)

    def ground_resolution_m(self) -> float:
        """Approximate metres per pixel on the ground at the grid's centre."""
        _, lat = self.pixel_to_lonlat(self.width / 2, self.height / 2)
        return self.res_x * math.cos(math.radians(float(lat)))


def block_grid(zoom: int, row: int, col: int, size: int = BLOCK_SIZE,
               px: int | None = None) -> MercatorGrid:
    """Grid of a block image (default its native size: size*256 px)."""
    side = px or size * TILE_PX
    return MercatorGrid(block_bounds(zoom, row, col, size), side, side)


def surroundings_bounds(bounds: Bounds, factor: float = 3.0) -> Bounds:
    """The box enlarged `factor` times about its centre (EarthMatch's 3x3 surroundings)."""
    xmin, ymin, xmax, ymax = bounds
    cx, cy = (xmin + xmax) / 2, (ymin + ymax) / 2
    hw, hh = (xmax - xmin) * factor / 2, (ymax - ymin) * factor / 2
    return (cx - hw, cy - hh, cx + hw, cy + hh)


def surroundings(zoom: int, row: int, col: int, side: int = 512,
                 size: int = BLOCK_SIZE) -> tuple[Bounds, MercatorGrid]:
    """3x3 surroundings of a block, rendered north-up at 3*side x 3*side pixels.

    The box may extend past the antimeridian (x beyond +-WORLD; sources wrap it) or past the
    Mercator latitude limit (sources fill that with black).
    """
    bounds = surroundings_bounds(block_bounds(zoom, row, col, size))
    return bounds, MercatorGrid(bounds, 3 * side, 3 * side)


def blocks_covering(bounds: Bounds, zoom: int, size: int = BLOCK_SIZE,
                    step: int = 2) -> Iterator[tuple[int, int]]:
    """(row, col) of blocks (top-left row/col multiples of `step`) that overlap `bounds`."""
    n = 2**zoom
    xmin, ymin, xmax, ymax = bounds
    tile_m = 2 * WORLD / n
    col0 = math.floor((xmin + WORLD) / tile_m)
    col1 = math.ceil((xmax + WORLD) / tile_m) - 1
    row0 = math.floor((WORLD - ymax) / tile_m)
    row1 = math.ceil((WORLD - ymin) / tile_m) - 1
    row0, row1 = max(row0, 0), min(row1, n - 1)
    col0, col1 = max(col0, 0), min(col1, n - 1)
    first_row = max(0, (row0 - size + 1 + step - 1) // step * step)
    first_col = max(0, (col0 - size + 1 + step - 1) // step * step)
    for row in range(first_row, min(row1, n - size) + 1, step):
        for col in range(first_col, min(col1, n - size) + 1, step):
            yield row, col
