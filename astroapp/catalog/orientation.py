"""EXIF orientation: astroapp's one frame for a photo is the displayed (upright) one.

The catalogue's width/height, thumbnails, the pipeline's decode (and so every stored pixel
coordinate: homography, GCPs, correspondences) and the GeoTIFF export all use the frame the
EXIF Orientation tag asks for. An unreadable or out-of-range tag counts as 1 (pixels as
stored), the same decision everywhere, and is logged.
"""

from __future__ import annotations

import logging

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

ORIENTATION_TAG = 0x0112
QUARTER_TURNED = frozenset({5, 6, 7, 8})  # the displayed frame swaps width and height
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def exif_orientation(image: Image.Image) -> int:
    """The image's EXIF Orientation (1..8); 1 when absent, unreadable or out of range."""
    try:
        value = image.getexif().get(ORIENTATION_TAG, 1)
    except Exception as exc:  # noqa: BLE001 - any broken EXIF block: pixels as stored
        log.warning("unreadable EXIF orientation (%s): using the pixels as stored", exc)
        return 1
    if value not in _TRANSPOSE and value != 1:
        log.warning("EXIF orientation %r out of range: using the pixels as stored", value)
        return 1
    return int(value)


def oriented_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) of the displayed frame."""
    w, h = image.size
    return (h, w) if exif_orientation(image) in QUARTER_TURNED else (w, h)


def upright(image: Image.Image) -> Image.Image:
    """The image in its displayed frame (a new image when it had to turn)."""
    orientation = exif_orientation(image)
    return image if orientation == 1 else image.transpose(_TRANSPOSE[orientation])


def orient_array(block: np.ndarray, orientation: int) -> np.ndarray:
    """Stored pixels (..., rows, cols) -> the displayed frame, like `upright` does."""
    if orientation == 2:
        return block[..., :, ::-1]
    if orientation == 3:
        return block[..., ::-1, ::-1]
    if orientation == 4:
        return block[..., ::-1, :]
    if orientation == 5:
        return np.swapaxes(block, -1, -2)
    if orientation == 6:
        return np.rot90(block, -1, axes=(-2, -1))
    if orientation == 7:
        return np.rot90(np.swapaxes(block, -1, -2), 2, axes=(-2, -1))
    if orientation == 8:
        return np.rot90(block, 1, axes=(-2, -1))
    return block


def stored_window(orientation: int, width: int, height: int, row: int,
                  rows: int) -> tuple[int, int, int, int]:
    """The stored-pixel window (col_off, row_off, cols, rows) holding displayed rows
    [row, row + rows) of a photo stored as width x height; `orient_array` of that window
    is exactly those displayed rows."""
    if orientation in (1, 2):
        return 0, row, width, rows
    if orientation in (3, 4):
        return 0, height - row - rows, width, rows
    if orientation in (5, 6):
        return row, 0, rows, height
    return width - row - rows, 0, rows, height  # 7, 8
