"""Georeferenced rasters (GeoTIFF, COG, VRT; any CRS) cut into Web Mercator 4x4 blocks.

Every read goes through a rasterio `WarpedVRT` onto the exact EPSG:3857 grid requested, so
GDAL reads only the source windows (and overviews) it needs: the whole raster is never
loaded. Zooms are chosen from the raster's resolution: the zoom whose tile pixel is nearest
the raster's pixel in Mercator units, and the two coarser ones (EarthLoc uses three); a
raster smaller than one block at that zoom is cut at up to 3 finer (upsampled) zooms instead.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import RasterioError
from rasterio.transform import Affine
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform as warp_transform
from shapely.geometry import Polygon, box
from shapely.ops import unary_union

from astroapp.geo.sources.base import RASTER_SUFFIXES, SourceError, TileRef, read_wrapped
from astroapp.geo.tiles import (
    BLOCK_SIZE,
    MAX_LAT,
    TILE_PX,
    WORLD,
    Bounds,
    block_bounds,
    block_footprint,
    block_id,
    blocks_covering,
    mercator_to_lonlat,
)

MIN_COVERAGE = 0.5  # a block is listed when the raster covers at least half of it


def _year_from_tags(tags: dict) -> int | None:
    for key in ("TIFFTAG_DATETIME", "ACQUISITION_DATE", "DATE", "YEAR"):
        m = re.match(r"^\s*((?:19|20)\d{2})", str(tags.get(key, "")))
        if m:
            return int(m.group(1))
    return None


class _MercatorBlocks:
    """The TileSource side shared by the raster sources: listed blocks, read by `_read`."""

    _refs: list[TileRef]

    def _read(self, bounds: Bounds, width: int, height: int) -> np.ndarray:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self._refs)

    def tiles(self) -> Iterator[TileRef]:
        yield from self._refs

    def load(self, ref: TileRef, size: int | None = None) -> np.ndarray:
        side = size or BLOCK_SIZE * TILE_PX
        return self._read(block_bounds(ref.zoom, ref.row, ref.col), side, side)

    def read_mercator(self, bounds_3857: Bounds, width: int, height: int) -> np.ndarray:
        return read_wrapped(self._read, bounds_3857, width, height)


class RasterSource(_MercatorBlocks):
    """One georeferenced raster as multi-zoom Web Mercator blocks."""

    def __init__(self, path: str | Path, zooms: tuple[int, ...] | None = None,
                 year: int | None = None, min_coverage: float = MIN_COVERAGE,
                 source_id: str | None = None, enumerate_blocks: bool = True) -> None:
        self.path = Path(path).expanduser()
        self.source_id = source_id or str(self.path.resolve())
        self.errors: list[str] = []
        self._lock = threading.Lock()
        try:
            self._ds = rasterio.open(self.path)
        except (RasterioError, OSError) as exc:
            raise SourceError(f"{self.path}: cannot open raster ({exc})") from None
        ds = self._ds
        if ds.crs is None:
            ds.close()
            raise SourceError(f"{self.path}: raster has no CRS (georeference it first, e.g. "
                              "`gdal_edit.py -a_srs EPSG:xxxx`)")
        if ds.count < 1:
            raise SourceError(f"{self.path}: raster has no bands")
        self.year = year if year is not None else _year_from_tags(ds.tags())
        self._bands = self._pick_bands(ds)
        self._footprint_3857 = self._mercator_outline(ds)
        self.mercator_res = self._mercator_resolution(ds)
        native = round(math.log2(2 * WORLD / (TILE_PX * self.mercator_res)))
        self.native_zoom = int(min(max(native, 0), 22))
        self.zooms = tuple(zooms) if zooms else tuple(
            z for z in range(self.native_zoom - 2, self.native_zoom + 1) if z >= 0)
        self.min_coverage = min_coverage
        self._scale = self._value_scale(ds)
        if not enumerate_blocks:  # a member of a RasterFolderSource: the folder enumerates
            self._refs = []
            return
        self._refs = self._enumerate()
        while not self._refs and zooms is None and self.zooms and self.zooms[-1] < native + 3:
            # Smaller than a block at its own resolution: use finer (upsampled) zooms.
            self.zooms = tuple(z + 1 for z in self.zooms)
            self._refs = self._enumerate()
        if not self._refs:
            self.errors.append(f"{self.path}: covers no whole block at zooms {self.zooms} "
                               f"(at least {min_coverage:.0%} of a {BLOCK_SIZE}x{BLOCK_SIZE}-tile "
                               "block is needed)")

    # setup ------------------------------------------------------------------------------
    @staticmethod
    def _pick_bands(ds) -> list[int]:
        interp = list(ds.colorinterp)
        if all(c in interp for c in (ColorInterp.red, ColorInterp.green, ColorInterp.blue)):
            return [interp.index(c) + 1 for c in (ColorInterp.red, ColorInterp.green,
                                                  ColorInterp.blue)]
        if ds.count >= 3:
            return [1, 2, 3]
        return [1, 1, 1]

    @staticmethod
    def _mercator_outline(ds) -> Polygon:
        """The raster's outline in EPSG:3857 (edges densified, latitudes clipped)."""
        w, h = ds.width, ds.height
        n = 32
        cols = np.concatenate([np.linspace(0, w, n), np.full(n, w), np.linspace(w, 0, n),
                               np.zeros(n)])
        rows = np.concatenate([np.zeros(n), np.linspace(0, h, n), np.full(n, h),
                               np.linspace(h, 0, n)])
        xs, ys = ds.transform @ (cols, rows)
        lon, lat = warp_transform(ds.crs, "EPSG:4326", list(xs), list(ys))
        lat = np.clip(lat, -MAX_LAT, MAX_LAT)
        mx, my = warp_transform("EPSG:4326", "EPSG:3857", list(lon), list(lat))
        poly = Polygon(zip(mx, my, strict=True))
        return poly if poly.is_valid else poly.buffer(0)

    def _mercator_resolution(self, ds) -> float:
        """Mercator metres per source pixel (geometric mean over the raster's extent)."""
        area_px = float(ds.width) * float(ds.height)
        return math.sqrt(self._footprint_3857.area / area_px)

    def _value_scale(self, ds) -> tuple[np.ndarray, np.ndarray] | None:
        """Per-band (low, high) stretch for non-8-bit data, from a decimated overview read."""
        if all(ds.dtypes[b - 1] == "uint8" for b in self._bands):
            return None
        f = max(1, math.ceil(max(ds.width, ds.height) / 512))
        sample = ds.read(self._bands, out_shape=(3, max(1, ds.height // f),
                                                 max(1, ds.width // f)),
                         resampling=Resampling.nearest, masked=True).astype(np.float64)
        lo = np.array([np.percentile(b.compressed(), 2) if b.count() else 0.0 for b in sample])
        hi = np.array([np.percentile(b.compressed(), 98) if b.count() else 1.0 for b in sample])
        return lo, np.maximum(hi, lo + 1e-9)

    def _enumerate(self) -> list[TileRef]:
        refs: list[TileRef] = []
        outline = self._footprint_3857
        for zoom in self.zooms:
            for row, col in blocks_covering(outline.bounds, zoom):
                bb = block_bounds(zoom, row, col)
                cell = box(*bb)
                if outline.intersection(cell).area < self.min_coverage * cell.area:
                    continue
                bid = block_id(zoom, row, col)
                refs.append(TileRef(
                    tile_id=f"{bid}@{self.year}" if self.year else bid,
                    source_id=self.source_id, footprint=block_footprint(zoom, row, col),
                    zoom=zoom, row=row, col=col, year=self.year))
        return refs

    @property
    def gsd_m(self) -> float:
        """Ground metres per source pixel at the raster's centre."""
        cx, cy = self._footprint_3857.centroid.coords[0]
        _, lat = mercator_to_lonlat(np.array([cx]), np.array([cy]))
        return self.mercator_res * math.cos(math.radians(float(lat[0])))

    # TileSource -------------------------------------------------------------------------
    def _read(self, bounds: Bounds, width: int, height: int) -> np.ndarray:
        return self._read_masked(bounds, width, height)[0]

    def _read_masked(self, bounds: Bounds, width: int, height: int
                     ) -> tuple[np.ndarray, np.ndarray]:
        """(RGB image, mask of pixels with data) on an exact EPSG:3857 grid inside the world."""
        xmin, ymin, xmax, ymax = bounds
        transform = Affine((xmax - xmin) / width, 0.0, xmin, 0.0, -(ymax - ymin) / height, ymax)
        src_res = self.mercator_res
        shrink = (xmax - xmin) / width > 1.5 * src_res
        with self._lock:  # a rasterio dataset is not thread-safe
            try:
                with WarpedVRT(self._ds, crs="EPSG:3857", transform=transform, width=width,
                               height=height,
                               resampling=Resampling.average if shrink else Resampling.bilinear,
                               src_nodata=self._ds.nodata, nodata=0) as vrt:
                    data = vrt.read(self._bands, masked=True)
            except RasterioError as exc:
                raise OSError(f"{self.path}: read failed ({exc})") from exc
        arr = data.filled(0).astype(np.float64) if self._scale else data.filled(0)
        if self._scale is not None:
            lo, hi = self._scale
            arr = (arr - lo[:, None, None]) / (hi - lo)[:, None, None] * 255.0
            arr = np.where(np.ma.getmaskarray(data), 0, np.clip(arr, 0, 255))
        valid = ~np.ma.getmaskarray(data).all(axis=0)
        return np.ascontiguousarray(np.asarray(arr).transpose(1, 2, 0), dtype=np.uint8), valid

    def close(self) -> None:
        self._ds.close()

    def __del__(self) -> None:
        ds = getattr(self, "_ds", None)
        if ds is not None and not ds.closed:
            ds.close()


class RasterFolderSource(_MercatorBlocks):
    """A folder (or list) of georeferenced rasters read as one mosaic of Web Mercator blocks.

    Rasters that cannot be used (no CRS, unreadable) are listed in `errors`; the rest load.
    A block is listed when the rasters together cover `min_coverage` of it; where rasters
    overlap, the newest year (then the later file name) is drawn on top.
    """

    def __init__(self, paths: str | Path | list[Path], zooms: tuple[int, ...] | None = None,
                 min_coverage: float = MIN_COVERAGE, source_id: str | None = None) -> None:
        if isinstance(paths, str | Path):
            folder = Path(paths).expanduser()
            self.source_id = source_id or str(folder.resolve())
            files = raster_files(folder)
        else:
            files = [Path(p) for p in paths]
            self.source_id = source_id or ",".join(str(p) for p in files)
        self.errors: list[str] = []
        self.members: list[RasterSource] = []
        for f in files:
            try:
                self.members.append(RasterSource(f, source_id=self.source_id,
                                                 enumerate_blocks=False))
            except SourceError as exc:
                self.errors.append(str(exc))
        self.members.sort(key=lambda m: (m.year or 0, str(m.path)))
        years = {m.year for m in self.members}
        self.year = years.pop() if len(years) == 1 else None
        self.min_coverage = min_coverage
        self._refs: list[TileRef] = []
        if not self.members:
            if not files:
                self.errors.append(f"{self.source_id}: no rasters found")
            return
        self._outline = unary_union([m._footprint_3857 for m in self.members])
        native = max(m.native_zoom for m in self.members)
        self.zooms = tuple(zooms) if zooms else tuple(z for z in range(native - 2, native + 1)
                                                      if z >= 0)
        self._refs = self._enumerate()
        while not self._refs and zooms is None and self.zooms[-1] < native + 3:
            self.zooms = tuple(z + 1 for z in self.zooms)
            self._refs = self._enumerate()
        if not self._refs:
            self.errors.append(f"{self.source_id}: the rasters cover no whole block at zooms "
                               f"{self.zooms}")

    def _enumerate(self) -> list[TileRef]:
        refs = []
        for zoom in self.zooms:
            for row, col in blocks_covering(self._outline.bounds, zoom):
                cell = box(*block_bounds(zoom, row, col))
                if self._outline.intersection(cell).area < self.min_coverage * cell.area:
                    continue
                bid = block_id(zoom, row, col)
                refs.append(TileRef(tile_id=f"{bid}@{self.year}" if self.year else bid,
                                    source_id=self.source_id,
                                    footprint=block_footprint(zoom, row, col),
                                    zoom=zoom, row=row, col=col, year=self.year))
        return refs

    @property
    def gsd_m(self) -> float | None:
        return min((m.gsd_m for m in self.members), default=None)

    def _read(self, bounds: Bounds, width: int, height: int) -> np.ndarray:
        out = np.zeros((height, width, 3), np.uint8)
        cell = box(*bounds)
        for m in self.members:  # oldest first: newer rasters paint over older ones
            if not m._footprint_3857.intersects(cell):
                continue
            img, valid = m._read_masked(bounds, width, height)
            out[valid] = img[valid]
        return out


def raster_files(folder: Path) -> list[Path]:
    """Raster files under a folder (recursively), sorted."""
    return sorted(p for p in Path(folder).rglob("*")
                  if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES)
