"""Building (and extending) a tile index: streaming, resumable, bounded memory.

Folder layout (DIR):
  tiles.sqlite       tile table (id, source, tile_id, footprint, zoom, year, status), chunk list,
                     the model the folder is pinned to
  chunks/*.npy       descriptors (n, 4, D), one file per completed chunk of tile ids
  index-<gen>.faiss  the searchable faiss index (labels 4*tile + rotation)
  manifest.json      written last, atomically: model, preprocessing, build params, counts,
                     faiss type/file; an index is complete iff its manifest exists

Killed at any point, a re-run keeps every committed chunk and recomputes only the rest;
chunks are aligned to fixed tile-id boundaries and batches to chunks, so the result is
identical to an uninterrupted build. A new source appends tiles and embeds only those.
"""

from __future__ import annotations

import ctypes
import datetime as _dt
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from astroapp.digests import sha256_file
from astroapp.index.backend import ChunkVectors, build_faiss, choose_index_type, write_index_atomic
from astroapp.index.embed import embed_tile_batch, prefetch_batches, use_channels_last
from astroapp.index.errors import IndexCorruptError, IndexMismatchError, IndexSourceError
from astroapp.index.local_votes import LocalCodes, local_manifest
from astroapp.index.manifest import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_NAME,
    ModelFingerprint,
    fingerprint_from_manifest,
    fingerprint_to_dict,
    model_fingerprint,
    preprocessing_of,
    read_manifest,
    write_json_atomic,
)
from astroapp.index.store import N_ROT, TileStore, load_chunk, tiles_digest
from astroapp.index.tile_index import clear_index_files, index_damage
from astroapp.progress import Progress, ProgressFn

log = logging.getLogger(__name__)

# (store, model, pending, todo, batch_size, chunk_size, workers, load_size, dtype, progress,
#  cancel) -> tiles embedded: `_embed` here, a Ray driver in distributed.py
EmbedFn = Callable[..., int]


@dataclass
class BuildReport:
    out_dir: Path
    tiles_total: int = 0
    tiles_new: int = 0
    tiles_embedded: int = 0          # embedded by this run
    tiles_failed: int = 0            # failed over the whole index
    vectors: int = 0
    index_type: str = ""
    seconds: float = 0.0
    completed: bool = False
    up_to_date: bool = False
    source_errors: list[str] = field(default_factory=list)
    repaired: str | None = None      # what was damaged (or "--force") and so rebuilt

    @property
    def tiles_per_s(self) -> float:
        return self.tiles_embedded / self.seconds if self.seconds > 0 else 0.0


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def build_index(
    sources: Sequence[Any],
    model: Any,
    out_dir: str | Path,
    *,
    weights: str | Path | None = None,
    fingerprint: ModelFingerprint | None = None,
    batch_size: int = 16,
    chunk_size: int = 1024,
    workers: int = 2,
    load_size: int | None = None,
    index_type: str = "auto",
    dtype: str = "float16",
    seed: int = 0,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    source_specs: Sequence[str | None] | None = None,
    force: bool = False,
    embed_fn: EmbedFn | None = None,
) -> BuildReport:
    """Embed every tile of `sources` at 0/90/180/270 degrees into the index at `out_dir`.

    Re-running on the same folder resumes or extends it; a folder pinned to another model is
    refused (IndexMismatchError). `progress` gets a `Progress` (stage "index", done/total
    tiles embedded, item the folder's name) after each batch (the CLI draws it); setting
    `cancel` stops after the current batch (committed chunks are kept; the report
    says completed=False). A damaged folder (any file not matching the manifest) is repaired:
    rebuilt from the stored descriptors when they are intact, re-embedded otherwise, and
    `report.repaired` says why; `force` re-embeds everything. `embed_fn` replaces the local
    embedding loop (same arguments as `_embed`; the Ray build passes its driver). Returns a
    BuildReport.
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    if dtype not in ("float16", "float32"):
        raise ValueError(f"dtype must be float16 or float32, got {dtype!r}")
    if chunk_size % batch_size:
        chunk_size = max(batch_size, (chunk_size // batch_size) * batch_size)
    adapt_vocabulary(model, out, sources, seed)
    fp = fingerprint or model_fingerprint(model, weights)
    load_size = int(load_size or max(int(s) for s in model.input_size))
    report = BuildReport(out_dir=out)
    damage = index_damage(out) if not force else None
    if force or damage is not None:
        report.repaired = "--force" if force else str(damage)
        keep = not force and damage.part in ("manifest", "faiss")
        if damage is not None:
            log.warning("damaged: %s: rebuilding%s", damage,
                        " from the stored descriptors" if keep else "")
        clear_index_files(out, keep_descriptors=keep)

    store = TileStore(out, create=True)
    try:
        pinned = store.pinned_model()
        if (out / MANIFEST_NAME).is_file():
            man_fp = fingerprint_from_manifest(read_manifest(out))
            man_fp.check_same(fp, f"the index in {out}")
        if pinned is not None:
            pinned.check_same(fp, f"the partial index in {out}")
        else:
            store.set_meta("model", json.dumps(fingerprint_to_dict(fp)))
            store.set_meta("build", json.dumps({"chunk_size": chunk_size,
                                                "batch_size": batch_size, "dtype": dtype,
                                                "load_size": load_size}))
        params = json.loads(store.get_meta("build") or "{}")
        # chunk geometry and storage type are fixed by the first run (identical resumes)
        chunk_size, batch_size = int(params["chunk_size"]), int(params["batch_size"])
        dtype, load_size = params["dtype"], int(params["load_size"])
        store.remove_stray_files()

        # 1. register tiles (new ones get the next ids, in source order)
        upto = store.embedded_upto()
        pending: dict[int, tuple[Any, Any]] = {}
        specs = list(source_specs or [None] * len(sources))
        for source, spec in zip(sources, specs, strict=True):
            sid = str(source.source_id)
            new = store.register(source.tiles(), sid, spec, list(getattr(source, "errors", [])))
            report.tiles_new += len(new)
            report.source_errors.extend(getattr(source, "errors", []))
            for tid, ref in new:
                pending[tid] = (source, ref)
        by_source = {str(s.source_id): s for s in sources}
        n_tiles = store.tile_count()
        report.tiles_total = n_tiles
        if upto < n_tiles:  # tiles registered by a killed run, not yet embedded
            missing = [t for t in range(upto, n_tiles) if t not in pending]
            if missing:
                _recover_refs(store, by_source, missing, pending)
        todo = list(range(upto, n_tiles))

        # 2. embed the pending tiles, chunk by chunk
        if todo:
            report.tiles_embedded = (embed_fn or _embed)(
                store, model, pending, todo, batch_size, chunk_size,
                                           workers, load_size, dtype, progress, cancel)
            if cancel is not None and cancel.is_set() and store.embedded_upto() < n_tiles:
                report.seconds = time.perf_counter() - t0
                return report

        # 3. faiss index + manifest
        manifest_path = out / MANIFEST_NAME
        if not todo and manifest_path.is_file():
            man = read_manifest(out)
            if int(man["counts"]["tiles"]) == n_tiles and (
                    index_type in ("auto", man["faiss"]["type"])):
                report.up_to_date, report.completed = True, True
                report.index_type = man["faiss"]["type"]
                report.vectors = int(man["counts"]["vectors"])
                report.tiles_failed = int(man["counts"]["failed"])
                report.seconds = time.perf_counter() - t0
                return report
        _finalise(store, out, fp, preprocessing_of(model, load_size), index_type, seed, report,
                  {"chunk_size": chunk_size, "batch_size": batch_size, "dtype": dtype,
                   "workers": workers, "seed": seed},
                  voting_model=model if getattr(model, "local_votes", False) else None)
    finally:
        store.close()
    report.completed = True
    report.seconds = time.perf_counter() - t0
    return report


def adapt_vocabulary(model: Any, out: Path, sources: Sequence[Any], seed: int = 0) -> None:
    """Give an index-adapted model (sift-bow) its vocabulary: the one stored with the index
    when there is one (a resumed or extended build reuses it), else one learned from an even
    sample of the sources' tiles and written atomically before any tile is embedded. Other
    models are left as they are."""
    from astroapp.retrieval.sift_bow import FIT_SAMPLE, VOCABULARY_FILE, SiftBow

    if not isinstance(model, SiftBow):
        return
    path = out / VOCABULARY_FILE
    if path.is_file():
        model.load_vocabulary(path)
        return
    if (out / "tiles.sqlite").is_file():
        return  # another model's index: the fingerprint check refuses it
    refs = [(src, ref) for src in sources for ref in src.tiles()]
    if not refs:
        return
    step = max(1, len(refs) // FIT_SAMPLE)
    images = []
    side = max(int(v) for v in model.input_size)
    for src, ref in refs[::step][:FIT_SAMPLE]:
        try:
            images.append(np.ascontiguousarray(src.load(ref, size=side), dtype=np.uint8))
        except Exception as exc:  # noqa: BLE001 - an unreadable tile is left out of the sample
            log.debug("vocabulary sample: tile %s unreadable: %s", ref.tile_id, exc)
    t0 = time.perf_counter()
    try:
        model.fit(images, seed=seed, expected_tiles=len(refs))
    except ValueError as exc:
        raise IndexSourceError(f"{out}: cannot learn {model.name}'s vocabulary from these "
                               f"tiles: {exc}") from exc
    model.save_vocabulary(out)
    log.info("%s vocabulary learned from %d tiles in %.1f s", model.name, len(images),
             time.perf_counter() - t0)


def _recover_refs(store: TileStore, by_source: dict[str, Any], missing: list[int],
                  pending: dict[int, tuple[Any, Any]]) -> None:
    """Tiles registered by an earlier (killed) run: find their refs again in their sources."""
    rows = store.db.execute(
        f"SELECT id, source_id, tile_id FROM tiles WHERE id IN ({','.join('?' * len(missing))})",
        missing).fetchall() if len(missing) < 900 else [
        r for r in store.db.execute("SELECT id, source_id, tile_id FROM tiles WHERE id >= ?",
                                    (min(missing),)) if r[0] in set(missing)]
    wanted: dict[str, dict[str, int]] = {}
    for tid, sid, tile_id in rows:
        wanted.setdefault(sid, {})[tile_id] = tid
    for sid, names in wanted.items():
        source = by_source.get(sid)
        if source is None:
            raise IndexMismatchError(
                f"the index in {store.folder} has tiles of source '{sid}' still to embed, but "
                "that source was not given: re-run the build with it among the sources")
        for ref in source.tiles():
            tid = names.get(ref.tile_id)
            if tid is not None:
                pending[tid] = (source, ref)
    lost = [t for t in missing if t not in pending]
    if lost:
        raise IndexMismatchError(
            f"{len(lost)} tiles registered in {store.folder} are no longer in their source: "
            "the source changed under the index; build a new index")


def _embed(store: TileStore, model: Any, pending: dict[int, tuple[Any, Any]], todo: list[int],
           batch_size: int, chunk_size: int, workers: int, load_size: int, dtype: str,
           progress: ProgressFn | None, cancel: threading.Event | None) -> int:
    dim = int(model.descriptor_dim)
    np_dtype = np.dtype(dtype)
    total = len(todo)
    voting = bool(getattr(model, "local_votes", False))
    local = LocalCodes()
    done = 0
    stream = None
    try:
        bounds = chunk_bounds(todo, chunk_size)
        batches = (  # made lazily: only the batches in flight exist at any time
            [(t, *pending[t]) for t in range(b, min(b + batch_size, end))]
            for start, end in bounds for b in range(start, end, batch_size))
        channels_last = use_channels_last(model)
        stream = prefetch_batches(batches, model, load_size, workers=workers)
        ci = 0
        buf = np.zeros((bounds[0][1] - bounds[0][0], N_ROT, dim), dtype=np_dtype)
        failures: list[tuple[int, str]] = []
        for loaded in stream:
            start, end = bounds[ci]
            if loaded.pixels is not None:
                desc, codes = embed_tile_batch(model, loaded.pixels, channels_last)
                buf[np.asarray(loaded.ids) - start] = desc.astype(np_dtype)
                local.extend(loaded.ids, codes)
            failures.extend(loaded.failures)
            n = len(loaded.ids) + len(loaded.failures)
            done += n
            if progress is not None:
                progress(embed_progress(store, done, total))
            last_id = max(loaded.ids + [f[0] for f in loaded.failures])
            if last_id == end - 1:  # chunk complete: commit durably
                store.commit_chunk(start, buf, failures,
                                   local.arrays(model.code_size) if voting else None)
                failures = []
                local = LocalCodes()
                ci += 1
                if ci < len(bounds):
                    buf = np.zeros((bounds[ci][1] - bounds[ci][0], N_ROT, dim), dtype=np_dtype)
                if cancel is not None and cancel.is_set():
                    break
            elif cancel is not None and cancel.is_set():
                break
    finally:
        if stream is not None:
            stream.close()
        _release_freed_memory()
    return done


def embed_progress(store: TileStore, done: int, total: int) -> Progress:
    """The index build's event: `done` of `total` tiles embedded into the folder `item`."""
    return Progress("index", done, total, item=store.folder.name, message="tiles embedded")


def chunk_bounds(todo: Sequence[int], chunk_size: int) -> list[tuple[int, int]]:
    """[start, end) of the chunks covering the pending ids: chunks start at fixed ids (the
    first pending id, then every chunk_size), so every build of them cuts the same chunks."""
    return [(start, min(start + chunk_size, todo[-1] + 1))
            for start in range(todo[0], todo[-1] + 1, chunk_size)]


def _release_freed_memory() -> None:
    """Give the heap that embedding freed (decode buffers, activations: ~50 MB) back to the
    system, so the index built next does not sit on top of it (glibc keeps it otherwise)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to do
        pass


def build_from_descriptors(
    out_dir: str | Path,
    source_id: str,
    refs: Sequence[Any],
    descriptors: Any,
    fingerprint: ModelFingerprint,
    preprocessing: dict[str, Any],
    *,
    chunk_size: int = 4096,
    index_type: str = "auto",
    seed: int = 0,
) -> BuildReport:
    """An index from descriptors computed elsewhere: `descriptors` is an (N, 4, D) array-like
    (e.g. a memmap) in the order of `refs`. Used by benchmarks and to import foreign indexes."""
    t0 = time.perf_counter()
    out = Path(out_dir)
    if (out / MANIFEST_NAME).exists() or (out / "tiles.sqlite").exists():
        raise FileExistsError(f"{out} already holds an index")
    report = BuildReport(out_dir=out)
    store = TileStore(out, create=True)
    try:
        store.set_meta("model", json.dumps(fingerprint_to_dict(fingerprint)))
        store.set_meta("build", json.dumps({"chunk_size": chunk_size, "batch_size": 0,
                                            "dtype": "float16", "load_size": 0}))
        store.register(refs, source_id, None, [])
        n = len(refs)
        if descriptors.shape != (n, N_ROT, fingerprint.descriptor_dim):
            raise ValueError(f"descriptors have shape {descriptors.shape}, expected "
                             f"({n}, {N_ROT}, {fingerprint.descriptor_dim})")
        for start in range(0, n, chunk_size):
            block = np.asarray(descriptors[start : start + chunk_size], dtype=np.float32)
            block /= np.maximum(np.linalg.norm(block, axis=2, keepdims=True), 1e-12)
            store.commit_chunk(start, block.astype(np.float16), [])
        report.tiles_total = report.tiles_new = report.tiles_embedded = n
        _finalise(store, out, fingerprint, preprocessing, index_type, seed, report,
                  {"chunk_size": chunk_size, "dtype": "float16", "seed": seed,
                   "from": "descriptors"})
    finally:
        store.close()
    report.completed = True
    report.seconds = time.perf_counter() - t0
    return report


class _StreamedChunkVectors(ChunkVectors):
    """Chunk vectors fed to faiss in slices of at most BLOCK_BYTES of float32, read from the
    chunk files (not mapped), so that building the index needs a small fixed working set on
    top of the index itself, whatever the chunk and descriptor sizes (a whole 1024-tile chunk
    of 4096-D descriptors would otherwise be held three times: stored, as float32, copied).
    The IVF-PQ training sample is gathered the same way: pages of a memory map stay resident
    (and count in the build's memory) long after the sample is taken.
    Same vectors in the same order as whole chunks: the index is identical."""

    BLOCK_BYTES = 8 * 1024 * 1024

    def _tile_blocks(self):
        """(first tile id, (k, 4, D) array in the stored dtype) over all chunks, in order."""
        per_tile = N_ROT * self.dim
        for info, arr in zip(self.chunks, self.arrays, strict=True):
            offset = getattr(arr, "offset", None)
            if offset is None or not arr.flags.c_contiguous:  # not a plain .npy memmap
                yield info.first_id, load_chunk(self.folder, info, self.dim, mmap=False)
                continue
            step = max(1, self.BLOCK_BYTES // (per_tile * 4))
            with open(self.folder / info.file, "rb") as f:
                for t in range(0, info.count, step):
                    k = min(step, info.count - t)
                    f.seek(offset + t * per_tile * arr.dtype.itemsize)
                    block = np.fromfile(f, dtype=arr.dtype, count=k * per_tile)
                    if block.size != k * per_tile:
                        raise IndexCorruptError(f"descriptor chunk {self.folder / info.file} "
                                                "is truncated: rebuild the index")
                    yield info.first_id + t, block.reshape(k, N_ROT, self.dim)

    def iter_blocks(self):
        for first, block in self._tile_blocks():
            yield first * N_ROT, block.reshape(-1, self.dim).astype(np.float32, copy=False)

    def get(self, labels: np.ndarray) -> np.ndarray:
        labels = np.asarray(labels, dtype=np.int64).ravel()
        out = np.empty((labels.size, self.dim), dtype=np.float32)
        order = np.argsort(labels, kind="stable")
        tiles = labels[order] // N_ROT
        for first, block in self._tile_blocks():
            lo, hi = np.searchsorted(tiles, [first, first + block.shape[0]])
            if hi > lo:
                sel = order[lo:hi]
                out[sel] = block[tiles[lo:hi] - first, labels[sel] % N_ROT]
        return out


def _finalise(store: TileStore, out: Path, fp: ModelFingerprint, preprocessing: dict[str, Any],
              index_type: str, seed: int, report: BuildReport, build_params: dict,
              voting_model: Any = None) -> None:
    chunks = store.chunks()
    n_tiles = store.tile_count()
    rows = store.db.execute("SELECT status = 'ok' FROM tiles ORDER BY id")
    valid = np.fromiter((r[0] for r in rows), dtype=bool)
    vectors = _StreamedChunkVectors(out, chunks, fp.descriptor_dim)
    if vectors.n_tiles != n_tiles:
        raise RuntimeError(f"internal: chunks cover {vectors.n_tiles} of {n_tiles} tiles")
    kind = choose_index_type(n_tiles * N_ROT, fp.descriptor_dim, index_type)
    if kind == "ivfpq" and int(valid.sum()) * N_ROT < 1000:
        log.warning("only %d vectors: too few to train IVF-PQ, writing an exact index instead",
                    int(valid.sum()) * N_ROT)
        kind = "flat"
    index, info = build_faiss(vectors, valid, kind, seed=seed)
    old = json.loads(store.get_meta("generation") or "0")
    gen = old + 1
    fname = f"index-{gen:04d}.faiss"
    write_index_atomic(index, out / fname)
    local = None
    if voting_model is not None:  # every tile's local features, for nearest-neighbour votes
        local = local_manifest(out, chunks, valid, voting_model.neighbours)
    store.set_meta("generation", json.dumps(gen))
    sources = {sid: n for sid, _spec, n, _err in store.sources()}
    failed = int((~valid).sum())
    now = _now()
    created = now
    if (out / MANIFEST_NAME).is_file():
        try:
            created = read_manifest(out).get("created_at", now)
        except Exception as exc:  # noqa: BLE001 - a damaged old manifest is being replaced
            log.warning("%s: previous manifest unreadable (%s); its creation time is lost",
                        out, exc)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": fingerprint_to_dict(fp),
        "preprocessing": preprocessing,
        "build": build_params,
        "counts": {"tiles": n_tiles, "failed": failed, "vectors": int(index.ntotal),
                   "rotations": N_ROT, "sources": sources},
        "faiss": {**info, "file": fname, "ntotal": int(index.ntotal),
                  "size_bytes": (out / fname).stat().st_size,
                  "sha256": sha256_file(out / fname)},
        "created_at": created,
        "updated_at": now,
        # what opening (tiles) and `index build` / `index info --verify` (chunks) check
        "tiles_digest": tiles_digest(store.tile_rows(n_tiles)),
        "chunks_sha256": {c.file: sha256_file(out / c.file) for c in chunks},
    }
    if local is not None:
        manifest["local"] = local
    write_json_atomic(out / MANIFEST_NAME, manifest)
    for p in out.glob("index-*.faiss"):
        if p.name != fname:
            p.unlink(missing_ok=True)
    report.index_type = kind
    report.vectors = int(index.ntotal)
    report.tiles_failed = failed
