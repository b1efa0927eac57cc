"""sift-vote: tiles ranked by the votes of their own RootSIFT features, not by one vector each.

Aggregating a block's features into one vector loses what retrieval on real imagery needs: a
photo covers 1/3-1/10 of a block's width, so most of the block's features are not in the
photo, and a bag of words (sift-bow) or VLAD drowns the photo's few shared structures in the
rest (measured on benchmarks/real_world.py, no prior: sift-bow R@10 0.4, Hamming-embedded
4,096 words 0.4-0.6). Here every photo feature finds its `neighbours` nearest tile features
and votes for each tile among them with Lowe's ratio as weight, 1 - d(tile)/d(k-th)
(naive-Bayes nearest neighbour, Boiman et al. 2008): a feature whose nearest tile features
are much closer than its k-th votes strongly, repeated texture (fields, dunes) votes weakly
for everything. Same benchmark: R@1/R@10 0.8/0.8.

The tile features live in a faiss IVF-PQ index (`nlist` coarse cells, `pq_bytes` bytes per
feature) whose cells and codebooks are learned at index build time from the index's own
tiles, with the bag-of-words vocabulary of sift-bow (kept as the index's global descriptor),
and stored with it (`vocabulary.safetensors`): nothing is trained elsewhere, nothing is
downloaded. `astroapp.index.local_votes` holds the tiles' codes and does the voting.

    model = load_model("sift-vote")
    model.fit(sample_tiles)                        # words + feature quantizer
    bow, codes = model.describe(images)            # (B, words) unit vectors, codes per image
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from .sift_bow import SiftBow, VocabularyMissingError

NAME = "sift-vote"
DEFAULT_CONFIG = {"words": 512, "input_size": 512, "max_features": 1500, "power": 0.25,
                  "pq_bytes": 32, "neighbours": 20}
QUANTIZER_TRAIN_MAX = 100_000  # features the coarse cells and PQ codebooks are learned from


class SiftVote(SiftBow):
    """sift-bow's words as the global descriptor, plus each tile's RootSIFT features encoded
    for nearest-neighbour voting (`encode`)."""

    local_votes = True  # the index keeps every tile's feature codes (astroapp.index.local_votes)

    def __init__(self, words: int = 512, input_size: int = 512, max_features: int = 1500,
                 power: float = 0.25, pq_bytes: int = 32, neighbours: int = 20) -> None:
        super().__init__(words, input_size, max_features, power)
        if 128 % int(pq_bytes):
            raise ValueError(f"pq_bytes must divide 128, got {pq_bytes}")
        self.name = NAME
        self.pq_bytes = int(pq_bytes)
        self.neighbours = int(neighbours)
        self.config = {**self.config, "pq_bytes": self.pq_bytes, "neighbours": self.neighbours}
        self.register_buffer("quantizer", torch.zeros(0, dtype=torch.uint8))
        self._faiss: Any = None

    def __getstate__(self) -> dict[str, Any]:
        """Picklable (Ray ships the model to its workers): the faiss encoder is rebuilt from
        the quantizer buffer on first use."""
        return {**super().__getstate__(), "_faiss": None}

    def prepare_state(self, state: dict[str, torch.Tensor]) -> None:
        q = state.get("quantizer")
        if q is not None:
            self.quantizer = torch.zeros(q.shape, dtype=torch.uint8)
        self._faiss = None

    # --- learning ---------------------------------------------------------------------------
    def fit_features(self, per_image: list[np.ndarray], seed: int = 0,
                     expected_tiles: int | None = None) -> np.ndarray:
        """The words (sift-bow), then the feature quantizer: IVF cells sized for the index
        being built (2 sqrt of the features `expected_tiles` will hold, so that a search
        scans about as many codes per cell at any size) and PQ codebooks, from the same
        tiles."""
        import faiss

        pool = super().fit_features(per_image, seed, expected_tiles)
        n = len(pool)
        per_tile = sum(len(d) for d in per_image) / max(len([d for d in per_image if len(d)]), 1)
        total = max(n, per_tile * (expected_tiles or 0))
        nlist = int(2 ** round(math.log2(max(16.0, 2 * math.sqrt(total)))))
        nlist = 2 ** int(math.log2(max(16, min(nlist, 16384, min(n, QUANTIZER_TRAIN_MAX) // 40))))
        rng = np.random.default_rng(seed + 1)
        train = pool if n <= QUANTIZER_TRAIN_MAX else pool[
            rng.choice(n, QUANTIZER_TRAIN_MAX, replace=False)]
        # 2**bits centroids per sub-quantizer want >= ~40 features each: a small index gets
        # coarser codebooks rather than none
        bits = min(8, int(math.log2(max(len(train), 1) / 40)) if len(train) >= 40 else 0)
        if bits < 4:
            raise ValueError(f"too few local features ({len(train)}) to learn the feature "
                             "quantizer of sift-vote; the index needs more (or more textured) "
                             "tiles (or use --model sift-bow)")
        index = faiss.index_factory(128, f"IVF{nlist},PQ{self.pq_bytes}x{bits}np")
        index.cp.seed = index.pq.cp.seed = seed  # reproducible builds
        index.train(np.ascontiguousarray(train, dtype=np.float32))
        blob = faiss.serialize_index(index)
        with torch.no_grad():
            self.quantizer = torch.from_numpy(np.array(blob, dtype=np.uint8))
        self._faiss = None
        return pool

    # --- encoding ---------------------------------------------------------------------------
    def feature_index(self) -> Any:
        """A fresh copy of the trained, empty faiss IVF-PQ index (tiles are added to it)."""
        import faiss

        if not self.is_fitted or self.quantizer.numel() == 0:
            raise VocabularyMissingError(
                "sift-vote has no feature quantizer yet: it is learned from an index's own "
                "tiles when the index is built (`astroapp index build ... --model sift-vote`) "
                "and loaded with the index")
        return faiss.deserialize_index(self.quantizer.cpu().numpy())

    def _encoder(self) -> Any:
        if self._faiss is None:
            self._faiss = self.feature_index()
        return self._faiss

    @property
    def code_size(self) -> int:
        """Bytes per encoded feature (coarse cell + PQ code)."""
        return int(self._encoder().sa_code_size())

    def encode(self, desc: np.ndarray) -> np.ndarray:
        """(N, code_size) uint8 codes (coarse cell + PQ) of RootSIFT features."""
        enc = self._encoder()
        if not len(desc):
            return np.zeros((0, self.code_size), dtype=np.uint8)
        return enc.sa_encode(np.ascontiguousarray(desc, dtype=np.float32))

    def describe(self, images: Iterable[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """(B, words) global descriptors and, per image, its RootSIFT features (N, 128): the
        features are extracted once for both."""
        if not self.is_fitted:
            self.embed_numpy([])  # raises VocabularyMissingError
        bows, feats = [], []
        for img in images:
            d = self.local_features(img)
            bows.append(self.bag_of_words(d))
            feats.append(d)
        dense = (np.stack(bows) if bows else np.zeros((0, self.descriptor_dim))).astype(np.float32)
        return dense, feats

    def describe_tiles(self, x: torch.Tensor) -> tuple[np.ndarray, list[np.ndarray]]:
        """For the index build: a preprocessed batch -> global descriptors and feature codes."""
        from .sift_bow import _to_uint8

        dense, feats = self.describe(_to_uint8(x))
        return dense, [self.encode(d) for d in feats]
