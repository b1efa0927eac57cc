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

VERSION = 3
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
    old_home = os.environ.get("ASTROAPP_HOME")
    os.environ["ASTROAPP_HOME"] = str(root.parent / "astroapp_home")  # the reprojected world, cached
    try:
        from astroapp.training.render_world import build_render_world

        built = build_render_world(root, bbox=BBOX, zooms=ZOOMS, n_photos=N_PHOTOS, block_px=BLOCK_PX)
    finally:
        if old_home is None:
            os.environ.pop("ASTROAPP_HOME", None)
        else:
            os.environ["ASTROAPP_HOME"] = old_home
    info = {"version": VERSION, "tiles": str(built.tiles), "catalog": str(built.catalog), "photos": built.photos}
    done.write_text(json.dumps(info))
    return info


def world(request) -> dict:
    """The world for a test session (pytest's `request`); built on first use.

    Kept in pytest's cache folder when the cache plugin is on, else in the session's temp dir."""
    cache = getattr(request.config, "cache", None)
    if cache is not None:
        base = Path(cache.mkdir("astroapp-training-world"))
    else:
        base = request.getfixturevalue("tmp_path_factory").getbasetemp() / "astroapp-training-world"
    return build_world(base / "world")
