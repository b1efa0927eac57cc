"""sift-bow: a training-free descriptor adapted to each index's own tiles.

RootSIFT features (DoG keypoints, each described at its dominant orientation, so the whole
descriptor is rotation invariant) are quantised on a vocabulary of visual words and counted:
a bag of words (Sivic & Zisserman 2003) with idf weights and a strong power normalisation of
the counts (Jegou et al. 2009, "On the burstiness of visual elements": the repeated texture of
fields or dunes otherwise swamps the few distinctive structures, a river bend, a lake shore).
The words and their idf weights are learned at index build time from a sample of the index's
own tiles (`fit`) and stored with the index (`vocabulary.safetensors`), so the imagery the
photos are searched in defines the vocabulary: nothing is trained elsewhere, nothing is
downloaded. Works wherever SIFT finds texture (real Sentinel-2 blocks; Blue Marble's coarse
zooms). On the real pairs it did better than VLAD (64 words, with or without PCA-whitening)
and than larger or soft-assigned vocabularies (benchmarks/real_world.py, README). Measured
again on that benchmark's 5 photos among 1,100 distractors, no prior (R@10, 512 words:
0.4): 4,096 words (two-level 64x64 k-means) 0.4; counts ** 0.5 instead of 0.25 0.4-0.6;
photo keypoints masked for clouds/space and haze-stretched 0.4; 4,096-word BoW PCA-whitened
to 64-512-D 0.2-0.6; best of the block and four 2/3-side sub-windows: no change. The same
RootSIFT features voting for blocks by nearest neighbours with a ratio-test weight reach
0.8: what is lost is in aggregating a block into one vector, not in the features; that is
the `sift-vote` model (retrieval/sift_vote.py), the default for real imagery.

    model = load_model("sift-bow")                 # unfitted: no vocabulary yet
    model.fit(sample_tiles)                        # or model.load_vocabulary(index_dir)
    desc = model(preprocess(images, model))        # (B, words), unit norm
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from .base import RetrievalModel

log = logging.getLogger(__name__)

NAME = "sift-bow"
VOCABULARY_FILE = "vocabulary.safetensors"
DEFAULT_CONFIG = {"words": 512, "input_size": 512, "max_features": 1500, "power": 0.25}
FIT_SAMPLE = 400          # tiles sampled to learn the words and their idf
FIT_FEATURES = 200_000    # local features kept for k-means


class VocabularyMissingError(RuntimeError):
    """The descriptor was used before its vocabulary was learned or loaded."""


class SiftBow(RetrievalModel):
    """RootSIFT -> nearest of `words` visual words -> counts ** power x idf -> L2.

    Input: the usual (B,3,H,W) batch from `preprocess` (mean 0, std 1: pixels / 255), so it
    plugs into every embedding path; it is turned back into 8-bit grey for SIFT here.
    """

    rotation_invariant = True   # one pass per tile: the 4 stored rotations share the vector
    learns_from_index = True    # its vocabulary comes from the index it is used with

    def __init__(self, words: int = 512, input_size: int = 512, max_features: int = 1500,
                 power: float = 0.25) -> None:
        super().__init__()
        from astroapp.matching.sift import SiftMatcher

        self.name = NAME
        self.words = self.descriptor_dim = int(words)
        self.power = float(power)
        self.input_size = (int(input_size), int(input_size))
        self.mean = (0.0, 0.0, 0.0)
        self.std = (1.0, 1.0, 1.0)
        self.config = {"words": self.words, "input_size": int(input_size),
                       "max_features": int(max_features), "power": self.power}
        self._sift = SiftMatcher(max_features=int(max_features), clahe=True)
        self.register_buffer("centroids", torch.zeros(self.words, 128))
        self.register_buffer("idf", torch.zeros(self.words))
        self.register_buffer("fitted", torch.zeros(1))
        self.weights_sha256: str | None = None

    # --- device: a model without parameters ---------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.centroids.device

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    @property
    def is_fitted(self) -> bool:
        return bool(self.fitted.item() > 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.embed_numpy(_to_uint8(x)))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    # --- the descriptor -----------------------------------------------------------------
    def local_features(self, image: np.ndarray) -> np.ndarray:
        """(N, 128) RootSIFT descriptors of one RGB uint8 image."""
        return self._sift.features(image).descriptors

    @staticmethod
    def counts(desc: np.ndarray, centroids: np.ndarray) -> np.ndarray:
        """How many of the features fall on each visual word (nearest centroid)."""
        k = centroids.shape[0]
        if not len(desc):
            return np.zeros(k, dtype=np.float32)
        d2 = (centroids ** 2).sum(1)[None] - 2 * desc @ centroids.T
        return np.bincount(d2.argmin(axis=1), minlength=k).astype(np.float32)

    def embed_numpy(self, images: Iterable[np.ndarray]) -> np.ndarray:
        """(B, words) float32 unit descriptors of RGB uint8 images (any size)."""
        if not self.is_fitted:
            raise VocabularyMissingError(
                f"the {self.name} descriptor has no vocabulary yet: it is learned from an "
                "index's own tiles when the index is built (`astroapp index build ... --model "
                f"{self.name}`) and loaded with the index")
        out = [self.bag_of_words(self.local_features(img)) for img in images]
        if not out:
            return np.zeros((0, self.descriptor_dim), dtype=np.float32)
        return np.stack(out).astype(np.float32)

    def bag_of_words(self, desc: np.ndarray) -> np.ndarray:
        """The unit descriptor of one image's RootSIFT features."""
        c = self.centroids.detach().cpu().float().numpy()
        v = self.counts(desc, c) ** self.power * self.idf.detach().cpu().float().numpy()
        return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)

    # --- learning the vocabulary --------------------------------------------------------
    def fit(self, images: Iterable[np.ndarray], seed: int = 0,
            expected_tiles: int | None = None) -> None:
        """Learn the visual words (k-means on RootSIFT) and their idf weights from tiles of
        the index being built (`expected_tiles`: how many it will hold, for what scales with
        it in a subclass)."""
        from .base import resize_rgb

        self.fit_features([self.local_features(resize_rgb(im, self.input_size)) for im in images],
                          seed, expected_tiles)

    def fit_features(self, per_image: list[np.ndarray], seed: int = 0,
                     expected_tiles: int | None = None) -> np.ndarray:
        """`fit` on the tiles' RootSIFT features (one array per tile); returns the pooled
        sample the words were learned from."""
        import faiss

        per_image = [d for d in per_image if len(d)]
        if len(per_image) < 2:
            raise ValueError(f"too few tiles with texture to learn a {self.name} vocabulary "
                             f"({len(per_image)}); the index needs textured imagery")
        rng = np.random.default_rng(seed)
        pool = np.concatenate(per_image).astype(np.float32)
        if len(pool) > FIT_FEATURES:
            pool = pool[rng.choice(len(pool), FIT_FEATURES, replace=False)]
        if len(pool) < self.words * 4:
            raise ValueError(f"too few local features ({len(pool)}) to learn {self.words} "
                             "visual words; the index needs more (or more textured) tiles")
        km = faiss.Kmeans(128, self.words, niter=20, seed=seed, verbose=False)
        km.train(np.ascontiguousarray(pool))
        c = km.centroids.astype(np.float32)
        df = np.stack([self.counts(d, c) > 0 for d in per_image]).sum(axis=0)
        idf = np.log(len(per_image) / (df + 1.0)) + 1.0
        with torch.no_grad():
            self.centroids.copy_(torch.from_numpy(c))
            self.idf.copy_(torch.from_numpy(idf.astype(np.float32)))
            self.fitted.fill_(1.0)
        return pool

    # --- stored with the index ----------------------------------------------------------
    def prepare_state(self, state: dict[str, torch.Tensor]) -> None:
        """Resize buffers whose size comes from the data (none here) before loading `state`."""
    def save_vocabulary(self, folder: str | Path) -> Path:
        """Write the vocabulary atomically into an index folder; returns its path."""
        from safetensors.torch import save_file

        from astroapp.atomic import atomic_path
        from astroapp.digests import sha256_file

        path = Path(folder) / VOCABULARY_FILE
        state = {k: v.detach().cpu().float().contiguous() for k, v in self.state_dict().items()}
        meta = {"architecture": self.name, "config": json.dumps(self.config)}
        with atomic_path(path) as tmp:
            save_file(state, str(tmp), metadata=meta)
            tmp.chmod(0o644)  # safetensors writes a new file, without atomic_path's mode
        self.weights_sha256 = sha256_file(path)
        self.weights_path = str(path)
        return path

    def load_vocabulary(self, path: str | Path) -> None:
        """Load a vocabulary file (or the one in an index folder); raises ValueError when it
        does not fit this configuration."""
        from safetensors import SafetensorError, safe_open

        from astroapp.digests import sha256_file

        path = Path(path)
        if path.is_dir():
            path = path / VOCABULARY_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no {self.name} vocabulary (the index was built "
                                    "with another model, or its build never started)")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open API
        except (SafetensorError, OSError) as exc:
            raise ValueError(f"{path}: unreadable {self.name} vocabulary ({exc})") from exc
        cfg = json.loads(meta.get("config", "{}"))
        if meta.get("architecture") != self.name or cfg != self.config:
            raise ValueError(f"{path}: a vocabulary for {meta.get('architecture')} {cfg}, not "
                             f"for {self.name} {self.config}")
        self.prepare_state(state)
        self.load_state_dict(state)
        self.weights_sha256 = sha256_file(path)
        self.weights_path = str(path)


def _to_uint8(x: torch.Tensor) -> list[np.ndarray]:
    """A (B,3,H,W) batch of pixels / 255 back to RGB uint8 images."""
    arr = x.detach().float().cpu().clamp(0, 1).mul(255).round().to(torch.uint8)
    return list(arr.permute(0, 2, 3, 1).contiguous().numpy())


def adapt_to_index(model: object, folder: str | Path) -> None:
    """Give an index-adapted model (sift-bow) the vocabulary stored with `folder`'s index;
    other models are left as they are."""
    if isinstance(model, SiftBow):
        model.load_vocabulary(folder)
