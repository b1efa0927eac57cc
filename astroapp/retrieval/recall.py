"""Recall@k of an image embedder on renders, EarthLoc's protocol: the primitives that
training (validation during training) and the evaluation package both use.

Database blocks are embedded at 0/90/180/270 degrees (`np.rot90`, counter-clockwise), queries
at 0 only; exhaustive inner-product search (= L2 on unit vectors) over the 4N vectors;
`pred % N` is the block, `(pred // N) * 90` the angle. A retrieval is correct when the block's
footprint intersects the query's. A training-free colour-histogram baseline is evaluated the
same way, so numbers say how much the learned model adds. The whole evaluation on the bundled
world (with re-ranking) is `astroapp.evaluation.model_recall`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import faiss
import numpy as np
import shapely
import torch

from astroapp.geo.footprint import Footprint
from astroapp.retrieval.base import RetrievalModel, preprocess

log = logging.getLogger(__name__)

ANGLES = (0, 90, 180, 270)
Embedder = Callable[[np.ndarray], np.ndarray]  # (B,H,W,3) uint8 -> (B,D) float32 unit rows


def rotations(images: np.ndarray, angle: int) -> np.ndarray:
    """Rotate a (B,H,W,3) stack counter-clockwise by a multiple of 90 degrees."""
    return np.ascontiguousarray(np.rot90(images, k=(angle // 90) % 4, axes=(1, 2)))


def model_embedder(model: RetrievalModel, batch_size: int = 64) -> Embedder:
    def embed(images: np.ndarray) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for i in range(0, len(images), batch_size):
                out.append(model(preprocess(list(images[i : i + batch_size]), model)).cpu().numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, model.descriptor_dim), np.float32)

    return embed


def colour_histogram(images: np.ndarray, bins: int = 8) -> np.ndarray:
    """Joint RGB histogram (bins^3), Hellinger-mapped (sqrt) and L2-normalised: a training-free baseline."""
    q = (images.astype(np.int32) * bins) // 256
    codes = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]
    codes = codes.reshape(len(images), -1)
    hist = np.stack([np.bincount(c, minlength=bins**3) for c in codes]).astype(np.float32)
    hist = np.sqrt(hist / np.maximum(hist.sum(1, keepdims=True), 1))
    return hist / np.maximum(np.linalg.norm(hist, axis=1, keepdims=True), 1e-12)


def embed_database(embed: Embedder, blocks: np.ndarray, angles: Sequence[int] = ANGLES) -> np.ndarray:
    """(len(angles) * N, D): all blocks at angles[0], then all at angles[1], ..."""
    return np.concatenate([embed(rotations(blocks, a)) for a in angles])


def intersections(queries: Sequence[Footprint], blocks: Sequence[Footprint]) -> list[set[int]]:
    """For each query, the indices of the blocks whose footprint it intersects."""
    tree = shapely.STRtree([b.polygon() for b in blocks])
    return [set(tree.query(q.polygon(), predicate="intersects").tolist()) for q in queries]


def search(db: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    index = faiss.IndexFlatIP(db.shape[1])
    index.add(np.ascontiguousarray(db, dtype=np.float32))
    _, pred = index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, len(db)))
    return pred


def recalls(pred: np.ndarray, n_blocks: int, positives: Sequence[set[int]], ks: Sequence[int] = (1, 10, 100)) -> dict[str, float]:
    tiles = np.where(pred >= 0, pred % n_blocks, -1)  # -1: no result
    hit = np.array([[t in pos for t in row] for row, pos in zip(tiles, positives, strict=True)])
    return {f"R@{k}": float(hit[:, :k].any(axis=1).mean()) for k in ks if k <= pred.shape[1]}


@dataclass
class EvalResult:
    name: str
    recalls: dict[str, float]
    n_queries: int
    n_blocks: int
    seconds: float

    def line(self) -> str:
        rec = "  ".join(f"{k}={v:.3f}" for k, v in self.recalls.items())
        return f"{self.name:<22} {rec}  ({self.n_queries} queries, {self.n_blocks} blocks x4, {self.seconds:.1f}s)"


def evaluate_embedder(name: str, embed: Embedder, blocks: np.ndarray, block_fps: Sequence[Footprint],
                      queries: np.ndarray, query_fps: Sequence[Footprint], ks: Sequence[int] = (1, 10, 100),
                      positives: Sequence[set[int]] | None = None) -> EvalResult:
    t0 = time.perf_counter()
    db = embed_database(embed, blocks)
    q = embed(queries)
    pred = search(db, q, max(ks))
    positives = positives if positives is not None else intersections(query_fps, block_fps)
    return EvalResult(name, recalls(pred, len(blocks), positives, ks), len(queries), len(blocks), time.perf_counter() - t0)


def distinct_blocks(pred: np.ndarray, n_blocks: int, k: int) -> np.ndarray:
    """Per query, the first `k` distinct blocks of a ranking over the 4N vectors (-1 pads)."""
    out = np.full((len(pred), k), -1, np.int64)
    for i, row in enumerate(pred % n_blocks):
        _, first = np.unique(row, return_index=True)
        seen = row[np.sort(first)][:k]
        out[i, : len(seen)] = seen
    return out
