"""Geography: footprints, the Web Mercator tile grid, tile sources, the synthetic renderer."""

from astroapp.geo.footprint import Footprint
from astroapp.geo.tiles import MercatorGrid, block_bounds, block_footprint

__all__ = ["Footprint", "MercatorGrid", "block_bounds", "block_footprint"]
