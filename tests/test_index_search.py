"""Index search: rotations folded to distinct tiles with the right angle, geographic prior,
the compressed (IVF-PQ) index and the torch backend agree with exact search."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from test_index_support import BUILD_KW, GeneratedSource, make_model

from astroapp.geo.tiles import block_footprint
from astroapp.index import (
    ModelFingerprint,
    Region,
    TileIndex,
    build_index,
    embed_images,
    haversine_km,
    visible_radius_km,
)
from astroapp.index.build import build_from_descriptors

N_TILES = 36


@pytest.fixture(scope="module")
def model():
    return make_model(0)


@pytest.fixture(scope="module")
def source():
    return GeneratedSource(N_TILES)


@pytest.fixture(scope="module")
def index(tmp_path_factory, model, source):
    out = tmp_path_factory.mktemp("search") / "idx"
    build_index([source], model, out, **BUILD_KW)
    return TileIndex.open(out, model=model)


def test_rotated_copies_retrieve_the_tile_with_its_angle(index, model, source):
    refs = list(source.tiles())
    picks = [(refs[i], k) for i, k in ((0, 0), (7, 1), (20, 2), (35, 3), (13, 1), (26, 3))]
    photos = [np.ascontiguousarray(np.rot90(source.image(r.tile_id), k)) for r, k in picks]
    results = index.search(embed_images(model, photos), k=5)
    for (ref, k), cands in zip(picks, results, strict=True):
        top = cands[0]
        assert (top.tile_id, top.angle, top.rank) == (ref.tile_id, 90 * k, 1)
        assert top.score == pytest.approx(1.0, abs=2e-3)
        assert top.footprint == ref.footprint
        assert (top.source_id, top.zoom, top.year) == ("gen", 8, 2021)


def test_results_are_distinct_tiles_best_first(index, model, source):
    q = embed_images(model, [source.image("08_0082_0130@2021"), source.image("08_0084_0140@2021")])
    for cands in index.search(q, k=12):
        assert len(cands) == 12
        assert len({c.tile_id for c in cands}) == 12
        assert [c.rank for c in cands] == list(range(1, 13))
        scores = [c.score for c in cands]
        assert scores == sorted(scores, reverse=True)
    everything = index.search(q[:1], k=1000)[0]
    assert len(everything) == N_TILES  # k larger than the index: every tile once


def test_rotations_are_folded_keeping_the_best_angle(index, model, source):
    q = embed_images(model, [source.image("08_0080_0130@2021")])
    cands = index.search(q, k=N_TILES)[0]
    vecs = index._searcher.vectors()
    for c in cands[:8]:
        scores = vecs[4 * c.index_id : 4 * c.index_id + 4] @ q[0]
        assert c.angle == 90 * int(np.argmax(scores))
        assert c.score == pytest.approx(float(scores.max()), abs=1e-5)


def test_region_prior_restricts_candidates(index, model, source):
    refs = {r.tile_id: r for r in source.tiles()}
    far = refs["08_0084_0142@2021"]
    near = refs["08_0080_0120@2021"]
    lon, lat = near.footprint.centroid()
    region = Region(lon, lat, 400.0)
    q = embed_images(model, [source.image(far.tile_id), source.image(near.tile_id)])
    free, regional = index.search(q, k=5), index.search(q, k=5, region=region)
    assert free[0][0].tile_id == far.tile_id
    assert far.tile_id not in {c.tile_id for c in regional[0]}
    assert regional[1][0].tile_id == near.tile_id
    for cands in regional:
        assert 0 < len(cands) <= 5
        for c in cands:
            clon, clat = c.footprint.centroid()
            d = haversine_km(lon, lat, np.array([clon]), np.array([clat]))[0]
            assert d < 400.0 + 500.0  # centre within radius + a zoom-8 block's half-diagonal
    # one region per query, None = no prior
    mixed = index.search(q, k=3, region=[region, None])
    assert far.tile_id not in {c.tile_id for c in mixed[0]}
    assert mixed[1][0].tile_id == near.tile_id
    assert index.search(q[:1], k=3, region=Region(-120.0, -40.0, 100.0)) == [[]]


def test_visible_radius_matches_ray_sphere_intersection():
    assert visible_radius_km(420.0, 0.0) == 0.0
    r, h = 6371.0088, 420.0
    for tilt in (10.0, 30.0, 50.0):
        t = math.radians(tilt)
        # distance along the ray to the sphere: |p + s*u| = r with p=(0, r+h), u=(sin t, -cos t)
        b = -2 * (r + h) * math.cos(t)
        c = (r + h) ** 2 - r**2
        s = (-b - math.sqrt(b * b - 4 * c)) / 2
        x, y = s * math.sin(t), (r + h) - s * math.cos(t)
        expect = r * math.atan2(x, y)
        assert visible_radius_km(h, tilt) == pytest.approx(expect, rel=1e-9)
    assert 500 < visible_radius_km(420.0, 50.0) < 560
    horizon = r * math.acos(r / (r + h))
    assert visible_radius_km(420.0, 89.0) == pytest.approx(horizon)
    reg = Region.around_nadir(10.0, 45.0, 420.0, 50.0, margin_km=100.0)
    assert reg.radius_km == pytest.approx(visible_radius_km(420.0, 50.0) + 100.0)
    with pytest.raises(ValueError):
        Region(0.0, 95.0, 10.0)
    with pytest.raises(ValueError):
        visible_radius_km(-1.0, 10.0)


def test_torch_backend_matches_faiss(index, model, source):
    q = embed_images(model, [source.image("08_0084_0126@2021")])
    tidx = TileIndex.open(index.folder, model=model, backend="torch")
    assert tidx.backend == "torch"
    a = [(c.tile_id, c.angle) for c in index.search(q, k=8)[0]]
    b = [(c.tile_id, c.angle) for c in tidx.search(q, k=8)[0]]
    assert a == b


def _synthetic(n_tiles: int, dim: int, seed: int = 0) -> np.ndarray:
    """Clustered unit descriptors (n, 4, dim): tiles share region-level cluster centres."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((16, dim)).astype(np.float32)
    x = centres[rng.integers(0, 16, n_tiles)][:, None, :] + 0.8 * rng.standard_normal(
        (n_tiles, 4, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=2, keepdims=True)


def test_compressed_index_agrees_with_exact(tmp_path, monkeypatch):
    n, dim = 600, 64
    refs = [SimpleNamespace(tile_id=f"t{i}", footprint=block_footprint(8, 60 + 2 * (i // 30),
                            100 + 2 * (i % 30)), zoom=8, row=0, col=0, year=2020)
            for i in range(n)]
    desc = _synthetic(n, dim)
    fp = ModelFingerprint("synthetic", "0" * 64, dim)
    pre = {"input_size": [1, 1]}
    build_from_descriptors(tmp_path / "flat", "syn", refs, desc, fp, pre, chunk_size=128,
                           index_type="flat")
    rep = build_from_descriptors(tmp_path / "ivf", "syn", refs, desc, fp, pre, chunk_size=128,
                                 index_type="ivfpq")
    assert rep.index_type == "ivfpq"
    flat = TileIndex.open(tmp_path / "flat", fingerprint=fp)
    ivf = TileIndex.open(tmp_path / "ivf", fingerprint=fp)
    assert ivf.index_type == "ivfpq" and ivf.manifest["faiss"]["factory"].startswith("IVF")
    rng = np.random.default_rng(1)
    truth = rng.integers(0, n, 40)
    rot = rng.integers(0, 4, 40)
    q = desc[truth, rot] + (0.5 / np.sqrt(dim)) * rng.standard_normal((40, dim)).astype(np.float32)
    a, b = flat.search(q, k=10), ivf.search(q, k=10)
    top1 = [(c[0].tile_id, c[0].angle) for c in b]
    assert top1 == [(f"t{t}", 90 * r) for t, r in zip(truth, rot, strict=True)]
    overlap = np.mean([len({c.tile_id for c in x} & {c.tile_id for c in y}) / 10
                       for x, y in zip(a, b, strict=True)])
    assert overlap >= 0.9
    for x in b:
        assert len(x) == 10 and len({c.tile_id for c in x}) == 10
    # region search on the compressed index is exact within the region
    lon, lat = refs[45].footprint.centroid()
    reg = Region(lon, lat, 300.0)
    ra, rb = flat.search(q[:5], k=5, region=reg), ivf.search(q[:5], k=5, region=reg)
    for x, y in zip(ra, rb, strict=True):
        assert [(c.tile_id, c.angle) for c in x] == [(c.tile_id, c.angle) for c in y]
    # large regions go through faiss ID selectors instead of a direct scan: same answers
    import astroapp.index.tile_index as ti

    monkeypatch.setattr(ti, "SUBSET_SCAN_MAX", 0)
    sa, sb = flat.search(q[:5], k=5, region=reg), ivf.search(q[:5], k=5, region=reg)
    for x, y, z in zip(ra, sa, sb, strict=True):
        assert [(c.tile_id, c.angle) for c in x] == [(c.tile_id, c.angle) for c in y]
        assert {c.tile_id for c in x} == {c.tile_id for c in z}


def test_recall_evaluation_on_known_footprints(index, model, source, tmp_path):
    import json

    import cv2

    from astroapp.evaluation.index_recall import Query, demo_queries, retrieval_recall

    refs = list(source.tiles())
    queries = [Query(np.ascontiguousarray(np.rot90(source.image(r.tile_id), i % 4)), r.footprint,
                     r.footprint.centroid()) for i, r in enumerate(refs[::5])]
    res = retrieval_recall(index, model, queries, ks=(1, 10))
    assert res["recall@1"] == 1.0 and res["recall@10"] == 1.0
    assert res["queries"] == len(queries)
    prior = retrieval_recall(index, model, queries, ks=(1,), use_prior=True)
    assert prior["recall@1"] == 1.0
    # a photo whose true footprint lies where no tile is counts as missed
    from astroapp.geo.footprint import Footprint

    elsewhere = Footprint.from_bounds(-120.0, -40.0, -119.0, -39.0)
    miss = retrieval_recall(index, model, [Query(queries[0].image, elsewhere)], ks=(10,))
    assert miss["recall@10"] == 0.0
    # a roll folder in the demo roll's format (photos + truth.json)
    photos = []
    for i, r in enumerate(refs[:3]):
        name = f"ISS999-E-{i + 1}.jpg"
        cv2.imwrite(str(tmp_path / name), cv2.cvtColor(source.image(r.tile_id), cv2.COLOR_RGB2BGR))
        lon, lat = r.footprint.centroid()
        photos.append({"file": name, "footprint": r.footprint.to_list(),
                       "camera": {"lon": lon, "lat": lat, "altitude_km": 420.0}})
    (tmp_path / "truth.json").write_text(json.dumps({"version": 1, "photos": photos}))
    roll, what = demo_queries(tmp_path)
    assert len(roll) == 3 and roll[0].nadir == pytest.approx(refs[0].footprint.centroid())
    assert retrieval_recall(index, model, roll, ks=(1,), use_prior=True)["recall@1"] == 1.0


@pytest.mark.slow
def test_demo_index_is_built_once_then_reused(model):
    from astroapp.index.demo import ensure_demo_index

    folder = ensure_demo_index(model, zooms=(4,))
    man = (folder / "manifest.json").stat().st_mtime_ns
    index = TileIndex.open(folder, model=model)
    assert len(index) > 20 and index.manifest["counts"]["sources"] == {"bluemarble": len(index)}
    assert ensure_demo_index(model, zooms=(4,)) == folder
    assert (folder / "manifest.json").stat().st_mtime_ns == man


def test_streamed_vectors_gather_what_the_memory_map_holds(tmp_path, monkeypatch):
    """The IVF-PQ training sample is read from the chunk files in slices, not through the
    map: same vectors, any label order, across chunk and slice boundaries."""
    from astroapp.index.backend import ChunkVectors
    from astroapp.index.build import _StreamedChunkVectors
    from astroapp.index.store import TileStore

    n, dim = 300, 16
    refs = [SimpleNamespace(tile_id=f"t{i}", footprint=block_footprint(8, 60, 100 + 2 * (i % 60)),
                            zoom=8, row=0, col=0, year=2020) for i in range(n)]
    desc = _synthetic(n, dim)
    fp = ModelFingerprint("synthetic", "0" * 64, dim)
    build_from_descriptors(tmp_path / "idx", "syn", refs, desc, fp, {"input_size": [1, 1]},
                           chunk_size=128, index_type="flat")
    chunks = TileStore(tmp_path / "idx").chunks()
    monkeypatch.setattr(_StreamedChunkVectors, "BLOCK_BYTES", 7 * 4 * dim * 4)  # 7 tiles a slice
    labels = np.random.default_rng(3).permutation(4 * n)[:500]
    mapped = ChunkVectors(tmp_path / "idx", chunks, dim).get(labels)
    streamed = _StreamedChunkVectors(tmp_path / "idx", chunks, dim).get(labels)
    assert len(chunks) == 3 and np.array_equal(mapped, streamed)
    assert np.allclose(streamed, desc.reshape(-1, dim)[labels], atol=2e-3)  # stored as float16
