"""The one photo reader: a photo file as RGB uint8 in astroapp's one frame (EXIF-upright,
`astroapp.catalog.orientation` decides), with the frame-to-file scale.

Retrieval, matching, localization, the review view and the exports all read photos here, so
they cannot disagree on orientation or size. An image of more than `max_pixels` (the
import's decompression-bomb limit) is refused from its header before anything is decoded; a
JPEG far larger than what is needed is decoded at a reduced DCT scale (1/2..1/8), which is
faster and bounds memory. The GeoTIFF export, which copies full-resolution pixels in strips,
reads them here too (`open_photo_rows`: windows decoded by GDAL, turned to the same frame).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from astroapp.catalog.orientation import (
    QUARTER_TURNED,
    exif_orientation,
    orient_array,
    stored_window,
    upright,
)

# Larger images are refused as decompression bombs: Pillow's warning threshold, fixed here so
# that code elsewhere raising Image.MAX_IMAGE_PIXELS (big rasters) does not lift it for photos.
MAX_PHOTO_PIXELS = 89_478_485

Image.MAX_IMAGE_PIXELS = 40_000 * 40_000  # large scans are legitimate; bombs still stop


class PhotoReadError(ValueError):
    """The file is missing, not a readable image, or too large; the message names the file."""


@dataclass(frozen=True)
class PhotoHeader:
    """What a photo file's header says, without decoding its pixels."""

    path: Path
    stored_size: tuple[int, int]  # (w, h) of the pixels as stored in the file
    orientation: int  # EXIF orientation 1..8 (1 when absent or unusable)
    format: str

    @property
    def file_size(self) -> tuple[int, int]:
        """(w, h) of the full-resolution displayed frame: what stored pixel coordinates use."""
        w, h = self.stored_size
        return (h, w) if self.orientation in QUARTER_TURNED else (w, h)


@dataclass(frozen=True)
class PhotoFrame:
    """A decoded photo: `rgb` (h, w, 3) uint8 in the displayed frame, possibly reduced."""

    rgb: np.ndarray
    header: PhotoHeader

    @property
    def file_size(self) -> tuple[int, int]:
        return self.header.file_size

    @property
    def scale_to_file(self) -> float:
        """Frame pixels -> file pixels (1.0 when decoded at full resolution)."""
        return self.file_size[0] / self.rgb.shape[1]


_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError,
           Image.DecompressionBombError)


@contextlib.contextmanager
def _opened(path: Path, max_pixels: int) -> Iterator[tuple[Image.Image, PhotoHeader]]:
    """The file opened by Pillow with its header, refused above `max_pixels` before any
    decoding; every failure inside becomes a PhotoReadError naming the file."""
    if not path.is_file():
        raise PhotoReadError(f"cannot read image {path}: no such file")
    try:
        with Image.open(path) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise PhotoReadError(
                    f"image {path} is {width}x{height} = {width * height} pixels, more than the "
                    f"limit of {max_pixels} (the import's): refused as a possible "
                    "decompression bomb")
            yield img, PhotoHeader(path, (width, height), exif_orientation(img), img.format or "?")
    except PhotoReadError:
        raise
    except _ERRORS as exc:
        raise PhotoReadError(f"cannot read image {path}: {exc}") from exc
    except MemoryError as exc:
        raise PhotoReadError(f"image {path} is too large to decode in memory") from exc


def photo_header(path: str | Path, max_pixels: int = MAX_PHOTO_PIXELS) -> PhotoHeader:
    """The photo's stored size, EXIF orientation and format (nothing decoded)."""
    with _opened(Path(path), max_pixels) as (_, header):
        return header


def read_photo(path: str | Path, min_side: int | None = None, max_side: int | None = None,
               max_pixels: int = MAX_PHOTO_PIXELS) -> PhotoFrame:
    """The photo decoded in its displayed frame.

    `min_side`: a JPEG far larger is decoded at the smallest DCT scale that keeps both sides
    >= min_side (the pipeline's "enough pixels for matching"). `max_side`: the frame is then
    resampled so that its longer side is at most max_side (a display size). Without either,
    full resolution.
    """
    with _opened(Path(path), max_pixels) as (img, header):
        w, h = header.stored_size
        fit = max_side / max(w, h) if max_side and max(w, h) > max_side else 1.0
        want = (max(1, round(w * fit)), max(1, round(h * fit))) if fit < 1.0 else (0, 0)
        if min_side:
            want = (max(want[0], min_side), max(want[1], min_side))
        if 0 < want[0] < w and 0 < want[1] < h:
            img.draft("RGB", want)  # JPEG: the smallest DCT scale still >= want
        rgb = upright(img).convert("RGB")  # the catalogue's frame
        if fit < 1.0:
            shown = (want[1], want[0]) if header.orientation in QUARTER_TURNED else want
            if rgb.size != shown:
                rgb = rgb.resize(shown, Image.Resampling.BILINEAR, reducing_gap=2.0)
        return PhotoFrame(np.asarray(rgb, dtype=np.uint8).copy(), header)


class PhotoRows:
    """Full-resolution rows of a photo in its displayed frame, read a window at a time (the
    GeoTIFF export copies photos of any size in bounded memory); from `open_photo_rows`."""

    def __init__(self, header: PhotoHeader, dataset) -> None:
        self.header = header
        self._src = dataset
        self.bands = [1, 2, 3] if dataset.count >= 3 else [1]
        self.dtype = dataset.dtypes[0]

    def read(self, row: int, rows: int) -> np.ndarray:
        """Displayed rows [row, row + rows) as (bands, rows, width)."""
        from rasterio.windows import Window

        w, h = self.header.stored_size
        window = Window(*stored_window(self.header.orientation, w, h, row, rows))
        block = orient_array(self._src.read(self.bands, window=window), self.header.orientation)
        return np.ascontiguousarray(block)


@contextlib.contextmanager
def open_photo_rows(path: str | Path, max_pixels: int = MAX_PHOTO_PIXELS) -> Iterator[PhotoRows]:
    """The photo opened for reading displayed rows at full resolution (GDAL decodes only
    the windows asked for); the header's frame and pixel limit as `read_photo`'s."""
    import rasterio  # here: the catalogue's other users need no GDAL
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    header = photo_header(path, max_pixels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            dataset = rasterio.open(header.path)
        except RasterioIOError as exc:
            raise PhotoReadError(f"cannot read image {header.path}: {exc}") from exc
    with dataset:
        if (dataset.width, dataset.height) != header.stored_size:
            raise PhotoReadError(f"image {header.path}: GDAL reads {dataset.width}x"
                                 f"{dataset.height} px, its header says {header.stored_size}")
        yield PhotoRows(header, dataset)
