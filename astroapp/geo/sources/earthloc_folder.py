"""A folder of EarthLoc-format database images (`@lat1@lon1@...@image_id@year@...@.jpg`).

Names store the corners lat-first in the order bottom-left, top-left, top-right, bottom-right;
we convert to (lon, lat) TL, TR, BR, BL. `image_id` is `ZZ_RRRR_CCCC` (zoom, row, col of the
top-left WMTS tile) and the timestamp is the year. Files whose names do not parse, or whose
corners disagree with their block id, are listed in `errors` and skipped.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from astroapp.geo.footprint import Footprint
from astroapp.geo.sources.base import (
    SourceError,
    TileRef,
    as_rgb_uint8,
    read_wrapped,
    resize_rgb,
)
from astroapp.geo.tiles import (
    BLOCK_SIZE,
    TILE_PX,
    WORLD,
    Bounds,
    block_bounds,
    block_footprint,
    block_id,
    blocks_covering,
    parse_block_id,
    tile_resolution_m,
)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
CORNER_TOLERANCE_DEG = 1e-3  # names carry 5 decimals; allow for rounding by other tools


@dataclass(frozen=True)
class EarthLocName:
    """The fields of an EarthLoc file name (database image or query photo)."""

    footprint: Footprint  # TL, TR, BR, BL as (lon, lat)
    image_id: str
    timestamp: str
    nadir: tuple[float, float] | None  # (lon, lat)
    area_km2: float | None
    orientation: float | None


def parse_earthloc_name(name: str) -> EarthLocName:
    """Parse `@lat1@lon1@lat2@lon2@lat3@lon3@lat4@lon4@image_id@timestamp@nlat@nlon@area@orient@.jpg`.

    Raises ValueError saying what is wrong.
    """
    base = Path(name).name
    parts = base.split("@")
    if len(parts) < 12 or parts[0] != "":
        raise ValueError("not an EarthLoc name (expected '@lat1@lon1@...@image_id@timestamp@"
                         "...@.ext')")
    try:
        nums = [float(p) for p in parts[1:9]]
    except ValueError as exc:
        raise ValueError(f"corner coordinates do not parse: {exc}") from None
    lat = nums[0::2]
    lon = nums[1::2]
    if any(not math.isfinite(v) for v in nums) or any(abs(v) > 90 for v in lat) or any(
            abs(v) > 180 for v in lon):
        raise ValueError("corner coordinates out of range")
    bl, tl, tr, br = zip(lon, lat, strict=True)
    footprint = Footprint((tl, tr, br, bl))
    image_id, timestamp = parts[9], parts[10]
    if not image_id or not timestamp:
        raise ValueError("empty image id or timestamp")

    def opt(i: int) -> float | None:
        try:
            return float(parts[i]) if i < len(parts) - 1 and parts[i] != "" else None
        except ValueError:
            return None

    nlat, nlon = opt(11), opt(12)
    nadir = (nlon, nlat) if nlat is not None and nlon is not None else None
    return EarthLocName(footprint, image_id, timestamp, nadir, opt(13), opt(14))


def format_earthloc_name(footprint: Footprint, image_id: str, timestamp: str | int,
                         orientation: float = 0.0, suffix: str = ".jpg") -> str:
    """The EarthLoc file name for a footprint (BL, TL, TR, BR lat-first, 5 decimals)."""
    tl, tr, br, bl = footprint.corners
    fields = []
    for lon, lat in (bl, tl, tr, br):
        fields += [f"{lat:.5f}", f"{lon:.5f}"]
    nlon, nlat = np.mean([c[0] for c in footprint.corners]), np.mean(
        [c[1] for c in footprint.corners])
    fields += [image_id, str(timestamp), f"{nlat:.5f}", f"{nlon:.5f}",
               f"{round(footprint.area_km2())}", f"{orientation:g}"]
    return "@" + "@".join(fields) + "@" + suffix


_YEAR = re.compile(r"^\d{4}$")


def has_earthloc_images(folder: Path) -> bool:
    """Whether any image under `folder` has an EarthLoc-style name (starts with '@')."""
    return any(p.name.startswith("@") and p.suffix.lower() in IMAGE_SUFFIXES
               for p in Path(folder).rglob("*@*"))


class EarthLocFolderSource:
    """Database images of an EarthLoc-format folder (searched recursively)."""

    def __init__(self, folder: str | Path, source_id: str | None = None) -> None:
        self.folder = Path(folder).expanduser()
        if not self.folder.is_dir():
            raise SourceError(f"{self.folder}: not a folder")
        self.source_id = source_id or str(self.folder.resolve())
        self.errors: list[str] = []
        self._refs: dict[str, TileRef] = {}
        self._paths: dict[str, Path] = {}
        # (zoom, row, col) -> [tile_id, ...] newest year first, for read_mercator
        self._by_block: dict[tuple[int, int, int], list[str]] = {}
        self._scan()

    def _scan(self) -> None:
        files = sorted(p for p in self.folder.rglob("*")
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        for path in files:
            try:
                ref = self._ref_for(path)
            except ValueError as exc:
                self.errors.append(f"{path}: {exc}")
                continue
            if ref.tile_id in self._refs:
                self.errors.append(f"{path}: duplicate of {self._paths[ref.tile_id]} "
                                   f"({ref.tile_id}), skipped")
                continue
            self._refs[ref.tile_id] = ref
            self._paths[ref.tile_id] = path
            self._by_block.setdefault((ref.zoom, ref.row, ref.col), []).append(ref.tile_id)
        for ids in self._by_block.values():
            ids.sort(key=lambda t: self._refs[t].year or 0, reverse=True)
        self._zoom_blocks: dict[int, list[tuple[int, int]]] = {}
        for zoom, row, col in sorted(self._by_block):
            self._zoom_blocks.setdefault(zoom, []).append((row, col))
        if not self._refs and not self.errors:
            self.errors.append(f"{self.folder}: no EarthLoc images (*.jpg named '@lat@lon@...@')"
                               " found")

    def _ref_for(self, path: Path) -> TileRef:
        parsed = parse_earthloc_name(path.name)
        zoom, row, col = parse_block_id(parsed.image_id)
        if not _YEAR.match(parsed.timestamp):
            raise ValueError(f"timestamp {parsed.timestamp!r} is not a year: a query photo, "
                             "not a database image?")
        expected = block_footprint(zoom, row, col)
        err = max(max(abs(a[0] - b[0]), abs(a[1] - b[1]))
                  for a, b in zip(parsed.footprint.corners, expected.corners, strict=True))
        if err > CORNER_TOLERANCE_DEG:
            raise ValueError(f"corners disagree with block {parsed.image_id} by {err:.4f} deg")
        year = int(parsed.timestamp)
        return TileRef(tile_id=f"{block_id(zoom, row, col)}@{year}", source_id=self.source_id,
                       footprint=parsed.footprint, zoom=zoom, row=row, col=col, year=year)

    def __len__(self) -> int:
        return len(self._refs)

    def tiles(self) -> Iterator[TileRef]:
        yield from self._refs.values()

    def path(self, ref: TileRef) -> Path:
        return self._paths[ref.tile_id]

    @property
    def zooms(self) -> list[int]:
        return sorted({k[0] for k in self._by_block})

    @property
    def gsd_m(self) -> float | None:
        """Metres per pixel of the finest zoom's 1024-px images (at the equator)."""
        return tile_resolution_m(self.zooms[-1]) if self.zooms else None

    def load(self, ref: TileRef, size: int | None = None) -> np.ndarray:
        path = self._paths.get(ref.tile_id)
        if path is None:
            raise KeyError(f"{ref.tile_id} is not in {self.folder}")
        try:
            with Image.open(path) as im:
                if size:
                    im.draft("RGB", (size, size))  # JPEG: decode at a reduced scale
                img = as_rgb_uint8(np.asarray(im.convert("RGB")))
        except OSError as exc:
            raise OSError(f"{path}: cannot read image ({exc})") from exc
        return resize_rgb(img, size) if size else img

    def read_mercator(self, bounds_3857: Bounds, width: int, height: int) -> np.ndarray:
        """Stitch the database images that overlap the box (coarse zooms first, newest year)."""
        return read_wrapped(self._read_inside, bounds_3857, width, height)

    def _read_inside(self, bounds: Bounds, width: int, height: int) -> np.ndarray:
        out = np.zeros((height, width, 3), np.uint8)
        res_out = (bounds[2] - bounds[0]) / width
        zooms = self.zooms
        if not zooms:
            return out
        # Finest zoom needed: the coarsest one at least as fine as the output (a relative
        # tolerance: a block read at half its pixels is exactly the next zoom's resolution).
        finest = next((z for z in zooms if tile_resolution_m(z) <= res_out * (1 + 1e-9)),
                      zooms[-1])
        for zoom in zooms:
            # Finer zooms only where nothing coarser covers the box: a database holding an
            # area at zoom 11 alone (a partial download) is otherwise read as black.
            if zoom > finest and out.max(axis=2).all():
                break
            for row, col in self._blocks_in(bounds, zoom):
                ids = self._by_block[(zoom, row, col)]
                self._paint(out, bounds, width, height, ids[0], zoom, row, col)
        return out

    def _blocks_in(self, bounds: Bounds, zoom: int) -> list[tuple[int, int]]:
        """Stored blocks of `zoom` overlapping `bounds` (scanning whichever set is smaller)."""
        stored = self._zoom_blocks.get(zoom, [])
        xmin, ymin, xmax, ymax = bounds
        n_tiles = 2**zoom
        span = (xmax - xmin) / (2 * WORLD) * n_tiles * (ymax - ymin) / (2 * WORLD) * n_tiles
        if span / 4 < len(stored):
            return [rc for rc in blocks_covering(bounds, zoom) if (zoom, *rc) in self._by_block]
        out = []
        for row, col in stored:
            bx0, by0, bx1, by1 = block_bounds(zoom, row, col)
            if bx0 < xmax and bx1 > xmin and by0 < ymax and by1 > ymin:
                out.append((row, col))
        return out

    def _paint(self, out: np.ndarray, bounds: Bounds, width: int, height: int, tile_id: str,
               zoom: int, row: int, col: int) -> None:
        bxmin, bymin, bxmax, bymax = block_bounds(zoom, row, col)
        xmin, ymin, xmax, ymax = bounds
        sx = (bxmax - bxmin) / (xmax - xmin) * width  # block width in output pixels
        side = int(min(BLOCK_SIZE * TILE_PX, max(16, 2 ** math.ceil(math.log2(max(sx, 1))))))
        try:
            img = self.load(self._refs[tile_id], side)
        except OSError as exc:
            msg = str(exc)
            if msg not in self.errors:
                self.errors.append(msg)
            return
        n = img.shape[0]
        # Affine output px -> block image px (centres at integers for OpenCV).
        ax = (xmax - xmin) / width / (bxmax - bxmin) * n
        ay = (ymax - ymin) / height / (bymax - bymin) * n
        bx = (xmin - bxmin) / (bxmax - bxmin) * n + 0.5 * ax - 0.5
        by = (bymax - ymax) / (bymax - bymin) * n + 0.5 * ay - 0.5
        m = np.array([[ax, 0.0, bx], [0.0, ay, by]], np.float64)
        cv2.warpAffine(img, m, (width, height), dst=out,
                       flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                       borderMode=cv2.BORDER_TRANSPARENT)
