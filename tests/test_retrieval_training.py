"""Training data, evaluation protocol and the training loop, on a tiny real slice of the bundled world."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from astroapp.evaluation.model_recall import evaluate_reranked
from astroapp.geo.footprint import Footprint
from astroapp.geo.render import NO_AUGMENT, Camera, focal_scale_for, random_camera, render_photo
from astroapp.geo.sources.bluemarble import BlueMarbleSource
from astroapp.geo.tiles import lonlat_to_mercator
from astroapp.progress import Progress
from astroapp.retrieval import load_model
from astroapp.retrieval.dataset import WorldSet, _overlaps, aligning_angle, resized, up_azimuth
from astroapp.retrieval.recall import (
    colour_histogram,
    distinct_blocks,
    evaluate_embedder,
    intersections,
    model_embedder,
    recalls,
    rotations,
)
from astroapp.retrieval.train import train

SIDE = 48
TINY = {"widths": [8, 8, 16, 16, 32], "descriptor_dim": 32, "input_size": [SIDE, SIDE]}


@pytest.fixture(scope="module")
def source():
    return BlueMarbleSource(zooms=(4,))  # 34 land blocks: small and fast


@pytest.fixture(scope="module")
def tiny_set(source):
    refs = list(source.tiles())
    blocks = np.stack([source.load(r, SIDE) for r in refs])
    rng = np.random.default_rng(0)
    renders = [render_photo(source, random_camera(rng, source), SIDE, rng) for _ in range(12)]
    qfps = [r.footprint for r in renders]
    positives, best = _overlaps(qfps, [r.footprint for r in refs])
    return WorldSet(blocks, [r.tile_id for r in refs], [r.footprint for r in refs],
                    np.stack([r.image for r in renders]), qfps, ["x"] * len(qfps), positives, best,
                    np.array([aligning_angle(f) for f in qfps]), {"test": True})


@pytest.mark.parametrize("heading", [0, 90, 180, 270, 200])
def test_aligning_angle_turns_the_map_like_the_photo(source, heading):
    """The rotated north-up map correlates best with the photo at `aligning_angle`."""
    cam = Camera(lon=35.0, lat=25.0, focal_mm=900.0, heading_deg=heading, focal_scale=focal_scale_for(source))
    photo = render_photo(source, cam, 64, augment=NO_AUGMENT)
    assert abs((up_azimuth(photo.footprint) - heading + 180) % 360 - 180) < 1.0
    w, s, e, n = photo.footprint.bbox()
    xs, ys = lonlat_to_mercator(np.array([w, e]), np.array([s, n]))
    cx, cy, half = xs.mean(), ys.mean(), (xs[1] - xs[0]) / 2 / 1.4
    ref = source.read_mercator((cx - half, cy - half, cx + half, cy + half), 64, 64).astype(float)
    scores = [np.corrcoef(np.rot90(ref, k).ravel(), photo.image.astype(float).ravel())[0, 1] for k in range(4)]
    assert 90 * int(np.argmax(scores)) == aligning_angle(photo.footprint)


def test_recalls_follow_earthloc_indexing():
    # 3 blocks at 4 rotations: vector v is block v % 3 at angle (v // 3) * 90
    pred = np.array([[4, 0, 2], [2, 5, 3]])
    positives = [{1}, {0}]
    r = recalls(pred, 3, positives, ks=(1, 2, 3))
    assert r == {"R@1": 0.5, "R@2": 0.5, "R@3": 1.0}
    blocks = [Footprint.from_bounds(0, 0, 10, 10), Footprint.from_bounds(20, 0, 30, 10), Footprint.from_bounds(175, 0, -175, 10)]
    queries = [Footprint.from_bounds(9, 5, 21, 6), Footprint.from_bounds(179, 1, -179, 2), Footprint.from_bounds(50, 50, 51, 51)]
    assert intersections(queries, blocks) == [{0, 1}, {2}, set()]


def test_colour_histogram_is_a_unit_rotation_invariant_descriptor(tiny_set):
    h = colour_histogram(tiny_set.blocks)
    assert h.shape == (len(tiny_set.blocks), 512)
    assert np.allclose(np.linalg.norm(h, axis=1), 1, atol=1e-5)
    assert np.allclose(colour_histogram(rotations(tiny_set.blocks, 90)), h)


def test_database_images_as_queries_are_found_at_rank_one(tiny_set):
    """Sanity of the whole protocol: a block used as a query retrieves itself."""
    model = load_model("bundled", weights="random", device="cpu")
    res = evaluate_embedder("self", model_embedder(model), tiny_set.blocks, tiny_set.block_fps,
                            tiny_set.blocks, tiny_set.block_fps, ks=(1,))
    assert res.recalls["R@1"] == 1.0 and res.n_blocks == len(tiny_set.blocks)


def test_distinct_blocks_fold_rotations_in_rank_order():
    pred = np.array([[4, 1, 0, 3, 2], [5, 2, 8, 11, 0]])  # 3 blocks x 4 rotations
    assert distinct_blocks(pred, 3, 3).tolist() == [[1, 0, 2], [2, 0, -1]]  # -1: no third block
    assert distinct_blocks(np.array([[2, 5, 8]]), 3, 2).tolist() == [[2, -1]]


def test_geometric_reranking_recovers_blocks_from_a_random_ranking(source, tiny_set):
    """Random descriptors rank the true block anywhere; SIFT verification of the whole
    shortlist puts it first (turned photos included: SIFT is rotation invariant)."""
    from astroapp.pipeline.rerank import Reranker

    refs = list(source.tiles())
    hi = np.stack([source.load(r, 256) for r in refs])
    pick = np.arange(0, len(refs), 4)
    queries_hi = np.stack([np.rot90(hi[i], k) for k, i in enumerate(pick)])
    queries = np.stack([np.rot90(tiny_set.blocks[i], k) for k, i in enumerate(pick)])
    model = load_model("bundled", weights="random", device="cpu")
    res = evaluate_reranked("random", model_embedder(model), tiny_set.blocks, queries,
                            [{int(i)} for i in pick], Reranker(shortlist=len(refs)), hi, queries_hi,
                            ks=(1, 10))
    assert res.recalls["R@1"] == 1.0 and "re-ranking of top" in res.name


def test_training_loop_saves_a_loadable_model(tiny_set, tmp_path):
    torch.manual_seed(0)
    out = tmp_path / "tiny.safetensors"
    seen: list[Progress] = []
    report = train(out, epochs=2, batch_size=6, lr=1e-3, seed=0, device="cpu", threads=1,
                   model_config=TINY, train_set=tiny_set, val_set=tiny_set, progress=seen.append)
    # 12 renders in batches of 6: 2 steps per epoch, each reported; an epoch's last carries it
    assert [(e.stage, e.done, e.total) for e in seen] == [("train", n, 4) for n in (1, 2, 3, 4)]
    assert [e.item for e in seen] == ["epoch 1/2", "epoch 1/2", "epoch 2/2", "epoch 2/2"]
    assert [e.result for e in seen[1::2]] == report["history"]
    assert out.is_file() and json.loads(out.with_suffix(".json").read_text())["seed"] == 0
    assert set(report["test_recalls"]) == {"R@1", "R@10", "R@100"}
    assert all(0.0 <= v <= 1.0 for v in report["baseline_recalls"].values())
    assert len(report["history"]) == 2 and np.isfinite(report["history"][-1]["loss"])
    model = load_model("bundled", weights=out, device="cpu")
    assert model.input_size == (SIDE, SIDE) and model.descriptor_dim == 32
    assert json.loads(model.weights_metadata["training"])["epochs"] == 2


def test_resized_sets_keep_their_labels(tiny_set):
    small = resized(tiny_set, 24)
    assert small.blocks.shape[1:] == (24, 24, 3) and small.queries.shape[1:] == (24, 24, 3)
    assert small.positives == tiny_set.positives and small.description["size"] == 24
