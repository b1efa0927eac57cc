"""Small JPEG previews stored in the catalogue, so browsing never re-reads full photos."""

from __future__ import annotations

import io

from PIL import Image

from astroapp.catalog.orientation import upright

THUMBNAIL_SIZE = 256


def make_thumbnail(image: Image.Image, size: int = THUMBNAIL_SIZE, quality: int = 85) -> bytes:
    """JPEG bytes of the image fitted into `size` x `size`, upright per EXIF orientation."""
    image = upright(image)  # a broken orientation tag is logged, pixels kept as stored
    if image.mode != "RGB":
        image = image.convert("RGB")
    image = image.copy()
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, optimize=True)
    return out.getvalue()
