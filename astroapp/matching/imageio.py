"""Images for matching: photos and surroundings as RGB uint8 through the one photo reader,
and bringing them to the square sizes matching works at."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from astroapp.catalog.photo_reader import MAX_PHOTO_PIXELS, read_photo
from astroapp.catalog.photo_reader import PhotoReadError as ImageReadError

__all__ = ["ImageReadError", "read_rgb", "resize_square"]


def read_rgb(path: str | Path, target: int = 0, max_pixels: int = MAX_PHOTO_PIXELS) -> np.ndarray:
    """A photo or surroundings image as RGB uint8, as displayed (EXIF orientation applied).

    Decoded by the one photo reader (`astroapp.catalog.photo_reader.read_photo`): refused
    from its header above `max_pixels`; with `target`, a JPEG far larger is decoded at a
    reduced scale that keeps both sides >= 2 x target.
    """
    return read_photo(path, min_side=2 * target if target else None, max_pixels=max_pixels).rgb


def resize_square(image: np.ndarray, side: int, upscale: int = cv2.INTER_LINEAR) -> np.ndarray:
    """`image` as side x side pixels: area averaging when shrinking (no aliasing), `upscale`
    interpolation when enlarging."""
    h, w = image.shape[:2]
    image = np.ascontiguousarray(image)
    if (w, h) == (side, side):
        return image
    interp = cv2.INTER_AREA if max(w, h) > side else upscale
    return cv2.resize(image, (side, side), interpolation=interp)
