"""Retrieval stage: catalogue photos -> candidates stored in the catalogue."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest
from test_index_support import BUILD_KW, GeneratedSource, make_model

from astroapp.catalog import Catalog
from astroapp.index import TileIndex, build_index, visible_radius_km
from astroapp.pipeline.retrieve import photo_region, retrieve_candidates
from astroapp.progress import Progress


@pytest.fixture(scope="module")
def model():
    return make_model(0)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, model):
    root = tmp_path_factory.mktemp("retrieve")
    source = GeneratedSource(24)
    build_index([source], model, root / "idx", **BUILD_KW)
    return root, source


def _write_photo(path, img, k):
    big = cv2.resize(np.ascontiguousarray(np.rot90(img, k)), (640, 640),
                     interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(path), cv2.cvtColor(big, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])


def test_candidates_are_stored_in_the_catalogue(tmp_path, setup, model):
    root, source = setup
    refs = list(source.tiles())
    cat = Catalog(tmp_path / "cat.sqlite")
    picks = [(refs[2], 1), (refs[9], 0), (refs[17], 3)]
    ids = []
    for n, (ref, k) in enumerate(picks):
        p = tmp_path / f"ISS064-E-{n + 1}.jpg"
        _write_photo(p, source.image(ref.tile_id), k)
        ids.append(cat.add_photo(path=p, sha256=f"{n:064d}", nasa_id=f"ISS064-E-{n + 1}"))
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    bad_id = cat.add_photo(path=bad, sha256="f" * 64)
    lon, lat = refs[9].footprint.centroid()
    cat.upsert_nasa_metadata("ISS064-E-2", nadir_lon=lon, nadir_lat=lat, altitude_km=415.0)
    cat.upsert_nasa_metadata("ISS064-E-3", nadir_lon=lon, nadir_lat=lat, altitude_km=415.0,
                             tilt_deg=55.0)

    seen: list[Progress] = []
    results = retrieve_candidates(cat, [*ids, bad_id], root / "idx", model, k=5,
                                  progress=seen.append, batch_size=2)
    assert [(e.stage, e.done, e.total) for e in seen] == [("retrieve", n, 4) for n in (1, 2, 3, 4)]
    assert {e.photo_id: e.item for e in seen} == {
        **{pid: f"ISS064-E-{n + 1}" for n, pid in enumerate(ids)}, bad_id: "broken.jpg"}
    assert all(e.result.photo_id == e.photo_id for e in seen)
    by_id = {r.photo_id: r for r in results}
    assert not by_id[bad_id].ok and "broken.jpg" in by_id[bad_id].error
    assert cat.get_photo(bad_id).status == "failed"
    for pid, (ref, k) in zip(ids, picks, strict=True):
        res = by_id[pid]
        assert res.ok and res.candidates[0].tile_id == ref.tile_id
        assert res.candidates[0].angle == 90 * k
        loc = cat.get_localization(res.localization_id)
        assert loc.method["stage"] == "retrieval" and loc.method["model"] == "astroapp-small"
        assert (loc.tile_id, loc.angle, loc.rank) == (ref.tile_id, 90 * k, 1)
        assert loc.footprint is None and loc.confidence is None  # not verified yet
        stored = cat.candidates(res.localization_id)
        assert [c.rank for c in stored] == [1, 2, 3, 4, 5]
        assert stored[0].tile_id == ref.tile_id and stored[0].angle == 90 * k
        assert stored[0].footprint == ref.footprint.to_list()
        assert stored[0].score == pytest.approx(res.candidates[0].score)
    # the photo with a NASA nadir point was searched within the visible circle
    reg = by_id[ids[1]].region
    assert reg is not None and reg == photo_region(cat, ids[1])
    assert cat.get_localization(by_id[ids[1]].localization_id).method["prior"]["radius_km"] > 400
    assert reg.radius_km == pytest.approx(visible_radius_km(415.0, 50.0))
    assert by_id[ids[2]].region.radius_km == pytest.approx(visible_radius_km(415.0, 65.0))
    assert by_id[ids[0]].region is None
    cat.close()


def test_cancel_and_mismatched_index(tmp_path, setup, model):
    root, source = setup
    cat = Catalog(tmp_path / "cat.sqlite")
    p = tmp_path / "a.jpg"
    _write_photo(p, source.image(next(source.tiles()).tile_id), 0)
    pid = cat.add_photo(path=p, sha256="a" * 64)
    stop = threading.Event()
    stop.set()
    assert retrieve_candidates(cat, [pid], root / "idx", model, cancel=stop) == []
    from astroapp.index import IndexMismatchError

    with pytest.raises(IndexMismatchError):
        retrieve_candidates(cat, [pid], root / "idx", make_model(3))
    index = TileIndex.open(root / "idx", model=model)
    res = retrieve_candidates(cat, [pid], index, model, k=3, store=False)
    assert res[0].localization_id is None and len(res[0].candidates) == 3
    assert cat.latest_localization(pid) is None
    cat.close()
