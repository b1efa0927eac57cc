"""Tile sources: where database images come from, behind one small interface.

A source enumerates `TileRef`s (one per database image, lazily loaded) and can render any
north-up Web Mercator box (`read_mercator`), which coregistration uses for the 3x3
surroundings and the renderer for synthetic photos. Bad inputs are collected in `errors`
(each naming the file) so one broken file never stops the rest of a source from loading.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from astroapp.geo.footprint import Footprint
from astroapp.geo.tiles import WORLD, Bounds

RASTER_SUFFIXES = {".tif", ".tiff", ".vrt", ".jp2", ".img"}


class SourceError(ValueError):
    """A tile source cannot be opened at all (the message names the file)."""


@dataclass(frozen=True)
class TileRef:
    """One database image, lazily loaded by its source."""

    tile_id: str  # unique within the source, e.g. "09_0266_0426@2021"
    source_id: str  # the source's id (folder / file / "bluemarble")
    footprint: Footprint
    zoom: int
    row: int
    col: int
    year: int | None


@runtime_checkable
class TileSource(Protocol):
    source_id: str
    errors: list[str]

    def tiles(self) -> Iterator[TileRef]: ...

    def load(self, ref: TileRef, size: int | None = None) -> np.ndarray: ...

    def read_mercator(self, bounds_3857: Bounds, width: int, height: int) -> np.ndarray: ...


def resize_rgb(img: np.ndarray, width: int, height: int | None = None) -> np.ndarray:
    """Resize with area averaging when shrinking (no aliasing), bilinear when enlarging."""
    height = height or width
    if img.shape[1] == width and img.shape[0] == height:
        return img
    shrink = width < img.shape[1] or height < img.shape[0]
    return cv2.resize(img, (width, height),
                      interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def as_rgb_uint8(img: np.ndarray) -> np.ndarray:
    """Any (H, W[, C]) uint8 array -> contiguous (H, W, 3) RGB."""
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    elif img.shape[2] > 3:
        img = img[:, :, :3]
    return np.ascontiguousarray(img, dtype=np.uint8)


def read_wrapped(read: Callable[[Bounds, int, int], np.ndarray], bounds: Bounds,
                 width: int, height: int) -> np.ndarray:
    """Read a box that may extend past the antimeridian, as pieces inside the world.

    `read(bounds, w, h)` is only ever called with x inside [-WORLD, WORLD]. Pieces are cut
    at whole output pixels; each piece's bounds are those pixels' exact extent.
    """
    xmin, ymin, xmax, ymax = bounds
    if xmin >= -WORLD - 1e-6 and xmax <= WORLD + 1e-6:
        return read(bounds, width, height)
    res = (xmax - xmin) / width
    out = np.zeros((height, width, 3), np.uint8)
    # Seams between world copies, in output pixel columns.
    k0 = math.floor((xmin + WORLD) / (2 * WORLD))
    k1 = math.floor((xmax + WORLD) / (2 * WORLD))
    cuts = [0]
    for k in range(k0 + 1, k1 + 1):
        seam = -WORLD + 2 * WORLD * k
        cuts.append(int(np.clip(round((seam - xmin) / res), 0, width)))
    cuts.append(width)
    for c0, c1 in zip(cuts[:-1], cuts[1:], strict=True):
        if c1 <= c0:
            continue
        x0, x1 = xmin + c0 * res, xmin + c1 * res
        mid = (x0 + x1) / 2
        shift = 2 * WORLD * math.floor((mid + WORLD) / (2 * WORLD))
        out[:, c0:c1] = read((x0 - shift, ymin, x1 - shift, ymax), c1 - c0, height)
    return out
