"""Index builds on a Ray cluster: the tiles' chunks embedded by Ray tasks, merged by the driver.

The driver is `build_index` itself (registration, the sift-bow vocabulary, resume, the faiss
index and manifest), with its local embedding loop replaced by `RayEmbedder`: each chunk of
tile ids (the same chunks a local build cuts) is one Ray task that loads its tiles, embeds
them at 4 rotations (`prefetch_batches` + `embed_rotations`, batches aligned as locally) and
writes the chunk in the index's chunk format (an (n, 4, D) .npy) plus a JSON sidecar (its
failures and what it was computed from) under `DIR/ray-chunks/`. The driver commits finished
chunks to the tile table in id order (`TileStore.commit_chunk`), so the folder is at every
moment a valid partial build; a task whose worker dies is retried by Ray; a driver killed
mid-build leaves its staged chunks, which the next run reuses when their sidecar matches
(same model, same tiles) instead of recomputing them.

The model is pickled once into Ray's object store, after `build_index` has learned or loaded
the index's vocabulary (sift-bow), so every worker embeds with the driver's vocabulary. Tasks
ask for a GPU when the cluster has one (the model is moved there). Workers that do not see the
driver's folder (no shared file system) return their chunk through the object store instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from astroapp.atomic import atomic_path, atomic_text
from astroapp.index.build import BuildReport, build_index, chunk_bounds, embed_progress
from astroapp.index.manifest import fingerprint_to_dict, model_fingerprint
from astroapp.index.store import N_ROT, TileStore, local_chunk_path, write_local_chunk
from astroapp.progress import ProgressFn

log = logging.getLogger(__name__)

STAGING_DIR = "ray-chunks"
TASK_RETRIES = 3


class RayUnavailableError(RuntimeError):
    """Ray is not installed, or the cluster cannot be reached."""


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailableError(
            "--ray needs Ray: pip install 'astroapp[distributed]'") from exc
    return ray


def connect(address: str | None = None, num_cpus: int | None = None) -> Any:
    """Join the cluster at `address` ('auto' = the one `ray start` runs here), or start a local
    one when `address` is None; a session already connected is reused."""
    ray = _ray()
    if ray.is_initialized():
        return ray
    try:
        ray.init(address=address or None, num_cpus=num_cpus if not address else None,
                 include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RayUnavailableError(f"cannot reach the Ray cluster at {address}: {exc}") from exc
    return ray


def _chunk_key(fp: dict[str, Any], items: Sequence[tuple[int, str, Any]], dtype: str) -> str:
    """What a staged chunk was computed from: the model, the dtype and its tiles (ids and
    names); a staged chunk is reused only when the key matches."""
    h = hashlib.sha256(json.dumps(fp, sort_keys=True).encode())
    h.update(dtype.encode())
    for tid, sid, ref in items:
        h.update(f"{tid}\x1f{sid}\x1f{ref.tile_id}\x1e".encode())
    return h.hexdigest()


Local = tuple[np.ndarray, np.ndarray] | None  # a local-vote model's (tile ids, feature codes)
Staged = tuple[np.ndarray, list[tuple[int, str]], Local]


def _staged_paths(stage: Path, start: int) -> tuple[Path, Path, Path]:
    """The chunk, its sidecar and (local-vote models) its feature codes."""
    return (stage / f"chunk_{start:010d}.npy", stage / f"chunk_{start:010d}.json",
            local_chunk_path(stage, f"chunk_{start:010d}.npy"))


def _read_staged(stage: Path, start: int, key: str, shape: tuple[int, ...], dtype: str,
                 voting: bool = False) -> Staged | None:
    """A staged chunk (descriptors, failures, feature codes) when complete and computed
    from `key`."""
    npy, side, codes = _staged_paths(stage, start)
    local: Local = None
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
        if meta.get("key") != key:
            return None
        arr = np.load(npy, allow_pickle=False)
        if voting:
            with np.load(codes, allow_pickle=False) as z:
                local = (z["tile"], z["codes"])
    except (OSError, ValueError, EOFError, KeyError):
        return None
    if arr.shape != shape or str(arr.dtype) != dtype:
        return None
    return arr, [(int(t), str(e)) for t, e in meta.get("failures", [])], local


def _write_staged(stage: Path, start: int, key: str, desc: np.ndarray,
                  failures: list[tuple[int, str]], local: Local = None) -> None:
    """The chunk file (and its codes) first, then its sidecar: a sidecar only exists beside
    a whole chunk."""
    npy, side, codes = _staged_paths(stage, start)
    with atomic_path(npy) as tmp, open(tmp, "wb") as f:
        np.save(f, desc, allow_pickle=False)
    if local is not None:
        write_local_chunk(codes, *local)
    with atomic_text(side) as f:
        json.dump({"key": key, "failures": failures}, f)


def embed_chunk(model: Any, sources: dict[str, Any], items: Sequence[tuple[int, str, Any]],
                start: int, end: int, batch_size: int, load_size: int, dtype: str,
                workers: int = 1) -> Staged:
    """Descriptors (end-start, 4, D) of one chunk, its failed tiles and (local-vote models)
    its feature codes, batched from `start` in steps of `batch_size` as the local build
    batches it (same numbers)."""
    from astroapp.index.embed import embed_tile_batch, prefetch_batches, use_channels_last
    from astroapp.index.local_votes import LocalCodes

    by_id = {tid: (sources[sid], ref) for tid, sid, ref in items}
    batches = ([(t, *by_id[t]) for t in range(b, min(b + batch_size, end))]
               for b in range(start, end, batch_size))
    buf = np.zeros((end - start, N_ROT, int(model.descriptor_dim)), dtype=np.dtype(dtype))
    failures: list[tuple[int, str]] = []
    channels_last = use_channels_last(model)
    voting = bool(getattr(model, "local_votes", False))
    local = LocalCodes()
    stream = prefetch_batches(batches, model, load_size, workers=workers)
    try:
        for loaded in stream:
            if loaded.pixels is not None:
                desc, codes = embed_tile_batch(model, loaded.pixels, channels_last)
                buf[np.asarray(loaded.ids) - start] = desc.astype(buf.dtype)
                local.extend(loaded.ids, codes)
            failures.extend(loaded.failures)
    finally:
        stream.close()
    return buf, failures, local.arrays(model.code_size) if voting else None


_worker_cache: dict[str, Any] = {}


def _worker_model(model_blob: Any) -> Any:
    """The task's model, on the GPU Ray gave the task if any; kept per worker process between
    tasks of one build (keyed by the object's id)."""
    import ray
    import torch

    key = model_blob.hex() if hasattr(model_blob, "hex") else str(id(model_blob))
    model = _worker_cache.get(key)
    if model is None:
        model = ray.get(model_blob) if isinstance(model_blob, ray.ObjectRef) else model_blob
        if ray.get_gpu_ids() and torch.cuda.is_available():
            model = model.to("cuda")
        elif any(p.dtype == torch.float16 for p in model.parameters()):
            model = model.float()  # a driver on CUDA ships fp16 weights; CPUs want fp32
        _worker_cache.clear()
        _worker_cache[key] = model
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))
    return model


def _chunk_task(model_ref: list, sources: dict[str, Any], items: list, start: int, end: int,
                batch_size: int, load_size: int, dtype: str, stage: str, token: str,
                key: str) -> tuple[int, np.ndarray | None, list[tuple[int, str]], Local]:
    """One Ray task: embed a chunk; write it under `stage` when this worker sees the driver's
    folder (the token file is there), else return it through the object store."""
    model = _worker_model(model_ref[0])
    desc, failures, local = embed_chunk(model, sources, items, start, end, batch_size,
                                        load_size, dtype)
    folder = Path(stage)
    if (folder / token).is_file():
        _write_staged(folder, start, key, desc, failures, local)
        return start, None, failures, None
    return start, desc, failures, local


class RayEmbedder:
    """`build_index`'s embedding step on Ray (see the module docstring)."""

    def __init__(self, ray: Any, out_dir: Path, specs: dict[str, str | None],
                 cpus_per_task: float = 1.0, gpus_per_task: float | None = None,
                 max_in_flight: int | None = None) -> None:
        self.ray = ray
        self.out = Path(out_dir)
        self.specs = specs
        self.cpus_per_task = cpus_per_task
        self.gpus_per_task = gpus_per_task
        self.max_in_flight = max_in_flight
        self.reused = 0      # chunks taken from the staging folder (a killed run's work)
        self.computed = 0    # chunks embedded by Ray tasks in this run

    def _gpus(self) -> float:
        if self.gpus_per_task is not None:
            return self.gpus_per_task
        return 1.0 if self.ray.cluster_resources().get("GPU", 0) > 0 else 0.0

    def __call__(self, store: TileStore, model: Any, pending: dict[int, tuple[Any, Any]],
                 todo: list[int], batch_size: int, chunk_size: int, workers: int,
                 load_size: int, dtype: str, progress: ProgressFn | None,
                 cancel: threading.Event | None) -> int:
        ray = self.ray
        stage = self.out / STAGING_DIR
        stage.mkdir(exist_ok=True)
        for old in stage.glob(".driver-*"):  # a killed driver's
            old.unlink(missing_ok=True)
        token = f".driver-{secrets.token_hex(8)}"
        (stage / token).write_text("")
        fp = fingerprint_to_dict(model_fingerprint(model))
        dim = int(model.descriptor_dim)
        voting = bool(getattr(model, "local_votes", False))
        # sources travel once: as a spec the worker reopens when known, else pickled
        sources = {}
        for source, _ref in pending.values():
            sid = str(source.source_id)
            if sid not in sources:
                spec = self.specs.get(sid)
                sources[sid] = _SpecSource(spec) if spec else source
        sources_ref = ray.put(sources)
        model_ref = ray.put(model.cpu() if hasattr(model, "cpu") else model)
        task = ray.remote(_chunk_task).options(
            num_cpus=self.cpus_per_task, num_gpus=self._gpus(), max_retries=TASK_RETRIES,
            retry_exceptions=False)
        limit = self.max_in_flight or max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))

        bounds = chunk_bounds(todo, chunk_size)
        keys, ready, queue = {}, {}, []
        for start, end in bounds:
            items = [(t, str(pending[t][0].source_id), pending[t][1]) for t in range(start, end)]
            keys[start] = _chunk_key(fp, items, dtype)
            staged = _read_staged(stage, start, keys[start], (end - start, N_ROT, dim), dtype,
                                  voting)
            if staged is not None:
                ready[start] = staged
                self.reused += 1
            else:
                queue.append((start, end, items))
        total, done, ci = len(todo), 0, 0
        in_flight: dict[Any, int] = {}
        try:
            while ci < len(bounds):
                while queue and len(in_flight) < limit and not (cancel and cancel.is_set()):
                    start, end, items = queue.pop(0)
                    ref = task.remote([model_ref], sources_ref, items, start, end, batch_size,
                                      load_size, dtype, str(stage), token, keys[start])
                    in_flight[ref] = start
                # commit, in id order, every chunk that is ready
                while ci < len(bounds) and bounds[ci][0] in ready:
                    start, end = bounds[ci]
                    desc, failures, local = ready.pop(start)
                    store.commit_chunk(start, desc, failures, local)
                    for p in _staged_paths(stage, start):
                        p.unlink(missing_ok=True)
                    done += end - start
                    ci += 1
                    if progress is not None:
                        progress(embed_progress(store, done, total))
                if ci >= len(bounds) or (cancel and cancel.is_set() and not in_flight):
                    break
                finished, _ = ray.wait(list(in_flight), num_returns=1)
                for ref in finished:
                    start = in_flight.pop(ref)
                    _, desc, failures, local = ray.get(ref)
                    end = dict(bounds)[start]
                    if desc is None:
                        staged = _read_staged(stage, start, keys[start],
                                              (end - start, N_ROT, dim), dtype, voting)
                        if staged is None:
                            raise RuntimeError(f"chunk {start} staged by a Ray worker is "
                                               f"unreadable in {stage}")
                        desc, failures, local = staged
                    else:  # kept for a resume like a worker-staged chunk
                        _write_staged(stage, start, keys[start], desc, failures, local)
                    self.computed += 1
                    ready[start] = (desc, failures, local)
        finally:
            for ref in in_flight:
                ray.cancel(ref, force=False)
            (stage / token).unlink(missing_ok=True)
            if not any(stage.iterdir()):
                stage.rmdir()
        return done


class _SpecSource:
    """A tile source named by its spec ('bluemarble', a folder, a raster), opened on first use
    in the worker process (open rasters do not pickle; a spec does)."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self._source: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"spec": self.spec, "_source": None}

    def load(self, ref: Any, size: int | None = None) -> np.ndarray:
        if self._source is None:
            from astroapp.geo.sources import open_source

            self._source = open_source(self.spec)
        return self._source.load(ref, size=size)


def build_index_ray(sources: Sequence[Any], model: Any, out_dir: str | Path, *,
                    address: str | None = None, num_cpus: int | None = None,
                    source_specs: Sequence[str | None] | None = None,
                    cpus_per_task: float = 1.0, gpus_per_task: float | None = None,
                    force: bool = False, **build_kw: Any) -> BuildReport:
    """`build_index` with the tiles embedded by Ray tasks on the cluster at `address` (a local
    one of `num_cpus` CPUs when None). Same arguments, same folder, same index; the report's
    `ray_reused` / `ray_computed` count chunks taken over from a killed run / embedded now."""
    ray = connect(address, num_cpus)
    out = Path(out_dir)
    if force:
        stage = out / STAGING_DIR
        for p in stage.glob("chunk_*"):
            p.unlink(missing_ok=True)
    specs = dict(zip((str(s.source_id) for s in sources),
                     source_specs or [None] * len(sources), strict=True))
    embedder = RayEmbedder(ray, out, specs, cpus_per_task, gpus_per_task)
    report = build_index(sources, model, out, source_specs=source_specs, force=force,
                         embed_fn=embedder, **build_kw)
    report.ray_reused = embedder.reused
    report.ray_computed = embedder.computed
    return report
