"""A small learnable world for the training tests: Blue Marble blocks written as an EarthLoc
folder (a real tile source that later processes open in milliseconds), rendered astronaut
photos over it saved as JPEGs, and a real SQLite catalogue in which they are accepted with
their true footprints.

Built once and kept in pytest's cache folder (the Blue Marble reprojection too), so every test
file and the subprocesses of the kill test reuse it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

VERSION = 2
BBOX = (-20.0, 0.0, 60.0, 45.0)  # Sahara, Arabia, Mediterranean: land, several 10-degree cells
ZOOMS = (7, 8)
N_PHOTOS = 120
BLOCK_PX = 96
TINY = {"input_size": [56, 56], "depth": 2, "clusters": 8, "cluster_dim": 16, "token_dim": 32}


def build_world(root: Path) -> dict:
    """The world under `root` (tiles/, photos/, catalog.sqlite); returns its description."""
    done = root / "world.json"
    if done.is_file() and json.loads(done.read_text()).get("version") == VERSION:
        return json.loads(done.read_text())
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    old_home = os.environ.get("ASTROAPP_HOME")
    os.environ["ASTROAPP_HOME"] = str(root.parent / "astroapp_home")  # the reprojected world, cached
    try:
        from astroapp.catalog.db import Catalog
        from astroapp.geo.render import random_camera, render_photo
        from astroapp.geo.sources.bluemarble import BlueMarbleSource
        from astroapp.geo.sources.earthloc_folder import format_earthloc_name

        source = BlueMarbleSource(zooms=ZOOMS)
        tiles = root / "tiles"
        tiles.mkdir()
        west, south, east, north = BBOX
        for ref in source.tiles():
            lon, lat = ref.footprint.centroid()
            if west - 10 <= lon <= east + 10 and south - 10 <= lat <= north + 10:
                img = source.load(ref, BLOCK_PX)
                name = format_earthloc_name(ref.footprint, ref.tile_id.split("@")[0], 2004)
                Image.fromarray(img).save(tiles / name, quality=92)
        rng = np.random.default_rng(7)
        photos = root / "photos"
        photos.mkdir()
        catalog = Catalog(root / "catalog.sqlite")
        for i in range(N_PHOTOS):
            cam = random_camera(rng, source, bbox=BBOX)
            render = render_photo(source, cam, (96, 64), rng)
            path = photos / f"ISS000-E-{i + 1:05d}.jpg"
            Image.fromarray(render.image).save(path, quality=92)
            pid = catalog.add_photo(path=path, sha256=f"{i:064x}", width=96, height=64, format="JPEG",
                                    nasa_id=f"ISS000-E-{i + 1}")
            catalog.add_localization(pid, footprint=render.footprint, confidence=0.99, accepted_auto=False)
            catalog.record_review(pid, "test", "accept")
        catalog.close()
    finally:
        if old_home is None:
            os.environ.pop("ASTROAPP_HOME", None)
        else:
            os.environ["ASTROAPP_HOME"] = old_home
    info = {"version": VERSION, "tiles": str(tiles), "catalog": str(root / "catalog.sqlite"), "photos": N_PHOTOS}
    done.write_text(json.dumps(info))
    return info


def world(request) -> dict:
    """The world for a test session (pytest's `request`); built on first use."""
    return build_world(Path(request.config.cache.mkdir("astroapp-training-world")) / "world")
