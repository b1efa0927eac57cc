"""Pictures as QImages: numpy RGB arrays and photos read through the one photo reader.

Shared by the review view, manual georeferencing and the full-size photo view; a module of
its own so that those views need not import each other. QImages (unlike QPixmaps) may be
made in worker threads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtGui import QImage

from astroapp.catalog.photo_reader import read_photo


def numpy_to_qimage(arr: np.ndarray) -> QImage:
    """An (H, W, 3) uint8 RGB array as a QImage that owns a copy of the pixels."""
    arr = np.ascontiguousarray(arr)
    h, w = arr.shape[:2]
    return QImage(arr.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def load_photo(path: str | Path, max_side: int = 1600) -> tuple[QImage, float]:
    """The photo at display size through the one photo reader (EXIF-upright, the frame every
    stored pixel coordinate uses; JPEG DCT scaling keeps 12 MP photos fast). Returns the
    image and the scale from full-resolution pixels to the returned image's pixels."""
    frame = read_photo(path, max_side=max_side)
    return numpy_to_qimage(frame.rgb), 1.0 / frame.scale_to_file
