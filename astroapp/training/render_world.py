"""A rendered stand-in for an analyst's catalogue: the bundled world's blocks as an EarthLoc
tile folder and synthetic astronaut photos over it, accepted with their true footprints.

The training benchmark and the tests learn from it; it exercises every real component (the
tile folder, the SQLite catalogue, photo files) without imagery that cannot be shipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from astroapp.catalog.db import Catalog


@dataclass(frozen=True)
class RenderWorld:
    tiles: Path  # EarthLoc-format folder of database blocks
    catalog: Path  # SQLite catalogue: every photo accepted with its footprint
    photos: int


def build_render_world(root: str | Path, *, bbox: tuple[float, float, float, float] = (-20.0, 0.0, 60.0, 45.0),
                       zooms: tuple[int, ...] = (7, 8), n_photos: int = 120, block_px: int = 96,
                       photo_size: tuple[int, int] = (96, 64), seed: int = 7) -> RenderWorld:
    """Write tiles/, photos/ and catalog.sqlite under `root` (a new folder); `bbox` = (west,
    south, east, north) limits the photos' nadirs (blocks within 10 degrees of it are kept)."""
    from astroapp.geo.render import random_camera, render_photo
    from astroapp.geo.sources.bluemarble import BlueMarbleSource
    from astroapp.geo.sources.earthloc_folder import format_earthloc_name

    root = Path(root)
    tiles, photos = root / "tiles", root / "photos"
    tiles.mkdir(parents=True)
    photos.mkdir()
    source = BlueMarbleSource(zooms=zooms)
    west, south, east, north = bbox
    for ref in source.tiles():
        lon, lat = ref.footprint.centroid()
        if west - 10 <= lon <= east + 10 and south - 10 <= lat <= north + 10:
            name = format_earthloc_name(ref.footprint, ref.tile_id.split("@")[0], ref.year or 2004)
            Image.fromarray(source.load(ref, block_px)).save(tiles / name, quality=92)
    rng = np.random.default_rng(seed)
    with Catalog(root / "catalog.sqlite") as catalog:
        for i in range(n_photos):
            render = render_photo(source, random_camera(rng, source, bbox=bbox), photo_size, rng)
            path = photos / f"ISS000-E-{i + 1:05d}.jpg"
            Image.fromarray(render.image).save(path, quality=92)
            pid = catalog.add_photo(path=path, sha256=f"{seed:08x}{i:056x}", width=photo_size[0],
                                    height=photo_size[1], format="JPEG", nasa_id=f"ISS000-E-{i + 1}")
            catalog.add_localization(pid, footprint=render.footprint, confidence=1.0, accepted_auto=False)
            catalog.record_review(pid, "render", "accept")
    return RenderWorld(tiles, root / "catalog.sqlite", n_photos)
