"""Module-scoped fixtures shared by the training-free retrieval models' tests: textured
zoom-6 blocks of the bundled world, and the same blocks as an EarthLoc folder."""

from __future__ import annotations

import pytest
from PIL import Image

from astroapp.geo.sources.bluemarble import BlueMarbleSource
from astroapp.geo.sources.earthloc_folder import format_earthloc_name

N_TILES = 24


@pytest.fixture(scope="module")
def world_tiles():
    """Zoom-6 blocks of the bundled world (the ones with SIFT texture), 512 px."""
    src = BlueMarbleSource(zooms=(6,))
    refs = list(src.tiles())[:: 235 // N_TILES][:N_TILES]
    return refs, [src.load(r, size=512) for r in refs]


@pytest.fixture(scope="module")
def earthloc_folder(tmp_path_factory, world_tiles):
    folder = tmp_path_factory.mktemp("earthloc") / "2021_06"
    folder.mkdir()
    for ref, img in zip(*world_tiles, strict=True):
        name = format_earthloc_name(ref.footprint, ref.tile_id.split("@")[0], 2021)
        Image.fromarray(img).save(folder / name, quality=92)
    return folder
