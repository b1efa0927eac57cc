"""faiss index construction and raw vector search (CPU, faiss-GPU or torch on CUDA).

Index type, chosen automatically from the number of vectors x dimension:
- exact (`flat`): IndexFlatIP over L2-normalised descriptors (inner product = cosine), while
  the float32 vectors take <= EXACT_MAX_BYTES (256 MiB, e.g. 32k tiles x 4 rotations x 512-D or
  4k tiles at 4096-D). Up to there one query is a single pass over 256 MiB, ~20 ms on one
  CPU core at ~12 GB/s of memory bandwidth (the per-query budget), and RAM is no concern.
- compressed (`ivfpq`): IVF (sqrt-sized coarse quantizer, 1/16 of the lists probed) + PQ
  (8 dimensions per byte, at most 128 bytes/vector) trained on a seeded sample (at most
  TRAIN_MAX_BYTES of float32 unless the coarse quantizer needs more), then the top
  candidates re-ranked exactly against the descriptors kept on disk (memory-mapped chunks). 512-D drops from 2 KiB to
  64 B per vector in RAM; the re-ranking keeps the recall loss small (measured by
  benchmarks/index_search.py).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from astroapp.atomic import atomic_path
from astroapp.index.errors import IndexCorruptError
from astroapp.index.store import N_ROT, ChunkInfo, load_chunk

EXACT_MAX_BYTES = 256 * 1024 * 1024
# The IVF-PQ training sample (float32; faiss holds its residuals beside it while training) is
# the one part of a compressed build that grows with the descriptor size: cap it so that a
# 4096-D build stays as light as a 512-D one (8k vectors at 4096-D, 64k at 512-D).
TRAIN_MAX_BYTES = 128 * 1024 * 1024
INDEX_TYPES = ("auto", "flat", "ivfpq")


def choose_index_type(n_vectors: int, dim: int, requested: str = "auto") -> str:
    if requested not in INDEX_TYPES:
        raise ValueError(f"index type must be one of {', '.join(INDEX_TYPES)}, got {requested!r}")
    if requested != "auto":
        return requested
    return "flat" if n_vectors * dim * 4 <= EXACT_MAX_BYTES else "ivfpq"


def ivfpq_params(n_vectors: int, dim: int) -> dict[str, int]:
    nlist = int(2 ** round(math.log2(max(16.0, math.sqrt(max(n_vectors, 1))))))
    nlist = max(16, min(nlist, 16384, n_vectors // 39 or 16))
    m = dim // 8 if dim // 8 <= 128 else 128
    while dim % m:
        m -= 1
    train_size = min(n_vectors, max(48 * nlist, 20000),
                     max(TRAIN_MAX_BYTES // (4 * dim), 39 * nlist))
    # 256 centroids per sub-quantizer want >= ~40 training points each
    nbits = int(max(4, min(8, math.floor(math.log2(max(train_size / 39, 16))))))
    return {
        "nlist": nlist,
        "m": m,
        "nbits": nbits,
        "nprobe": max(1, min(nlist, max(16, nlist // 16))),
        "refine": 16,
        "train_size": train_size,
    }


class ChunkVectors:
    """Random access to stored descriptors by faiss label (4*tile + rotation), memory-mapped."""

    def __init__(self, folder: Path, chunks: list[ChunkInfo], dim: int) -> None:
        self.dim = dim
        self.folder = Path(folder)
        self.chunks = list(chunks)
        self.arrays = [load_chunk(folder, c, dim) for c in chunks]
        self.firsts = np.array([c.first_id for c in chunks], dtype=np.int64)
        self.n_tiles = sum(c.count for c in chunks)

    def get(self, labels: np.ndarray) -> np.ndarray:
        labels = np.asarray(labels, dtype=np.int64).ravel()
        out = np.empty((labels.size, self.dim), dtype=np.float32)
        if labels.size == 0:
            return out
        tiles, rots = labels // N_ROT, labels % N_ROT
        which = np.searchsorted(self.firsts, tiles, side="right") - 1
        for ci in np.unique(which):
            sel = np.nonzero(which == ci)[0]
            local = tiles[sel] - self.firsts[ci]
            order = np.argsort(local, kind="stable")  # sequential page access
            out[sel[order]] = self.arrays[ci][local[order], rots[sel[order]]]
        return out

    def iter_blocks(self):
        """(first_label, (n*4, D) float32) per chunk, in label order; each chunk is read
        afresh (not through the map) so its pages are freed once the caller is done."""
        for info in self.chunks:
            arr = load_chunk(self.folder, info, self.dim, mmap=False)
            yield info.first_id * N_ROT, arr.astype(np.float32).reshape(-1, self.dim)


def build_faiss(vectors: ChunkVectors, valid: np.ndarray, index_type: str,
                seed: int = 0) -> tuple[Any, dict[str, Any]]:
    """Stream the chunks into a new faiss index; invalid (failed) tiles are left out."""
    dim = vectors.dim
    n_valid_vec = int(valid.sum()) * N_ROT
    if index_type == "flat":
        index = faiss.IndexFlatIP(dim)
        # Reserve the storage up front: faiss otherwise grows it geometrically while adding
        # block by block, briefly holding up to 3x the index.
        index.codes.resize(vectors.n_tiles * N_ROT * index.code_size)
        index.codes.resize(0)
        for first, block in vectors.iter_blocks():
            tmask = valid[first // N_ROT : first // N_ROT + block.shape[0] // N_ROT]
            if not tmask.all():  # failed tiles: zero vectors keep labels dense, filtered at search
                block = block.copy()
                block[~np.repeat(tmask, N_ROT)] = 0.0
            index.add(block)
        return index, {"type": "flat", "factory": "IndexFlatIP", "metric": "inner_product"}
    if index_type != "ivfpq":
        raise ValueError(f"unknown index type {index_type!r}")
    if n_valid_vec < 1000:
        raise ValueError(f"an IVF-PQ index needs >= 1000 vectors, there are {n_valid_vec}: "
                         "use the exact index (--index-type flat)")
    p = ivfpq_params(n_valid_vec, dim)
    rng = np.random.default_rng(seed)
    valid_labels = (np.nonzero(valid)[0][:, None] * N_ROT + np.arange(N_ROT)).ravel()
    sample = np.sort(rng.choice(valid_labels, size=p["train_size"], replace=False))
    train = vectors.get(sample)
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFPQ(quantizer, dim, p["nlist"], p["m"], p["nbits"],
                             faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.pq.cp.seed = seed
    index.train(train)
    del train
    for first, block in vectors.iter_blocks():
        labels = np.arange(first, first + block.shape[0], dtype=np.int64)
        keep = np.repeat(valid[first // N_ROT : first // N_ROT + block.shape[0] // N_ROT], N_ROT)
        if keep.any():
            index.add_with_ids(np.ascontiguousarray(block[keep]), labels[keep])
    index.nprobe = p["nprobe"]
    return index, {"type": "ivfpq", "factory": f"IVF{p['nlist']},PQ{p['m']}x{p['nbits']}",
                   "metric": "inner_product", **p}


def write_index_atomic(index: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        faiss.write_index(index, str(tmp))


def read_index(path: Path) -> Any:
    if not path.is_file():
        raise IndexCorruptError(f"{path} is missing: rebuild the index")
    try:
        return faiss.read_index(str(path))
    except RuntimeError as exc:
        raise IndexCorruptError(f"{path} is not a readable faiss index (truncated or "
                                f"corrupt): rebuild the index ({str(exc).splitlines()[0]})") from exc


def cuda_available() -> bool:
    try:
        import torch
        return bool(torch.cuda.is_available())
    except ImportError:  # pragma: no cover
        return False


class FlatSearcher:
    """Exact inner-product search: faiss (CPU or GPU) or a torch matmul on a device."""

    def __init__(self, index: Any, backend: str = "auto", device: str | None = None) -> None:
        self.index = index
        self.cpu_index = index  # for vector access and filtered (selector) searches
        self.dim = index.d
        self.backend = backend
        if backend == "auto":
            if cuda_available():
                self.backend = "faiss-gpu" if faiss_gpus() > 0 else "torch"
            else:
                self.backend = "faiss"
        self._torch_x = None
        if self.backend == "faiss-gpu":  # pragma: no cover - needs a GPU build of faiss
            res = faiss.StandardGpuResources()
            self.index = faiss.index_cpu_to_gpu(res, 0, index)
            self._res = res
        elif self.backend == "torch":
            import torch
            dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
            xb = self.vectors()
            dtype = torch.float16 if dev.startswith("cuda") else torch.float32
            self._torch_x = torch.from_numpy(np.ascontiguousarray(xb)).to(dev, dtype)

    def vectors(self) -> np.ndarray:
        """The stored vectors (ntotal, d) float32, without a copy."""
        n = self.cpu_index.ntotal
        return faiss.rev_swig_ptr(self.cpu_index.get_xb(), n * self.dim).reshape(n, self.dim)

    def search(self, q: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
        kk = min(kk, self.index.ntotal)
        if self._torch_x is not None:
            import torch
            x = self._torch_x
            qt = torch.from_numpy(q).to(x.device, x.dtype)
            s, i = torch.topk(qt @ x.T, kk, dim=1)
            return s.float().cpu().numpy(), i.cpu().numpy().astype(np.int64)
        return self.index.search(q, kk)


def faiss_gpus() -> int:
    """GPUs a CUDA build of faiss can use; 0 with faiss-cpu (no StandardGpuResources)."""
    if not hasattr(faiss, "StandardGpuResources") or not hasattr(faiss, "get_num_gpus"):
        return 0
    return int(faiss.get_num_gpus())


class IVFPQSearcher:
    """Approximate search with the IVF-PQ codes, then exact re-ranking from the chunks."""

    def __init__(self, index: Any, vectors: ChunkVectors, nprobe: int, refine: int) -> None:
        self.index = index
        self.cpu_index = index
        self.vectors = vectors
        self.refine = max(1, refine)
        self.index.nprobe = nprobe
        self.backend = "faiss"
        if cuda_available() and faiss_gpus() > 0:  # pragma: no cover - GPU build of faiss
            self._res = faiss.StandardGpuResources()
            self.index = faiss.index_cpu_to_gpu(self._res, 0, index)
            self.index.nprobe = nprobe
            self.backend = "faiss-gpu"

    def search(self, q: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
        kk = min(kk, self.index.ntotal)
        _, approx = self.index.search(q, min(kk * self.refine, self.index.ntotal))
        scores = np.full((q.shape[0], kk), -np.inf, dtype=np.float32)
        labels = np.full((q.shape[0], kk), -1, dtype=np.int64)
        for i in range(q.shape[0]):
            cand = approx[i][approx[i] >= 0]
            exact = self.vectors.get(cand) @ q[i]
            top = np.argsort(-exact, kind="stable")[:kk]
            scores[i, : top.size] = exact[top]
            labels[i, : top.size] = cand[top]
        return scores, labels
