"""`open_source`: a tile source from its spec (what an index records and a user types).

A module of its own, above the implementations, so that `base` (the interface they share)
imports none of them.
"""

from __future__ import annotations

from pathlib import Path

from astroapp.geo.sources.base import RASTER_SUFFIXES, SourceError, TileSource


def open_source(spec: str | Path) -> TileSource:
    """"bluemarble" (bundled world), a folder of EarthLoc-named jpgs, a GeoTIFF/COG/VRT, or a
    folder of such rasters (read as one mosaic)."""
    text = str(spec)
    if text.lower() in {"bluemarble", "world", "bundled"}:
        from astroapp.geo.sources.bluemarble import BlueMarbleSource

        return BlueMarbleSource()
    path = Path(text).expanduser()
    if path.is_dir():
        from astroapp.geo.sources.earthloc_folder import EarthLocFolderSource, has_earthloc_images
        from astroapp.geo.sources.raster import RasterFolderSource, raster_files

        if not has_earthloc_images(path) and raster_files(path):
            return RasterFolderSource(path)
        return EarthLocFolderSource(path)
    if path.is_file() and path.suffix.lower() in RASTER_SUFFIXES:
        from astroapp.geo.sources.raster import RasterSource

        return RasterSource(path)
    if not path.exists():
        raise SourceError(f"{path}: no such file or folder (expected 'bluemarble', a folder "
                          "of EarthLoc tiles or a GeoTIFF)")
    raise SourceError(f"{path}: not a tile source (expected a folder of EarthLoc tiles or a "
                      f"raster with suffix {', '.join(sorted(RASTER_SUFFIXES))})")
