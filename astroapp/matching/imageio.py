"""Reading photos and surroundings as RGB uint8, as displayed (EXIF orientation applied),
and bringing them to the square sizes matching works at."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from astroapp.catalog.importer import MAX_PHOTO_PIXELS
from astroapp.catalog.orientation import upright

Image.MAX_IMAGE_PIXELS = 40_000 * 40_000  # large scans are legitimate; bombs still stop


class ImageReadError(ValueError):
    """The file is missing or not a readable image; the message names the file."""


def read_rgb(path: str | Path, target: int = 0, max_pixels: int = MAX_PHOTO_PIXELS) -> np.ndarray:
    """A photo or surroundings image as RGB uint8, as displayed (EXIF orientation applied).

    The one reader for photos (matching, retrieval, localization): an image of more than
    `max_pixels` (by default the import's decompression-bomb limit) is refused from its
    header, before anything is decoded; with `target`, a JPEG far larger than it is decoded
    at a reduced scale (1/2..1/8, still >= 2 x target), which is faster and bounds memory.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"no such image file: {path}")
    try:
        with Image.open(path) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise ImageReadError(
                    f"image {path} is {width}x{height} = {width * height} pixels, more than "
                    f"the limit of {max_pixels} (the import's): refused as a possible "
                    "decompression bomb")
            if target:
                img.draft("RGB", (2 * target, 2 * target))
            img = upright(img)  # the catalogue's frame (astroapp.catalog.orientation)
            return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError) as exc:
        if isinstance(exc, ImageReadError):
            raise
        raise ImageReadError(f"cannot read image {path}: {exc}") from exc
    except MemoryError as exc:
        raise ImageReadError(f"image {path} is too large to decode in memory") from exc


def resize_square(image: np.ndarray, side: int, upscale: int = cv2.INTER_LINEAR) -> np.ndarray:
    """`image` as side x side pixels: area averaging when shrinking (no aliasing), `upscale`
    interpolation when enlarging."""
    h, w = image.shape[:2]
    image = np.ascontiguousarray(image)
    if (w, h) == (side, side):
        return image
    interp = cv2.INTER_AREA if max(w, h) > side else upscale
    return cv2.resize(image, (side, side), interpolation=interp)
