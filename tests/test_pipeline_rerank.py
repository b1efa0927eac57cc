"""Geometric re-ranking of retrieval candidates, on real blocks of the bundled world."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from astroapp.geo.sources.bluemarble import BlueMarbleSource
from astroapp.index import Candidate
from astroapp.pipeline.rerank import (
    MIN_INLIERS,
    VERIFY_ALL,
    Reranker,
    scale_sides,
    tile_width_km,
    verified_order,
)

SIZE = 256


@pytest.fixture(scope="module")
def tiles():
    """Six zoom-7 land blocks far apart, north-up at the re-ranking size."""
    source = BlueMarbleSource(zooms=(7,))
    refs = list(source.tiles())
    picks = [refs[i] for i in np.linspace(0, len(refs) - 1, 6).round().astype(int)]
    return picks, {r.tile_id: source.load(r, SIZE) for r in picks}


def _photo(tile: np.ndarray, k: int) -> np.ndarray:
    """The central 70 % of a tile, turned k quarter turns CCW, hazier, at another size."""
    h = tile.shape[0]
    crop = tile[int(0.15 * h): int(0.85 * h), int(0.15 * h): int(0.85 * h)]
    photo = np.rot90(crop, k).astype(np.float32) * 0.8 + 40.0
    return cv2.resize(np.clip(photo, 0, 255).astype(np.uint8), (400, 400))


def _cands(refs) -> list[Candidate]:
    return [Candidate(r.tile_id, "bluemarble", 0, 0.9 - 0.1 * i, r.footprint, i + 1, i, 7)
            for i, r in enumerate(refs)]


def test_verified_order_sorts_verified_first_and_keeps_the_rest_in_order():
    assert verified_order([3, 20, 0, 9, 20], min_inliers=8).tolist() == [1, 4, 3, 0, 2]
    assert verified_order([]).tolist() == []


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_true_tile_goes_first_with_its_rotation(tiles, k):
    refs, images = tiles
    truth = refs[4]
    reranker = Reranker(shortlist=50)
    out = reranker.rerank(_photo(images[truth.tile_id], k), _cands(refs),
                          lambda c: images[c.tile_id])
    assert out[0].tile_id == truth.tile_id
    assert out[0].inliers >= MIN_INLIERS and out[0].angle == 90 * k
    assert [c.rank for c in out] == list(range(1, len(refs) + 1))
    # the unverified ones keep their retrieval order (and retrieval angle) behind it
    rest = [c for c in out[1:] if (c.inliers or 0) < MIN_INLIERS]
    assert [c.index_id for c in rest] == sorted(c.index_id for c in rest)
    assert all(c.angle == 0 for c in rest)


def test_only_the_shortlist_is_verified_and_bad_tiles_are_skipped(tiles):
    refs, images = tiles
    truth = refs[1]

    def read(c):
        if c.tile_id == refs[0].tile_id:
            raise OSError("tile file is gone")
        return images[c.tile_id]

    photo = _photo(images[truth.tile_id], 0)
    out = Reranker(shortlist=3, stop_inliers=None).rerank(photo, _cands(refs), read)
    assert out[0].tile_id == truth.tile_id
    unverified = [c for c in out if c.inliers is None]
    assert [c.tile_id for c in unverified] == [r.tile_id for r in refs[3:]]
    assert next(c for c in out if c.tile_id == refs[0].tile_id).inliers == 0
    # a sure match ends the verification: the tiles after it keep their order, unverified
    early = Reranker(shortlist=6, stop_inliers=20).rerank(photo, _cands(refs), read)
    assert early[0].tile_id == truth.tile_id and early[0].inliers >= 20
    assert [c.inliers for c in early[1:]] == [0] + [None] * 4
    # cancelled before the first tile: nothing verified, retrieval order kept
    stop = threading.Event()
    stop.set()
    out = Reranker().rerank(photo, _cands(refs), read, cancel=stop)
    assert [c.tile_id for c in out] == [r.tile_id for r in refs]
    assert all(c.inliers is None for c in out)


def test_reranker_refuses_silly_settings():
    with pytest.raises(ValueError, match="shortlist"):
        Reranker(shortlist=0)


def test_scale_sides_and_verification_budget():
    # a 1150 mm photo (13 km) against a 63 km block: the block is enlarged (at most 4x)
    assert scale_sides(256, 13.0, 63.0) == (256, 1024)
    assert scale_sides(256, 100.0, 50.0) == (512, 256)
    assert scale_sides(256, None, 50.0) == (256, 256)
    # a hint 30x off every block (the demo world's nominal focal lengths) changes nothing
    assert scale_sides(256, 20.0, 625.0) == (256, 256)
    reranker = Reranker(shortlist=100)
    assert reranker.budget(40) == 100 and reranker.budget(VERIFY_ALL) == VERIFY_ALL
    assert reranker.budget(VERIFY_ALL + 1) == 100


def test_a_photo_of_a_quarter_of_a_tile_verifies_at_its_scale():
    source = BlueMarbleSource(zooms=(6,))
    refs = list(source.tiles())
    picks = [refs[i] for i in np.linspace(0, len(refs) - 1, 5).round().astype(int)]
    truth = picks[2]
    big = source.load(truth, 1024)
    photo = cv2.resize(big[384:640, 384:640], (400, 400), interpolation=cv2.INTER_AREA)
    cands = _cands(picks)
    width = tile_width_km(cands[2])
    assert width is not None and width > 100

    def read(c, side=SIZE):
        return source.load(next(r for r in picks if r.tile_id == c.tile_id), side)

    reranker = Reranker(shortlist=5, stop_inliers=None)
    plain = reranker.rerank(photo, cands, read)
    scaled = reranker.rerank(photo, cands, read, photo_width_km=width / 4)
    assert scaled[0].tile_id == truth.tile_id and scaled[0].inliers >= MIN_INLIERS
    assert scaled[0].inliers > next(c.inliers for c in plain if c.tile_id == truth.tile_id)
