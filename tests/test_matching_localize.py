"""`localize_photos` end to end: real catalogue, real faiss index, bundled world, SIFT."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import shapely
from test_index_support import BUILD_KW, make_model

from astroapp.catalog import Catalog
from astroapp.geo.footprint import Footprint
from astroapp.geo.render import random_camera, render_photo
from astroapp.geo.sources.bluemarble import BlueMarbleSource
from astroapp.index import build_index
from astroapp.pipeline.localize import localize_photos
from astroapp.pipeline.service import LocalizationService, LocalizeSettings
from astroapp.progress import Progress

# zoom-6 blocks over north Africa / Arabia: textured desert, well inside the world
ROWS = range(24, 30, 2)
COLS = range(30, 38, 2)
BBOX = (2.0, 18.0, 28.0, 30.0)  # nadir area (west, south, east, north) well inside them


class AfricaBlocks(BlueMarbleSource):
    """A few blocks of the bundled world: a small index that still has real imagery."""

    def __init__(self) -> None:
        super().__init__(zooms=(6,))

    def tiles(self):
        for ref in super().tiles():
            if ref.row in ROWS and ref.col in COLS:
                yield ref


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("localize")
    model = make_model(0)
    source = AfricaBlocks()
    build_index([source], model, root / "idx", source_specs=["bluemarble"], **BUILD_KW)
    rng = np.random.default_rng(7)
    photos = []
    for i in range(2):
        cam = random_camera(rng, source, bbox=BBOX, tilt_deg=(0.0, 20.0))
        render = render_photo(source, cam, (768, 512), rng)
        path = root / f"ISS070-E-{i + 1}.jpg"
        cv2.imwrite(str(path), cv2.cvtColor(render.image, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 92])
        photos.append((path, render.footprint))
    # far from every indexed block (South America): no candidate can be confident
    cam = random_camera(rng, source, bbox=(-65.0, -25.0, -45.0, -5.0))
    far = root / "ISS070-E-9.jpg"
    cv2.imwrite(str(far), cv2.cvtColor(render_photo(source, cam, 512, rng).image,
                                       cv2.COLOR_RGB2BGR))
    broken = root / "ISS070-E-10.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return root, model, photos, far, broken


def _catalog(tmp_path, world):
    root, model, photos, far, broken = world
    cat = Catalog(tmp_path / "cat.sqlite")
    ids = [cat.add_photo(path=p, sha256=f"{i:064d}") for i, (p, _) in enumerate(photos)]
    far_id = cat.add_photo(path=far, sha256="e" * 64)
    bad_id = cat.add_photo(path=broken, sha256="f" * 64)
    return cat, ids, far_id, bad_id


def test_localize_records_confident_review_and_failed(tmp_path, world):
    root, model, photos, _, _ = world
    cat, ids, far_id, bad_id = _catalog(tmp_path, world)
    reports: list[Progress] = []
    summary = localize_photos(cat, [*ids, far_id, bad_id], index_dir=root / "idx", model=model,
                              matcher="sift", progress=reports.append, k=12, max_candidates=12)
    assert {e.stage for e in reports} == {"localize"} and all(e.total == 4 for e in reports)
    assert [e.done for e in reports] == [0, 1, 1, 2, 2, 3, 3, 4]  # monotone: start, finish
    finished = [e for e in reports if e.result is not None]
    assert [e.done for e in finished] == [1, 2, 3, 4]
    started = [e.photo_id for e in reports if e.result is None]
    assert started == [*ids, far_id, bad_id]
    assert all(e.photo_id == e.result.photo_id for e in finished)
    # each event names its photo as a user reads it (its file name here: no NASA id)
    assert [e.item for e in finished] == [cat.get_photo(i).label for i in [*ids, far_id, bad_id]]
    assert finished[0].item == Path(photos[0][0]).name
    assert finished[0].message.startswith("localized (") and "inliers" in finished[0].message
    assert finished[0].text().startswith(f"localize 1/4 {finished[0].item}: localized")
    assert finished[2].message.startswith("to review: ")
    assert finished[3].message.startswith("failed: ")
    out = {o.photo_id: o for o in summary.outcomes}
    for pid, (_, truth) in zip(ids, photos, strict=True):
        assert out[pid].outcome == "localized", out[pid]
        photo = cat.get_photo(pid)
        assert photo.status == "localized" and photo.status_reason is None
        loc = cat.latest_localization(pid)
        assert loc.accepted_auto is True and loc.confidence >= 0.999
        assert loc.method["matcher"] == "sift" and loc.method["stage"] == "coregistration"
        assert loc.method["index"] == str(root / "idx") and loc.method["model"]
        assert loc.inliers >= loc.method["matcher_threshold"]
        assert set(loc.timings) >= {"retrieval_s", "coregistration_s", "total_s"}
        fp = Footprint.from_list(loc.footprint)
        assert fp.iou(truth) > 0.6, (fp.corners, truth.corners)
        assert len(loc.gcps) == 25 and len(loc.correspondences) > 0
        # the stored homography maps photo px to EPSG:3857 metres: the photo's corners land
        # on the stored footprint's corners
        from PIL import Image

        from astroapp.geo.tiles import mercator_to_lonlat

        w, h = Image.open(photo.path).size
        m = np.array([[0, 0, 1], [w, 0, 1], [w, h, 1], [0, h, 1]], float) @ np.array(loc.homography).T
        lon, lat = mercator_to_lonlat(m[:, 0] / m[:, 2], m[:, 1] / m[:, 2])
        assert np.abs(np.column_stack([lon, lat]) - np.array(fp.corners)).max() < 1e-6
        assert loc.method["homography"].endswith("EPSG:3857 m")
        assert len(cat.candidates(loc.id)) == 12
        # the shortlist (here the whole 12-block index) went through geometric re-ranking
        assert loc.method["rerank"]["shortlist"] == 100
        assert len(loc.method["rerank"]["inliers"]) == 12
        # the stored correspondences agree with the footprint's georeference
        px, py, lon, lat = loc.correspondences[0]
        assert fp.polygon().buffer(1.0).contains(shapely.Point(lon, lat))
    # no confident candidate: marked for review, never failed
    assert out[far_id].outcome == "review"
    far = cat.get_photo(far_id)
    assert far.status == "review" and far.status_reason and "needs review" not in far.status_reason
    assert cat.photos(status="review", ids=[*ids, far_id]) == [far]
    assert cat.latest_localization(far_id).accepted_auto is False
    # unreadable photo: failed with its reason, batch went on
    assert out[bad_id].outcome == "failed"
    bad = cat.get_photo(bad_id)
    assert bad.status == "failed" and "ISS070-E-10.jpg" in bad.status_reason
    assert not cat.photos(status="localizing")
    cat.close()


def test_cancel_leaves_nothing_localizing(tmp_path, world):
    root, model, _, _, _ = world
    cat, ids, far_id, bad_id = _catalog(tmp_path, world)
    cancel = threading.Event()
    seen = []

    def progress(event: Progress) -> None:
        if event.result is not None:
            seen.append(event.photo_id)
            cancel.set()  # cancel after the first photo

    summary = localize_photos(cat, [*ids, far_id], index_dir=root / "idx", model=model,
                              progress=progress, cancel=cancel, k=12, max_candidates=12)
    assert summary.cancelled and seen == [ids[0]]
    assert cat.get_photo(ids[0]).status == "localized"
    assert cat.get_photo(ids[1]).status == "new" and cat.get_photo(far_id).status == "new"
    assert not cat.photos(status="localizing")

    # a cancel in the middle of a photo: that photo goes back to its previous status quickly
    cancel2 = threading.Event()
    timer = threading.Timer(0.5, cancel2.set)
    timer.start()
    t0 = time.perf_counter()
    summary = localize_photos(cat, [far_id], index_dir=root / "idx", model=model,
                              cancel=cancel2, k=12, max_candidates=12)
    timer.cancel()
    if summary.cancelled:  # (on a fast machine the photo may finish before the cancel)
        assert cat.get_photo(far_id).status == "new"
        assert time.perf_counter() - t0 < 0.5 + 5.0
    assert not cat.photos(status="localizing")
    cat.close()


def test_service_runs_each_step_like_localize(tmp_path, world):
    """The one localization service step by step (retrieve, re-rank, coregister, store), a
    reviewer's chosen candidate, review and undo, and a whole batch through it."""
    root, model, photos, _, _ = world
    cat, ids, far_id, _ = _catalog(tmp_path, world)
    service = LocalizationService(cat, index=root / "idx", model=model, matcher="sift",
                                  settings=LocalizeSettings(k=12, max_candidates=12))
    pid = ids[0]
    frame = service.read_frame(pid)
    found = service.retrieve(pid, frame)
    assert found.ok and len(found.candidates) == 12  # the re-ranking shortlist: all 12 blocks
    cands = service.rerank(found, frame)
    assert sorted(c.tile_id for c in cands) == sorted(c.tile_id for c in found.candidates)
    assert all(c.inliers is not None for c in cands)  # verified geometrically
    res = service.coregister(pid, cands[0], frame)
    assert res.accepted and res.has_footprint
    loc_id = service.store(pid, res, cands[0], cands)
    loc = cat.latest_localization(pid)
    assert loc.id == loc_id and len(cat.candidates(loc_id)) == 12
    assert Footprint.from_list(loc.footprint).iou(photos[0][1]) > 0.6
    # a reviewer re-runs coregistration on a stored candidate: a new current localization
    out = service.coregister_candidate(pid, cands[0].rank, reviewer="ana")
    assert out.outcome == "localized" and out.localization_id != loc_id
    assert cat.latest_localization(pid).method["chosen_by"] == "ana"
    service.review(pid, "accept", "ana")
    assert cat.get_photo(pid).status == "accepted"
    assert service.undo_review(pid, "ana").action == "accept"
    assert cat.get_photo(pid).status == "localized"
    # the whole batch through the service: the same events as localize_photos
    seen: list[Progress] = []
    summary = service.localize([ids[1], far_id], progress=seen.append)
    assert [o.outcome for o in summary.outcomes] == ["localized", "review"]
    assert [(e.done, e.photo_id) for e in seen if e.result is not None] == [(1, ids[1]),
                                                                             (2, far_id)]
    assert service.release_stuck([*ids, far_id]) == 0
    cat.close()


def test_localize_cli(tmp_path, world, capsys):
    import torch

    from astroapp.cli import main

    root, _, photos, _, _ = world
    cat_path = tmp_path / "cat.sqlite"
    with Catalog(cat_path) as cat:
        pid = cat.add_photo(path=photos[0][0], sha256="a" * 64)
        done = cat.add_photo(path=photos[1][0], sha256="b" * 64)
        cat.set_status(done, "localized")
    common = ["--catalog", str(cat_path), "localize", "--index", str(root / "idx"),
              "--model", "astroapp-small", "--weights", "random", "--k", "12", "-q"]
    torch.manual_seed(0)  # the same seeded random weights the index was built with
    assert main([*common, "--json"]) == 0  # default: photos with status new
    data = json.loads(capsys.readouterr().out)
    assert [o["photo_id"] for o in data["photos"]] == [pid]
    assert data["photos"][0]["outcome"] == "localized"
    with Catalog(cat_path) as cat:
        assert cat.get_photo(pid).status == "localized"
        assert cat.latest_localization(done) is None  # not asked for
    assert main([*common, "999"]) == 2
    assert "no photo with id 999" in capsys.readouterr().err
    assert main(["--catalog", str(cat_path), "localize", "--index", str(tmp_path / "none")]) == 2


def test_a_photo_is_decoded_once_per_localization(tmp_path, world, monkeypatch):
    """Retrieval and coregistration share one decode of the photo (the one photo reader,
    counted where the pipeline calls it)."""
    import astroapp.pipeline.localize as localize_module
    import astroapp.pipeline.retrieve as retrieve_module
    from astroapp.catalog import photo_reader

    decoded = []

    def counted(path, *args, **kwargs):
        decoded.append(Path(path).name)
        return photo_reader.read_photo(path, *args, **kwargs)

    monkeypatch.setattr(localize_module, "read_photo", counted)
    monkeypatch.setattr(retrieve_module, "read_photo", counted)
    root, model, photos, _, _ = world
    cat, ids, _, _ = _catalog(tmp_path, world)
    summary = localize_photos(cat, ids[:1], index_dir=root / "idx", model=model, k=4,
                              max_candidates=2)
    assert [o.photo_id for o in summary.outcomes] == ids[:1]
    assert decoded == [photos[0][0].name]
    cat.close()


@pytest.mark.slow
def test_dense_stage_localizes_what_keypoints_cannot(tmp_path, world):
    """A photo whose contrast is inverted (as frozen lakes are, bright against a summer
    mosaic's dark water): SIFT's descriptors turn with the gradients, keypoints accept no
    candidate, and the dense stage (orientation fields, polarity-invariant) localizes it."""
    from astroapp.gui.review_text import describe_method

    root, model, _, _, _ = world
    # a footprint about a third of its candidate's 3x3 surroundings wide, as real photos
    # found at their zoom are (the zoom-6 blocks here are 22.5 degrees wide)
    rng = np.random.default_rng(11)
    source = AfricaBlocks()
    cam = random_camera(rng, source, bbox=BBOX, focal_mm=(520.0, 560.0), tilt_deg=(0.0, 5.0))
    render = render_photo(source, cam, (768, 512), rng)
    truth = render.footprint
    inverted = tmp_path / "ISS070-E-77.jpg"
    cv2.imwrite(str(inverted), cv2.cvtColor(255 - render.image, cv2.COLOR_RGB2BGR))
    cat = Catalog(tmp_path / "cat.sqlite")
    pid = cat.add_photo(path=inverted, sha256="a" * 64)
    service = LocalizationService(cat, index=root / "idx", model=model, matcher="sift",
                                  settings=LocalizeSettings(k=12, max_candidates=12))
    frame = service.read_frame(pid)
    found = service.retrieve(pid, frame)
    true = next(c for c in found.candidates
                if Footprint.from_list(c.footprint_list()).polygon().contains(
                    shapely.Point(*truth.centroid())))
    keypoints = service.coregister(pid, true, frame)
    assert not keypoints.accepted
    dense = service.coregister(pid, true, frame, stage="dense")
    assert dense.accepted and dense.stage == "dense" and dense.matcher == "dense-orientation"
    assert dense.footprint.iou(truth) > 0.6

    # through the whole pipeline: keypoints on every candidate, then the dense stage on the
    # first few (as many as it takes to reach the true block in the re-ranked order, to
    # keep the test short)
    order = [c.tile_id for c in service.rerank(found, frame)]
    k = max(2, order.index(true.tile_id) + 1)
    off = localize_photos(cat, [pid], index_dir=root / "idx", model=model, matcher="sift",
                          k=k, max_candidates=k, dense_candidates=0)
    assert off.outcomes[0].outcome == "review"
    assert cat.latest_localization(pid).method["dense_candidates"] == 0
    on = localize_photos(cat, [pid], index_dir=root / "idx", model=model, matcher="sift",
                         k=k, max_candidates=k, dense_candidates=k)
    assert on.outcomes[0].outcome == "localized", on.outcomes[0]
    loc = cat.latest_localization(pid)
    assert loc.method["coregistration_stage"] == "dense"
    assert loc.method["matcher"] == "dense-orientation"
    assert loc.inliers >= loc.method["matcher_threshold"]
    stages = [t["stage"] for t in loc.method["tried"]]
    assert stages[:k] == ["keypoints"] * k and stages[k:] == ["dense"] * (len(stages) - k)
    assert loc.method["tried"][-1]["tile_id"] == true.tile_id
    assert Footprint.from_list(loc.footprint).iou(truth) > 0.6
    assert "orientation fields" in describe_method(loc.method)
    cat.close()
