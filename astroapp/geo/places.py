"""A deterministic split of the world into training and test places.

Cells of 20 x 20 degrees are hashed (SHA-1 of the cell index, so the split never changes with
Python's hash seed); about a fifth of them are test places. The retrieval trainer renders its
photos only where every footprint corner lies in training cells, the demo roll only where
they all lie in test cells, so the demo measures places the model never saw.
"""

from __future__ import annotations

import hashlib
import math
from typing import Literal

from astroapp.geo.footprint import wrap_lon

Split = Literal["train", "test"]
CELL_DEG = 20.0
TEST_FRACTION = 0.2


def place_cell(lon: float, lat: float, cell_deg: float = CELL_DEG) -> tuple[int, int]:
    """The (column, row) of the cell_deg-degree grid cell holding (lon, lat)."""
    lon = wrap_lon(lon)
    return (math.floor((lon + 180.0) / cell_deg), math.floor((min(lat, 89.999) + 90.0) / cell_deg))


def place_split(lon: float, lat: float) -> Split:
    """"train" or "test" for the place at (lon, lat); stable across runs and machines."""
    i, j = place_cell(lon, lat)
    digest = hashlib.sha1(f"astroapp-place:{i}:{j}".encode()).digest()
    return "test" if int.from_bytes(digest[:4], "big") / 2**32 < TEST_FRACTION else "train"


def footprint_split(corners) -> Split | None:
    """The split every given (lon, lat) point falls in, or None when they straddle both."""
    splits = {place_split(lon, lat) for lon, lat in corners}
    return splits.pop() if len(splits) == 1 else None
