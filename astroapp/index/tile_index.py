"""Opening and searching a built tile index."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from astroapp.atomic import remove_stray_temporaries
from astroapp.digests import sha256_file
from astroapp.index.backend import ChunkVectors, FlatSearcher, IVFPQSearcher, read_index
from astroapp.index.embed import Queries
from astroapp.index.errors import IndexCorruptError, IndexNotFoundError
from astroapp.index.local_votes import LocalVoter
from astroapp.index.manifest import (
    MANIFEST_NAME,
    REBUILD_HINT,
    ModelFingerprint,
    fingerprint_from_manifest,
    model_fingerprint,
    read_manifest,
)
from astroapp.index.region import Region, haversine_km
from astroapp.index.store import (
    CHUNKS_DIR,
    N_ROT,
    TILES_DB,
    TileStore,
    load_chunk,
    tiles_digest,
)

# A zoom fits a photo when its blocks are at most this factor wider or narrower than the
# photo's expected ground width (EarthLoc's zooms are a factor 2 apart: 1-2 zooms fit).
ZOOM_FIT = 2.5
# Metadata that puts the photo further than this from every zoom's block size is ignored.
MAX_SCALE_GAP = 8.0
# Below this many allowed vectors a region query is answered exactly by a direct scan of them.
SUBSET_SCAN_MAX = 400_000


def make_footprint(corners: Sequence[Sequence[float]]) -> Any:
    """A geo Footprint when that package is present, else the corner tuples."""
    try:
        from astroapp.geo.footprint import Footprint
    except ImportError:
        return tuple((float(c[0]), float(c[1])) for c in corners)
    return Footprint.from_list([list(c) for c in corners])


def _adapt(model: Any, folder: Path, fp: ModelFingerprint) -> None:
    """An index-adapted model (sift-bow) takes the vocabulary stored with the index (unless
    it holds that one already)."""
    from astroapp.retrieval.sift_bow import adapt_to_index

    if fp.name != getattr(model, "name", None) or fp.weights_sha256 == getattr(
            model, "weights_sha256", None):
        return
    try:
        adapt_to_index(model, folder)
    except (OSError, ValueError) as exc:
        raise IndexCorruptError(f"{folder}: {exc}: rebuild the index") from exc


@dataclass(frozen=True)
class Candidate:
    """One retrieved tile: rank 1 is the best; angle = rotation (CCW) of the tile that matched."""

    tile_id: str
    source_id: str
    angle: int
    score: float
    footprint: Any            # astroapp.geo.Footprint (TL, TR, BR, BL corners, lon/lat)
    rank: int
    index_id: int             # row in the tile table
    zoom: int | None = None
    year: int | None = None
    inliers: int | None = None  # set by geometric re-ranking (astroapp.pipeline.rerank)

    def footprint_list(self) -> list[list[float]]:
        fp = self.footprint
        if hasattr(fp, "to_list"):
            return fp.to_list()
        return [[float(c[0]), float(c[1])] for c in getattr(fp, "corners", fp)]


_VERIFIED: dict[tuple, str] = {}  # (path, size, mtime, inode) -> sha256 checked already


def check_faiss_file(path: Path, finfo: dict[str, Any]) -> None:
    """The faiss file against the manifest's size and sha256 (hashed once per process for an
    unchanged file): a file whose bytes changed must not give wrong results silently."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise IndexCorruptError(f"{path} is missing: the index is damaged; {REBUILD_HINT}",
                                part="faiss") from None
    if "size_bytes" in finfo and st.st_size != finfo["size_bytes"]:
        raise IndexCorruptError(
            f"{path} has {st.st_size} bytes, the manifest says {finfo['size_bytes']} (truncated "
            f"or corrupt): the index is damaged; {REBUILD_HINT}", part="faiss")
    expected = finfo.get("sha256")
    if not expected:
        return
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    if _VERIFIED.get(key) == expected:
        return
    if sha256_file(path) != expected:
        raise IndexCorruptError(f"{path} does not match its manifest (sha256 differs): the "
                                f"index is damaged; {REBUILD_HINT}", part="faiss")
    _VERIFIED[key] = expected


def _read_tile_table(folder: Path, manifest: dict[str, Any]) -> tuple[list[tuple], list[Any]]:
    """The tile rows and chunk list the manifest covers, checked against it."""
    n_tiles = int(manifest["counts"]["tiles"])
    store = TileStore(folder, readonly=True)
    try:
        tiles = store.tile_rows(n_tiles)
        chunks = [c for c in store.chunks() if c.first_id < n_tiles]
    except sqlite3.DatabaseError as exc:
        raise IndexCorruptError(f"{store.path} is not a readable tile table ({exc}): the index "
                                f"is damaged; {REBUILD_HINT}", part="tiles") from exc
    finally:
        store.close()
    if len(tiles) != n_tiles or (tiles and tiles[-1][0] != n_tiles - 1):
        raise IndexCorruptError(f"the tile table of {folder} has {len(tiles)} tiles, the "
                                f"manifest says {n_tiles}: {REBUILD_HINT}", part="tiles")
    expected = manifest.get("tiles_digest")
    if expected and tiles_digest(tiles) != expected:
        raise IndexCorruptError(f"{folder / TILES_DB} does not match the manifest (its tile "
                                f"rows changed): the index is damaged; {REBUILD_HINT}",
                                part="tiles")
    return tiles, chunks


def _check_chunk_digest(path: Path, expected: str, what: str) -> None:
    """A stored chunk file (descriptors or feature codes) against its manifest sha256."""
    try:
        digest = sha256_file(path)
    except OSError as exc:
        raise IndexCorruptError(f"{what} {path} cannot be read ({exc.strerror or exc}); "
                                f"{REBUILD_HINT}", part="chunks") from exc
    if digest != expected:
        raise IndexCorruptError(f"{what} {path} does not match the manifest (sha256 differs); "
                                f"{REBUILD_HINT}", part="chunks")


def verify_index(folder: str | Path) -> dict[str, Any]:
    """Check every file of a complete index against its manifest: the manifest's fields, the
    tile table, the faiss file and each descriptor chunk (hashed: reads everything). Returns
    the manifest; raises IndexNotFoundError / IndexCorruptError saying what is damaged."""
    folder = Path(folder)
    if not (folder / MANIFEST_NAME).is_file():
        raise IndexNotFoundError(f"no tile index in {folder}")
    manifest = read_manifest(folder)
    tiles, chunks = _read_tile_table(folder, manifest)
    _VERIFIED.clear()  # a full check reads the file again
    check_faiss_file(folder / manifest["faiss"]["file"], manifest["faiss"])
    expected = manifest.get("chunks_sha256")
    dim = int(manifest["model"]["descriptor_dim"])
    for info in chunks:
        if expected is not None:
            if info.file not in expected:
                raise IndexCorruptError(f"descriptor chunk {folder / info.file} is not in the "
                                        f"manifest: the index is damaged; {REBUILD_HINT}",
                                        part="chunks")
            _check_chunk_digest(folder / info.file, expected[info.file], "descriptor chunk")
        load_chunk(folder, info, dim)
    for name, digest in (manifest.get("local") or {}).get("chunks_sha256", {}).items():
        _check_chunk_digest(folder / name, digest, "feature codes")
    covered = sum(c.count for c in chunks)
    if manifest["faiss"]["type"] == "ivfpq" and covered != len(tiles):
        raise IndexCorruptError(f"{folder}: descriptor chunks cover {covered} of {len(tiles)} "
                                f"tiles; {REBUILD_HINT}", part="chunks")
    for row in tiles:
        try:
            make_footprint(json.loads(row[3]))
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise IndexCorruptError(f"tile {row[2]} in {folder / TILES_DB} has a damaged "
                                    f"footprint ({str(exc)[:80]}); {REBUILD_HINT}",
                                    part="tiles") from exc
    return manifest


def index_damage(folder: str | Path) -> IndexCorruptError | None:
    """What is damaged in an index folder (a complete or a partial build), None when nothing
    is (or there is no index yet): `index build` repairs instead of saying "up to date"."""
    folder = Path(folder)
    if not (folder / MANIFEST_NAME).is_file():
        if not (folder / TILES_DB).is_file():
            return None
        try:  # a partial build: its tile table must be readable to be resumed
            store = TileStore(folder, readonly=True)
            try:
                store.tile_rows(0)
                store.chunks()
                store.pinned_model()
            finally:
                store.close()
        except IndexCorruptError as exc:
            return exc
        except (sqlite3.DatabaseError, ValueError, KeyError, TypeError) as exc:
            return IndexCorruptError(f"{folder / TILES_DB} is damaged ({exc})", part="tiles")
        return None
    try:
        verify_index(folder)
    except IndexCorruptError as exc:
        return exc
    return None


def clear_index_files(folder: str | Path, keep_descriptors: bool) -> None:
    """Delete the index's own files (nothing else in the folder): the manifest first (the
    folder then reads as an unfinished build, whatever happens next), the faiss files, and
    unless `keep_descriptors` the tile table and descriptor chunks."""
    folder = Path(folder)
    (folder / MANIFEST_NAME).unlink(missing_ok=True)
    for p in folder.glob("index-*.faiss"):
        p.unlink(missing_ok=True)
    if not keep_descriptors:
        for suffix in ("", "-wal", "-shm", "-journal"):
            (folder / (TILES_DB + suffix)).unlink(missing_ok=True)
        for p in (folder / CHUNKS_DIR).glob("chunk_*.*"):
            p.unlink(missing_ok=True)
    remove_stray_temporaries(folder)


class TileIndex:
    """A complete index folder, opened read-only. Use `TileIndex.open(dir, model=...)`."""

    def __init__(self, folder: Path, manifest: dict[str, Any], searcher: Any,
                 tiles: list[tuple], vectors: ChunkVectors | None,
                 voter: LocalVoter | None = None) -> None:
        self.folder = folder
        self._voter = voter
        self.manifest = manifest
        self.fingerprint: ModelFingerprint = fingerprint_from_manifest(manifest)
        self.dim = self.fingerprint.descriptor_dim
        self._searcher = searcher
        self._vectors = vectors
        n = len(tiles)
        self.n_tiles = n
        self._source = [r[1] for r in tiles]
        self._tile_id = [r[2] for r in tiles]
        self._footprint_json = [r[3] for r in tiles]
        self._zoom = [r[4] for r in tiles]
        self._year = [r[5] for r in tiles]
        self._centre_lon = np.array([r[6] for r in tiles], dtype=np.float64)
        self._centre_lat = np.array([r[7] for r in tiles], dtype=np.float64)
        self._radius = np.array([r[8] for r in tiles], dtype=np.float64)
        self._valid = np.array([r[9] == "ok" for r in tiles], dtype=bool)
        self._zoom_array = np.array([-1 if z is None else int(z) for z in self._zoom], dtype=int)
        self._fp_cache: dict[int, Any] = {}

    # --- opening ---------------------------------------------------------------------------
    @classmethod
    def open(cls, folder: str | Path, model: Any | None = None, *,
             fingerprint: ModelFingerprint | None = None, weights: str | Path | None = None,
             backend: str = "auto", nprobe: int | None = None,
             refine: int | None = None) -> TileIndex:
        """Open a complete index; with `model` (or `fingerprint`) refuse a different model.

        `nprobe`/`refine` override the compressed index's search parameters (lists probed,
        candidates re-ranked exactly per result); more = slower and closer to exact.
        Raises IndexNotFoundError (no manifest: missing or unfinished build),
        IndexCorruptError (a file truncated/inconsistent), IndexMismatchError (other model).
        """
        folder = Path(folder)
        if not (folder / MANIFEST_NAME).is_file():
            hint = (" (a build was started there but not finished: re-run `astroapp index "
                    "build` to complete it)") if (folder / "tiles.sqlite").is_file() else ""
            raise IndexNotFoundError(f"no tile index in {folder}{hint}")
        manifest = read_manifest(folder)
        fp = fingerprint_from_manifest(manifest)
        if model is not None:
            _adapt(model, folder, fp)
        if fingerprint is None and model is not None:
            fingerprint = model_fingerprint(model, weights)
        if fingerprint is not None:
            fp.check_same(fingerprint, f"the index in {folder}")
        counts, finfo = manifest["counts"], manifest["faiss"]
        n_tiles = int(counts["tiles"])
        tiles, chunks = _read_tile_table(folder, manifest)
        check_faiss_file(folder / finfo["file"], finfo)
        index = read_index(folder / finfo["file"])
        if index.ntotal != int(finfo["ntotal"]) or index.d != fp.descriptor_dim:
            raise IndexCorruptError(
                f"{folder / finfo['file']} holds {index.ntotal} vectors of {index.d}-D, the "
                f"manifest says {finfo['ntotal']} of {fp.descriptor_dim}-D: rebuild the index")
        if finfo["type"] == "flat":
            if index.ntotal != n_tiles * N_ROT:
                raise IndexCorruptError(f"{folder}: flat index does not cover every tile")
            searcher: Any = FlatSearcher(index, backend=backend)
            vectors = None
        elif finfo["type"] == "ivfpq":
            vectors = ChunkVectors(folder, chunks, fp.descriptor_dim)
            if vectors.n_tiles != n_tiles:
                raise IndexCorruptError(f"{folder}: descriptor chunks cover {vectors.n_tiles} "
                                        f"of {n_tiles} tiles: rebuild the index")
            searcher = IVFPQSearcher(index, vectors, int(nprobe or finfo["nprobe"]),
                                     int(refine or finfo["refine"]))
        else:
            raise IndexCorruptError(f"{folder}: unknown faiss index type {finfo['type']!r}")
        voter = None
        if manifest.get("local") is not None:
            valid = np.array([r[9] == "ok" for r in tiles], dtype=bool)
            voter = LocalVoter.open(folder, manifest["local"], valid, chunks)
        return cls(folder, manifest, searcher, tiles, vectors, voter)

    def adapt_model(self, model: Any) -> None:
        """Give an index-adapted model (sift-bow) this index's vocabulary; others: no-op."""
        _adapt(model, self.folder, self.fingerprint)

    # --- info ----------------------------------------------------------------------------
    @property
    def index_type(self) -> str:
        return str(self.manifest["faiss"]["type"])

    @property
    def backend(self) -> str:
        return str(self._searcher.backend)

    def __len__(self) -> int:
        return self.n_tiles

    def footprint(self, i: int) -> Any:
        fp = self._fp_cache.get(i)
        if fp is None:
            try:
                fp = make_footprint(json.loads(self._footprint_json[i]))
            except (ValueError, TypeError, KeyError, IndexError) as exc:
                raise IndexCorruptError(
                    f"tile {self._tile_id[i]} in {self.folder / TILES_DB} has a damaged "
                    f"footprint ({str(exc)[:80]}): the index is damaged; {REBUILD_HINT}",
                                        part="tiles") from exc
            self._fp_cache[i] = fp
        return fp

    def tiles_in_region(self, region: Region | None,
                        width_km: tuple[float, float] | None = None) -> np.ndarray:
        """Ids of (successfully embedded) tiles whose footprint may reach into the circle
        (any tile without one) and, with `width_km` (the photo's expected ground width, min
        and max), of the zooms whose blocks fit it (`fitting_zooms`)."""
        keep = self._valid.copy()
        if region is not None:
            d = haversine_km(region.lon, region.lat, self._centre_lon, self._centre_lat)
            keep &= d <= region.radius_km + self._radius
        if width_km is not None:
            zooms = self.fitting_zooms(width_km, np.nonzero(keep)[0])
            if zooms is not None:
                keep &= np.isin(self._zoom_array, list(zooms))
        return np.nonzero(keep)[0]

    def block_width_km(self, tiles: np.ndarray) -> np.ndarray:
        """Ground width (km, east-west at the tile's centre) of the given tiles' blocks."""
        return 2.0 * self._radius[tiles] / np.sqrt(2.0)

    def fitting_zooms(self, width_km: tuple[float, float],
                      tiles: np.ndarray | None = None) -> set[int] | None:
        """The zooms (among `tiles`, default all) whose blocks fit a photo `width_km` wide:
        block width within a factor ZOOM_FIT of the range, else the single closest zoom.
        None (no zoom excluded) when the tiles have no zoom, or when even the closest zoom is
        more than MAX_SCALE_GAP off (a database not at the photo's scale, e.g. the demo world,
        whose renders carry nominal focal lengths)."""
        tiles = np.nonzero(self._valid)[0] if tiles is None else tiles
        zooms = self._zoom_array[tiles]
        have = zooms >= 0
        if not have.any():
            return None
        lo, hi = max(float(width_km[0]), 1e-3), max(float(width_km[1]), 1e-3)
        widths = self.block_width_km(tiles[have])
        out: set[int] = set()
        best: tuple[float, int] | None = None
        for z in np.unique(zooms[have]):
            w = float(np.median(widths[zooms[have] == z]))
            if lo / ZOOM_FIT <= w <= hi * ZOOM_FIT:
                out.add(int(z))
            gap = abs(np.log(w / np.sqrt(lo * hi)))
            if best is None or gap < best[0]:
                best = (gap, int(z))
        if best is None or best[0] > np.log(MAX_SCALE_GAP):
            return None  # no block near the photo's scale: the hint does not fit this database
        return out or {best[1]}

    # --- search --------------------------------------------------------------------------
    @property
    def votes_locally(self) -> bool:
        """Whether tiles are ranked by their local features' votes (a sift-vote index)."""
        return self._voter is not None

    def search(self, descriptors: np.ndarray | Queries, k: int = 10,
               region: Region | Sequence[Region | None] | None = None,
               width_km: Sequence[tuple[float, float] | None] | None = None,
               ) -> list[list[Candidate]]:
        """Per query, the top-k distinct tiles (each at its best rotation), best first.

        `descriptors`: (N, D) query descriptors (L2-normalised here), or `Queries` from
        `describe_queries` (a local-vote index then ranks by its features' votes).
        `region`: one circle for all queries or one per query (None = no prior); tiles
        outside are never returned. `width_km`: per query, the photo's expected ground width
        (min, max) or None: only the zooms whose blocks fit it are searched (see
        `fitting_zooms`).
        """
        local = None
        if isinstance(descriptors, Queries):
            descriptors, local = descriptors.dense, descriptors.local
        q = np.asarray(descriptors, dtype=np.float32)
        if q.ndim == 1:
            q = q[None]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"queries must be (N, {self.dim}) descriptors of model "
                             f"{self.fingerprint.name}, got shape {q.shape}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if not np.isfinite(q).all():
            raise ValueError("query descriptors contain NaN or infinity")
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        q = np.ascontiguousarray(q)
        n = q.shape[0]
        regions: list[Region | None]
        if region is None or isinstance(region, Region):
            regions = [region] * n
        else:
            regions = list(region)
            if len(regions) != n:
                raise ValueError(f"{len(regions)} regions for {n} queries")
        widths = list(width_km) if width_km is not None else [None] * n
        if len(widths) != n:
            raise ValueError(f"{len(widths)} photo widths for {n} queries")
        out: list[list[Candidate]] = [[] for _ in range(n)]
        if local is not None and self._voter is not None:
            for i in range(n):
                free_i = regions[i] is None and widths[i] is None
                allowed = None if free_i else self.tiles_in_region(regions[i], widths[i])
                out[i] = self._vote(local[i], q[i], k, allowed)
            return out
        free = [i for i in range(n) if regions[i] is None and widths[i] is None]
        if free:
            for i, cands in zip(free, self._search_all(q[free], k), strict=True):
                out[i] = cands
        for i in range(n):
            if i not in free:
                out[i] = self._search_tiles(q[i], k, self.tiles_in_region(regions[i], widths[i]))
        return out

    def _vote(self, features: np.ndarray, q: np.ndarray, k: int,
              tiles: np.ndarray | None) -> list[Candidate]:
        """The top-k tiles by their local features' votes (rotation-free: angle 0); tiles
        no feature voted for follow in the order of the global descriptor."""
        assert self._voter is not None
        scores = self._voter.votes(features, tiles)
        keep = self._valid.copy()
        if tiles is not None:
            inside = np.zeros_like(keep)
            inside[tiles] = True
            keep &= inside
        ids = np.nonzero(keep & (scores > 0))[0]
        ids = ids[np.argsort(-scores[ids], kind="stable")[:k]]
        out = [Candidate(self._tile_id[t], self._source[t], 0, float(scores[t]),
                         self.footprint(t), rank + 1, int(t), self._zoom[t], self._year[t])
               for rank, t in enumerate(ids)]
        if len(out) < k:
            rest = np.nonzero(keep & (scores <= 0))[0]
            for c in self._search_tiles(q, k - len(out), rest):
                out.append(Candidate(c.tile_id, c.source_id, 0, 0.0, c.footprint,
                                     len(out) + 1, c.index_id, c.zoom, c.year))
        return out

    def _fold(self, scores: np.ndarray, labels: np.ndarray, k: int) -> list[Candidate]:
        best: dict[int, tuple[float, int]] = {}
        for s, lab in zip(scores, labels, strict=True):
            if lab < 0 or not np.isfinite(s):
                continue
            t, r = int(lab) // N_ROT, int(lab) % N_ROT
            if not self._valid[t] or t in best:
                continue
            best[t] = (float(s), r)
            if len(best) == k:
                break
        ranked = sorted(best.items(), key=lambda kv: -kv[1][0])
        return [Candidate(self._tile_id[t], self._source[t], 90 * r, s, self.footprint(t),
                          rank + 1, t, self._zoom[t], self._year[t])
                for rank, (t, (s, r)) in enumerate(ranked)]

    def _search_all(self, q: np.ndarray, k: int) -> list[list[Candidate]]:
        n_valid = int(self._valid.sum())
        want = min(k, n_valid)
        total = self._searcher.cpu_index.ntotal
        kk = min(total, N_ROT * k + N_ROT * int((~self._valid).sum()))
        results: list[list[Candidate] | None] = [None] * q.shape[0]
        todo = list(range(q.shape[0]))
        while todo:
            scores, labels = self._searcher.search(q[todo], kk)
            again = []
            for j, i in enumerate(todo):
                cands = self._fold(scores[j], labels[j], k)
                if len(cands) < want and kk < total:
                    again.append(i)  # approximate search returned too few distinct tiles
                else:
                    results[i] = cands
            todo = again
            kk = min(total, kk * 4)
        return [r or [] for r in results]

    def _search_tiles(self, q: np.ndarray, k: int, tiles: np.ndarray) -> list[Candidate]:
        if tiles.size == 0:
            return []
        labels = (tiles[:, None] * N_ROT + np.arange(N_ROT)).ravel()
        if labels.size <= SUBSET_SCAN_MAX:
            if self._vectors is not None:
                vecs = self._vectors.get(labels)
            else:
                vecs = self._searcher.vectors()[labels]
            scores = vecs @ q
            order = np.argsort(-scores, kind="stable")[: N_ROT * k]
            return self._fold(scores[order], labels[order], k)
        return self._search_selected(q, k, labels)

    def _search_selected(self, q: np.ndarray, k: int, labels: np.ndarray) -> list[Candidate]:
        import faiss

        sel = faiss.IDSelectorBatch(labels.astype(np.int64))
        index = self._searcher.cpu_index
        kk = min(labels.size, N_ROT * k)
        if self.index_type == "ivfpq":
            # probe more lists the smaller the region's share of the index, so that about as
            # many in-region vectors are scanned as a global search would scan overall
            share = labels.size / max(index.ntotal, 1)
            nprobe = int(min(index.nlist, np.ceil(index.nprobe / max(share, 1e-9))))
            params = faiss.SearchParametersIVF(sel=sel, nprobe=nprobe)
            kk_approx = min(labels.size, kk * self._searcher.refine)
            _, approx = index.search(q[None], kk_approx, params=params)
            cand = approx[0][approx[0] >= 0]
            if cand.size < kk:  # the probed lists held too few: scan the region exactly
                cand = labels
            scores = self._vectors.get(cand) @ q
            order = np.argsort(-scores, kind="stable")[:kk]
            return self._fold(scores[order], cand[order], k)
        params = faiss.SearchParameters(sel=sel)
        scores, found = index.search(q[None], kk, params=params)
        return self._fold(scores[0], found[0], k)
