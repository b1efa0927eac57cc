"""A reviewer's chosen candidate (review view, key T) is coregistered through the pipeline's
`coregister_candidate`: for a photo of 4096 px and more, decoded reduced, the stored GCPs
are still in file pixels (the GUI path used to omit the frame size)."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from astroapp.catalog import Catalog
from astroapp.catalog.importer import import_paths
from astroapp.geo.sources import open_source
from astroapp.geo.tiles import block_id, mercator_to_lonlat
from astroapp.pipeline.localize import coregister_candidate
from astroapp.pipeline.tiles import candidate_surroundings

TILE = (6, 26, 34)  # a zoom-6 block over the Sahara: textured, well inside the world
W, H = 4800, 3600


def test_chosen_candidate_of_a_large_photo_stores_file_pixel_gcps(tmp_path):
    source = open_source("bluemarble")
    cand_id = block_id(*TILE)
    chosen = {"rank": 2, "tile_id": cand_id, "source_id": "bluemarble", "angle": 0,
              "score": 0.5, "footprint": None}
    surr, grid = candidate_surroundings(source, type("C", (), chosen)(), 512)
    # the photo: the candidate block itself (the middle of its surroundings), enlarged
    photo = cv2.resize(surr[512:1024, 448:1088], (W, H), interpolation=cv2.INTER_CUBIC)
    roll = tmp_path / "roll"
    roll.mkdir()
    Image.fromarray(photo).save(roll / "big.jpg", quality=90)
    with Catalog(tmp_path / "c.sqlite") as cat:
        import_paths(cat, [roll])
        (p,) = cat.photos()
        assert (p.width, p.height) == (W, H)
        loc = cat.add_localization(p.id, method={"stage": "retrieval"})
        other = {**chosen, "rank": 1, "tile_id": block_id(6, 10, 10)}
        cat.add_candidates(loc, [other, chosen])
        cat.set_status(p.id, "review", "no confident candidate")
        out = coregister_candidate(cat, p.id, 2, reviewer="ana")
        assert out.outcome == "localized", out
        stored = cat.latest_localization(p.id)
        photo_after = cat.get_photo(p.id)
        assert [c.rank for c in cat.candidates(stored.id)] == [1, 2]
    assert photo_after.status == "localized" and stored.method["chosen_by"] == "ana"
    gcps = np.array(stored.gcps)
    assert gcps[:, 0].max() == W and gcps[:, 1].max() == H  # file pixels, not the decode's
    # the stored homography (photo px -> EPSG:3857 m) takes the photo's corners to the
    # stored footprint's corners
    m = np.array([[0, 0, 1], [W, 0, 1], [W, H, 1], [0, H, 1]], float) @ np.array(stored.homography).T
    lon, lat = mercator_to_lonlat(m[:, 0] / m[:, 2], m[:, 1] / m[:, 2])
    assert np.abs(np.column_stack([lon, lat]) - np.array(stored.footprint)).max() < 1e-6
    # the photo's corners land on the block it was cut from (within a few percent)
    lon0, lat0 = grid.pixel_to_lonlat(448, 512)
    top_left = gcps[(gcps[:, 0] == 0) & (gcps[:, 1] == 0)][0]
    assert abs(top_left[2] - float(lon0)) < 0.3 and abs(top_left[3] - float(lat0)) < 0.3
