"""Small JPEG previews stored in the catalogue, so browsing never re-reads full photos."""

from __future__ import annotations

import io

from PIL import Image, ImageOps

THUMBNAIL_SIZE = 256


def make_thumbnail(image: Image.Image, size: int = THUMBNAIL_SIZE, quality: int = 85) -> bytes:
    """JPEG bytes of the image fitted into `size` x `size`, upright per EXIF orientation."""
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # broken orientation tag: keep pixels as stored
        pass
    if image.mode != "RGB":
        image = image.convert("RGB")
    image = image.copy()
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, optimize=True)
    return out.getvalue()
