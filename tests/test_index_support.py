"""Shared helpers for the index tests (no tests here): a small generated tile source whose
images are real textures made on the fly, a small real model, and a build entry point that
the SIGKILL test runs in a subprocess."""

from __future__ import annotations

import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import torch

from astroapp.geo.sources.base import TileRef
from astroapp.geo.tiles import block_footprint
from astroapp.retrieval.bundled import DEFAULT_CONFIG

# the bundled model's input size: generated tiles go into the network unresized
TILE_PX = int(DEFAULT_CONFIG["input_size"][0])


def texture(seed: int, size: int = TILE_PX) -> np.ndarray:
    """A multi-scale coloured texture (fields, rivers, mountains at a glance), RGB uint8."""
    rng = np.random.default_rng(seed)
    img = np.zeros((size, size, 3), np.float32)
    for cells, weight in ((3, 1.0), (7, 0.8), (19, 0.6), (53, 0.4)):
        layer = rng.random((cells, cells, 3), dtype=np.float32)
        img += weight * cv2.resize(layer, (size, size), interpolation=cv2.INTER_CUBIC)
    img -= img.min()
    img *= 255.0 / max(float(img.max()), 1e-6)
    return img.astype(np.uint8)


class GeneratedSource:
    """`n` zoom-8 blocks on a 2-step grid over Europe; tile `bad` (if any) fails to load."""

    def __init__(self, n: int, source_id: str = "gen", *, first_row: int = 80,
                 first_col: int = 120, per_row: int = 12, delay: float = 0.0,
                 bad: set[str] | None = None) -> None:
        self.source_id = source_id
        self.errors: list[str] = []
        self.n, self.first_row, self.first_col, self.per_row = n, first_row, first_col, per_row
        self.delay = delay
        self.bad = bad or set()

    def tiles(self):
        for i in range(self.n):
            row = self.first_row + 2 * (i // self.per_row)
            col = self.first_col + 2 * (i % self.per_row)
            yield TileRef(f"08_{row:04d}_{col:04d}@2021", self.source_id,
                          block_footprint(8, row, col), 8, row, col, 2021)

    def image(self, tile_id: str) -> np.ndarray:
        return texture(zlib.crc32(f"{self.source_id}/{tile_id}".encode()))

    def load(self, ref: TileRef, size: int | None = None) -> np.ndarray:
        if self.delay:
            time.sleep(self.delay)
        if ref.tile_id in self.bad:
            raise OSError(f"{ref.tile_id}.jpg: truncated JPEG")
        img = self.image(ref.tile_id)
        if size is not None and size != img.shape[0]:
            img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
        return img

    def read_mercator(self, bounds_3857, width, height):  # pragma: no cover - unused here
        raise NotImplementedError("generated test source has no continuous mosaic")


def make_model(seed: int = 0):
    """The bundled architecture with seeded random weights: real, small, deterministic."""
    from astroapp.retrieval import load_model

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    return load_model("astroapp-small", weights="random", device="cpu")


BUILD_KW = {"batch_size": 4, "chunk_size": 8, "workers": 2}


def child_build(out: str, n: int, delay: float) -> None:
    """Entry point of the build subprocess that the SIGKILL test kills."""
    from astroapp.index import build_index

    build_index([GeneratedSource(n, delay=delay)], make_model(0), out, **BUILD_KW)


if __name__ == "__main__":
    child_build(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
    print("build finished", Path(sys.argv[1]))
