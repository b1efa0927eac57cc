"""Tile sources: EarthLoc folders, georeferenced rasters and the bundled Blue Marble world."""

from astroapp.geo.sources.base import SourceError, TileRef, TileSource
from astroapp.geo.sources.opener import open_source

__all__ = ["SourceError", "TileRef", "TileSource", "open_source"]
