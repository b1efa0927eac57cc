"""Candidate tiles read from their sources: the tile itself and its 3x3 surroundings.

Shared by re-ranking (which reads each shortlisted tile) and coregistration (which reads the
surroundings of a candidate); a module of its own so that neither imports the other.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class SourceCache:
    """Tile sources of an index, opened once by source id (their spec from the index)."""

    def __init__(self, index: Any) -> None:
        self._specs: dict[str, str | None] = {}
        try:
            from astroapp.index.store import TileStore

            store = TileStore(Path(index.folder), readonly=True)
            try:
                self._specs = {sid: spec for sid, spec, _n, _err in store.sources()}
            finally:
                store.close()
        except Exception as exc:  # noqa: BLE001 - fall back to the source ids themselves
            log.debug("index sources unavailable (%s): opening sources by id", exc)
        self._open: dict[str, Any] = {}

    def get(self, source_id: str) -> Any:
        if source_id not in self._open:
            from astroapp.geo.sources import open_source

            self._open[source_id] = open_source(self._specs.get(source_id) or source_id)
        return self._open[source_id]


def candidate_bounds(cand: Any) -> tuple[float, float, float, float]:
    """A candidate tile's Web Mercator bounds (metres): from its tile id (`ZZ_RRRR_CCCC@year`)
    when it has one, else from its footprint (made contiguous across the antimeridian)."""
    from astroapp.geo.footprint import lons_near
    from astroapp.geo.tiles import WORLD, block_bounds, lonlat_to_mercator, parse_block_id

    try:
        return block_bounds(*parse_block_id(str(cand.tile_id).split("@")[0]))
    except ValueError:
        fp = cand.footprint
        corners = np.array(fp.corners if hasattr(fp, "corners") else fp, dtype=np.float64)
        mx, my = lonlat_to_mercator(corners[:, 0], corners[:, 1])
        mx = lons_near(mx, mx[0], period=2 * WORLD)  # one run across the antimeridian
        return (float(mx.min()), float(my.min()), float(mx.max()), float(my.max()))


def candidate_tile(source: Any, cand: Any, size: int) -> np.ndarray:
    """The candidate tile itself, north-up, size x size RGB."""
    return source.read_mercator(candidate_bounds(cand), size, size)


def candidate_surroundings(source: Any, cand: Any, size: int) -> tuple[np.ndarray, Any]:
    """The 3x3 surroundings (3S x 3S, north-up) of a candidate tile, and their MercatorGrid."""
    from astroapp.geo.tiles import MercatorGrid, surroundings_bounds

    big = surroundings_bounds(candidate_bounds(cand))
    grid = MercatorGrid(big, 3 * size, 3 * size)
    return source.read_mercator(big, grid.width, grid.height), grid
