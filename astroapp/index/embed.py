"""Embedding tiles (at 4 exact rotations) and query photos with a retrieval model.

Decoding runs in background threads (OpenCV/PIL release the GIL) a few batches ahead of the
model, so the CPU/GPU computing descriptors never waits for JPEG decoding when it need not.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

from astroapp.index.manifest import ANGLES


def preprocess_images(images: Sequence[np.ndarray], model: Any) -> torch.Tensor:
    """RGB uint8 images -> normalised (B,3,H,W) float32 at the model's input size.

    Uses the retrieval package's `preprocess` so that queries and tiles share one definition;
    falls back to the same recipe (area resize, /255, mean/std) if that package is absent.
    """
    try:
        from astroapp.retrieval import preprocess
    except ImportError:
        preprocess = None
    if preprocess is not None:
        return preprocess(list(images), model)
    h, w = (int(s) for s in model.input_size)
    mean = np.asarray(model.mean, dtype=np.float32).reshape(1, 1, 3)
    std = np.asarray(model.std, dtype=np.float32).reshape(1, 1, 3)
    out = np.empty((len(images), 3, h, w), dtype=np.float32)
    for i, img in enumerate(images):
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 image (H,W,3), got {img.dtype} {img.shape}")
        if img.shape[:2] != (h, w):
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        out[i] = ((img.astype(np.float32) / 255.0 - mean) / std).transpose(2, 0, 1)
    return torch.from_numpy(out)


def model_device_dtype(model: Any) -> tuple[torch.device, torch.dtype]:
    for p in model.parameters():
        return p.device, p.dtype
    return torch.device("cpu"), torch.float32


PRECISIONS = ("fp32", "fp16", "bf16")


def autocast(model: Any, precision: str | None = None) -> contextlib.AbstractContextManager:
    """The context a forward pass runs in: fp32 as the weights are, or torch.autocast to
    fp16/bf16 on the model's device (tensor cores on CUDA; bf16 is what CPUs with
    AMX/AVX512-BF16 speed up: 1.6x fp32 per core in benchmarks/gpu_check.py). `precision` defaults to the model's own
    `precision` attribute (set by `index build --precision`), else fp32. Descriptors are
    returned in float32 and L2-normalised either way."""
    precision = precision or getattr(model, "precision", None) or "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return contextlib.nullcontext()
    device, _ = model_device_dtype(model)
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype)


@torch.inference_mode()
def embed_rotations(model: Any, batch: torch.Tensor, channels_last: bool = False,
                    precision: str | None = None) -> torch.Tensor:
    """(B,3,H,W) -> (B,4,D) float32: descriptors at 0/90/180/270 degrees counter-clockwise.

    Rotations are exact tensor rotations (torch.rot90), one forward pass of 4B images. A
    rotation-invariant model (`rotation_invariant = True`, e.g. sift-bow) is run once and its
    descriptor stored at all four rotations (the index format keeps four slots per tile).
    """
    device, dtype = model_device_dtype(model)
    x = batch.to(device=device, dtype=dtype, non_blocking=True)
    b = x.shape[0]
    if getattr(model, "rotation_invariant", False):
        d = torch.nn.functional.normalize(model(x).float(), dim=1).cpu()
        return d[:, None, :].expand(b, len(ANGLES), d.shape[1]).contiguous()
    rots = torch.cat([torch.rot90(x, k=a // 90, dims=(2, 3)) for a in ANGLES], dim=0)
    if channels_last:
        rots = rots.contiguous(memory_format=torch.channels_last)
    with autocast(model, precision):
        d = model(rots).float()
    d = torch.nn.functional.normalize(d, dim=1)
    return d.reshape(len(ANGLES), b, -1).transpose(0, 1).cpu()


def embed_tile_batch(model: Any, batch: torch.Tensor, channels_last: bool = False
                     ) -> tuple[np.ndarray, list[np.ndarray] | None]:
    """A batch of tiles as the index stores them: (B,4,D) descriptors at the 4 rotations and,
    for a local-vote model (sift-vote, rotation invariant), each tile's feature codes."""
    if getattr(model, "local_votes", False):
        dense, codes = model.describe_tiles(batch)
        return np.repeat(dense[:, None, :], len(ANGLES), axis=1), codes
    return embed_rotations(model, batch, channels_last).numpy(), None


@torch.inference_mode()
def embed_images(model: Any, images: Sequence[np.ndarray], batch_size: int = 32,
                 precision: str | None = None) -> np.ndarray:
    """Query descriptors (N,D) float32, L2-normalised, images at 0 degrees."""
    device, dtype = model_device_dtype(model)
    out = []
    for i in range(0, len(images), batch_size):
        x = preprocess_images(images[i : i + batch_size], model).to(device=device, dtype=dtype)
        with autocast(model, precision):
            d = model(x).float()
        d = torch.nn.functional.normalize(d, dim=1)
        out.append(d.cpu().numpy())
    if not out:
        return np.zeros((0, int(model.descriptor_dim)), dtype=np.float32)
    return np.concatenate(out).astype(np.float32, copy=False)


@dataclass
class Queries:
    """What a search needs of query photos: their global descriptors and, for a local-vote
    model (sift-vote), each photo's local features (N, 128)."""

    dense: np.ndarray
    local: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.dense)

    def __getitem__(self, i: int | slice) -> Queries:
        """One query (as a batch of one) or a slice of them."""
        s = slice(i, i + 1) if isinstance(i, int) else i
        return Queries(self.dense[s], None if self.local is None else self.local[s])


def describe_queries(model: Any, images: Sequence[np.ndarray], batch_size: int = 32,
                     precision: str | None = None) -> Queries:
    """The query side of every model: `embed_images`, plus the local features a local-vote
    model's index is searched with (the photo at the model's input size, as tiles are)."""
    if not getattr(model, "local_votes", False):
        return Queries(embed_images(model, images, batch_size, precision))
    from astroapp.retrieval.base import resize_rgb

    dense, feats = model.describe([resize_rgb(im, model.input_size) for im in images])
    return Queries(dense, feats)


def use_channels_last(model: Any) -> bool:
    """On CPU, convolution nets run markedly faster in channels-last layout (oneDNN); the
    model's parameters are converted in place (same values, another memory layout)."""
    device, _ = model_device_dtype(model)
    if device.type != "cpu":
        return False
    model.to(memory_format=torch.channels_last)
    return True


@dataclass
class LoadedBatch:
    ids: list[int]                      # tile ids loaded fine, in order
    pixels: torch.Tensor | None         # (len(ids),3,H,W) normalised, None if all failed
    failures: list[tuple[int, str]]     # (tile id, reason)


def _load_batch(items: Sequence[tuple[int, Any, Any]], model: Any, load_size: int) -> LoadedBatch:
    ids, images, failures = [], [], []
    for tid, source, ref in items:
        try:
            img = source.load(ref, size=load_size)
            if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3:
                raise ValueError(f"source returned {type(img).__name__} "
                                 f"{getattr(img, 'shape', '')}, not an RGB image")
            images.append(np.ascontiguousarray(img, dtype=np.uint8))
            ids.append(tid)
        except Exception as exc:  # one bad tile is recorded, the batch goes on
            failures.append((tid, f"{getattr(ref, 'tile_id', tid)}: {type(exc).__name__}: {exc}"))
    pixels = preprocess_images(images, model) if images else None
    return LoadedBatch(ids, pixels, failures)


def prefetch_batches(
    batches: Iterable[Sequence[tuple[int, Any, Any]]],
    model: Any,
    load_size: int,
    workers: int = 2,
    ahead: int = 4,
) -> Iterator[LoadedBatch]:
    """Load and preprocess batches in `workers` threads, keeping up to `ahead` in flight."""
    if workers <= 0:
        for items in batches:
            yield _load_batch(items, model, load_size)
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tile-decode")
    pending: collections.deque[Future] = collections.deque()
    it = iter(batches)
    try:
        for items in it:
            pending.append(pool.submit(_load_batch, items, model, load_size))
            if len(pending) >= max(ahead, workers):
                break
        while pending:
            result = pending.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(_load_batch, nxt, model, load_size))
            yield result
    finally:
        for f in pending:
            f.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
