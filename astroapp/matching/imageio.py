"""Reading photos and surroundings as RGB uint8, as displayed (EXIF orientation applied),
and bringing them to the square sizes matching works at."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

Image.MAX_IMAGE_PIXELS = 40_000 * 40_000  # large scans are legitimate; bombs still stop


class ImageReadError(ValueError):
    """The file is missing or not a readable image; the message names the file."""


def read_rgb(path: str | Path) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"no such image file: {path}")
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"cannot read image {path}: {exc}") from exc


def resize_square(image: np.ndarray, side: int, upscale: int = cv2.INTER_LINEAR) -> np.ndarray:
    """`image` as side x side pixels: area averaging when shrinking (no aliasing), `upscale`
    interpolation when enlarging."""
    h, w = image.shape[:2]
    image = np.ascontiguousarray(image)
    if (w, h) == (side, side):
        return image
    interp = cv2.INTER_AREA if max(w, h) > side else upscale
    return cv2.resize(image, (side, side), interpolation=interp)
