"""Every tile's local-feature codes, and tiles ranked by the votes of a photo's features.

The index side of a local-vote model (`astroapp.retrieval.sift_vote`): while tiles are
embedded, each chunk's feature codes are written beside its descriptor chunk
(`chunk_<first>.local.npz`: the tile id and the code of each feature; sha256 in the
manifest); when the index is opened they are added, labelled by tile id, to a copy of the
trained IVF-PQ stored with the vocabulary. A query feature's `neighbours`
nearest tile features each vote for their tile with 1 - d/d_k, a tile counted once per query
feature (its nearest feature): see the model's docstring for why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from astroapp.digests import sha256_file
from astroapp.index.errors import IndexCorruptError
from astroapp.index.store import ChunkInfo, local_chunk_path
from astroapp.lru import LRUCache

NPROBE = 16  # cells probed per query feature in a search over the whole index, at least...
MIN_SCANNED = 25_000  # ...as many as hold this many codes (a small index's cells are small)


def read_local_chunk(folder: Path, chunk: ChunkInfo) -> tuple[np.ndarray, np.ndarray]:
    """(tile ids, codes) of one chunk, checked to lie within it."""
    path = local_chunk_path(folder, chunk.file)
    try:
        with np.load(path, allow_pickle=False) as z:
            tiles, codes = z["tile"], z["codes"]
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise IndexCorruptError(f"feature codes {path} are missing or unreadable ({exc}): "
                                "rebuild the index", part="chunks") from exc
    if tiles.ndim != 1 or codes.ndim != 2 or len(tiles) != len(codes) or (
            len(tiles) and (tiles.min() < chunk.first_id
                            or tiles.max() >= chunk.first_id + chunk.count)):
        raise IndexCorruptError(f"feature codes {path} do not fit their chunk: rebuild the "
                                "index", part="chunks")
    return tiles, codes


class LocalCodes:
    """A chunk's feature codes being collected while its tiles are embedded."""

    def __init__(self) -> None:
        self._tiles: list[np.ndarray] = []
        self._codes: list[np.ndarray] = []

    def add(self, tile_id: int, codes: np.ndarray) -> None:
        self._tiles.append(np.full(len(codes), tile_id, dtype=np.int32))
        self._codes.append(codes)

    def extend(self, tile_ids: Sequence[int], codes: Sequence[np.ndarray] | None) -> None:
        """A batch's tiles and their codes (None: a model without local votes)."""
        for tid, c in zip(tile_ids, codes or [], strict=codes is not None):
            self.add(tid, c)

    def arrays(self, code_size: int) -> tuple[np.ndarray, np.ndarray]:
        if not self._codes:
            return np.zeros(0, np.int32), np.zeros((0, code_size), np.uint8)
        return np.concatenate(self._tiles), np.concatenate(self._codes)


def tally_votes(dist: np.ndarray, tile: np.ndarray, n_tiles: int) -> np.ndarray:
    """(n_tiles,) votes from each query feature's k nearest tile features (squared
    distances `dist`, their tiles `tile`, -1 where none was found, nearest first): each tile
    gets 1 - d/d_k from the feature's nearest among its own (Lowe's ratio against the k-th)."""
    scores = np.zeros(n_tiles, dtype=np.float64)
    ok = tile >= 0
    last = np.where(ok, dist, -np.inf).max(axis=1, keepdims=True)
    weight = np.where(ok, np.maximum(0.0, 1.0 - dist / np.maximum(last, 1e-12)), 0.0)
    tile = np.where(ok, tile, 0)
    key = (np.arange(len(tile))[:, None] * n_tiles + tile).ravel()
    _, first = np.unique(key, return_index=True)  # a tile's nearest feature only
    np.add.at(scores, tile.ravel()[first], weight.ravel()[first])
    return scores


def local_manifest(folder: Path, chunks: list[ChunkInfo], valid: np.ndarray,
                   neighbours: int) -> dict[str, Any]:
    """The manifest entry of an index's feature codes: their count and digests (the voting
    index itself is assembled from them when the index is opened, `LocalVoter.open`)."""
    digests, total = {}, 0
    for chunk in chunks:
        tiles, _codes = read_local_chunk(folder, chunk)
        path = local_chunk_path(folder, chunk.file)
        digests[path.relative_to(folder).as_posix()] = sha256_file(path)
        total += int(valid[tiles].sum())
    return {"ntotal": total, "nprobe": NPROBE, "neighbours": int(neighbours),
            "chunks_sha256": digests}


def feature_quantizer(folder: Path) -> Any:
    """The trained, empty IVF-PQ stored in the index's vocabulary file."""
    import faiss
    from safetensors import SafetensorError, safe_open

    from astroapp.retrieval.sift_bow import VOCABULARY_FILE

    path = Path(folder) / VOCABULARY_FILE
    try:
        with safe_open(str(path), framework="numpy") as f:
            blob = f.get_tensor("quantizer")
        return faiss.deserialize_index(np.ascontiguousarray(blob, dtype=np.uint8))
    except (OSError, SafetensorError, RuntimeError) as exc:
        raise IndexCorruptError(f"{path}: no readable feature quantizer ({exc}): rebuild the "
                                "index", part="faiss") from exc


# Up to this many features in the allowed tiles, a region search decodes their codes and
# finds neighbours exactly among them (~0.1 s for 100 tiles), instead of probing the IVF
# cells with a selector (most cells for a small region: seconds per photo).
SUBSET_EXACT_MAX = 30_000
CHUNKS_CACHED = 2  # chunks' codes kept for small-region searches (~50 MB each at 1,024 tiles)
REGION_NPROBE_MAX = 4  # x NPROBE cells at most for a larger region (time grows with cells)


@dataclass
class LocalVoter:
    """Ranks tiles by the ratio-weighted votes of a photo's local features."""

    index: Any          # faiss IVF-PQ, labels = tile ids
    n_tiles: int
    neighbours: int
    nprobe: int
    folder: Path
    chunks: list[ChunkInfo]

    def __post_init__(self) -> None:
        per_cell = max(self.index.ntotal / max(self.index.nlist, 1), 1.0)
        self.nprobe = int(min(self.index.nlist, max(self.nprobe, np.ceil(MIN_SCANNED / per_cell))))
        self._firsts = np.array([c.first_id for c in self.chunks], dtype=np.int64)
        self._codes: LRUCache[int, tuple[np.ndarray, np.ndarray]] = LRUCache(CHUNKS_CACHED)

    @classmethod
    def open(cls, folder: Path, info: dict[str, Any], valid: np.ndarray,
             chunks: list[ChunkInfo]) -> LocalVoter:
        """The voting index of every valid tile's features, assembled from the chunks' codes
        (as fast as reading them: no second copy of the codes is kept on disk)."""
        index = feature_quantizer(folder)
        for chunk in chunks:
            tiles, codes = read_local_chunk(folder, chunk)
            keep = valid[tiles]
            if keep.any():
                index.add_sa_codes(np.ascontiguousarray(codes[keep]), tiles[keep].astype(np.int64))
        if index.ntotal != int(info["ntotal"]):
            raise IndexCorruptError(f"the feature codes of {folder} hold {index.ntotal} features, "
                                    f"the manifest says {info['ntotal']}: rebuild the index",
                                    part="chunks")
        return cls(index, len(valid), int(info["neighbours"]), int(info["nprobe"]), Path(folder),
                   list(chunks))

    def votes(self, features: np.ndarray, tiles: np.ndarray | None = None) -> np.ndarray:
        """(n_tiles,) vote totals; with `tiles`, neighbours are sought among those tiles'
        features only."""
        if not len(features) or self.index.ntotal == 0 or (tiles is not None and not tiles.size):
            return np.zeros(self.n_tiles, dtype=np.float64)
        q = np.ascontiguousarray(features, dtype=np.float32)
        k = max(2, self.neighbours)
        subset = self._subset(tiles) if tiles is not None else None
        if subset is not None:
            import faiss

            owner, vectors = subset
            dist, found = faiss.knn(q, vectors, min(k, len(vectors)))
            nn = np.where(found >= 0, owner[np.maximum(found, 0)], -1)
        else:
            dist, nn = self.index.search(q, k, params=self._params(tiles))
        return tally_votes(dist, nn, self.n_tiles)

    def _params(self, tiles: np.ndarray | None) -> Any:
        """IVF search parameters: with a tile selection, more cells probed the smaller its
        share, so that about as many of its features are scanned as a global search scans."""
        import faiss

        if tiles is None:
            return faiss.SearchParametersIVF(nprobe=self.nprobe)
        share = tiles.size / max(self.n_tiles, 1)
        nprobe = int(min(self.index.nlist, REGION_NPROBE_MAX * self.nprobe,
                         np.ceil(self.nprobe / max(share, 1e-9))))
        return faiss.SearchParametersIVF(sel=faiss.IDSelectorBatch(tiles.astype(np.int64)),
                                         nprobe=nprobe)

    def _subset(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(tile id per feature, decoded features) of `tiles`, or None when they hold too
        many features for an exact search (or their chunks are unknown)."""
        if not self.chunks:
            return None
        which = np.searchsorted(self._firsts, tiles, side="right") - 1
        owners, codes, total = [], [], 0
        for ci in np.unique(which):
            if ci < 0:
                return None
            chunk_tiles, chunk_codes = self._codes.get_or_make(
                int(ci), lambda ci=int(ci): read_local_chunk(self.folder, self.chunks[ci]))
            keep = np.isin(chunk_tiles, tiles[which == ci])
            total += int(keep.sum())
            if total > SUBSET_EXACT_MAX:
                return None
            owners.append(chunk_tiles[keep])
            codes.append(chunk_codes[keep])
        owner = np.concatenate(owners).astype(np.int64)
        if not len(owner):
            return owner, np.zeros((0, 128), np.float32)
        return owner, self.index.sa_decode(np.ascontiguousarray(np.concatenate(codes)))
