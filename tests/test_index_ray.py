"""Index builds on a real local Ray cluster (2 CPUs): same index as a local build, a worker
SIGKILLed mid-build is retried, a driver SIGKILLed mid-build is resumed from its chunks."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import faiss
import numpy as np
import pytest
import torch
from test_index_support import BUILD_KW, GeneratedSource, make_model

from astroapp.index import build_index
from astroapp.index.store import TileStore, load_chunk

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
N_TILES = 32          # 4 chunks of 8 tiles
KW = {k: v for k, v in BUILD_KW.items() if k != "workers"} | {"workers": 1}


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster whose workers import the test helpers (GeneratedSource)."""
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), str(ROOT), old) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


@pytest.fixture(scope="module")
def model():
    return make_model(0)


@pytest.fixture(scope="module")
def local_index(tmp_path_factory, model):
    out = tmp_path_factory.mktemp("local") / "idx"
    assert build_index([GeneratedSource(N_TILES)], model, out, **KW).completed
    return out


def descriptors(folder: Path) -> np.ndarray:
    store = TileStore(folder, readonly=True)
    try:
        return np.concatenate([np.asarray(load_chunk(folder, c, 256)) for c in store.chunks()])
    finally:
        store.close()


def assert_same_index(a: Path, b: Path) -> None:
    """Same tiles, same descriptors (float16 storage: 1e-3), same search results."""
    ma, mb = (json.loads((f / "manifest.json").read_text()) for f in (a, b))
    assert ma["counts"] == mb["counts"] and ma["tiles_digest"] == mb["tiles_digest"]
    assert ma["model"] == mb["model"] and ma["faiss"]["type"] == mb["faiss"]["type"]
    da, db = descriptors(a), descriptors(b)
    assert da.shape == db.shape == (N_TILES, 4, 256)
    np.testing.assert_allclose(da.astype(np.float32), db.astype(np.float32), atol=2e-3)
    ia = faiss.read_index(str(a / ma["faiss"]["file"]))
    ib = faiss.read_index(str(b / mb["faiss"]["file"]))
    queries = da[:, 0].astype(np.float32)
    _, la = ia.search(queries, 5)
    _, lb = ib.search(queries, 5)
    assert (la[:, 0] == lb[:, 0]).all() and (la[:, 0] // 4 == np.arange(N_TILES)).all()
    assert (la == lb).mean() > 0.95


def test_ray_build_equals_local_build(cluster, model, local_index, tmp_path):
    from astroapp.index.distributed import STAGING_DIR, build_index_ray

    out = tmp_path / "idx"
    report = build_index_ray([GeneratedSource(N_TILES)], model, out, **KW)
    assert report.completed and report.tiles_embedded == N_TILES
    assert report.ray_computed == 4 and report.ray_reused == 0
    assert not (out / STAGING_DIR).exists()
    assert_same_index(local_index, out)


def _ray_task_pids() -> list[int]:
    pids = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if cmd.startswith("ray::_chunk_task"):
            pids.append(p.info["pid"])
    return pids


def test_worker_killed_mid_build_is_retried(cluster, model, local_index, tmp_path):
    from astroapp.index.distributed import build_index_ray

    killed: list[int] = []
    stop = threading.Event()

    def killer() -> None:  # SIGKILL the first worker seen running a chunk
        while not stop.is_set() and not killed:
            for pid in _ray_task_pids():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                break
            time.sleep(0.05)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    try:
        report = build_index_ray([GeneratedSource(N_TILES, delay=0.1)], model, tmp_path / "idx",
                                 **KW)
    finally:
        stop.set()
        t.join()
    assert killed, "no Ray worker was seen running a chunk"
    assert report.completed and report.tiles_embedded == N_TILES
    assert_same_index(local_index, tmp_path / "idx")


def finished_chunks(out: Path, staging: str) -> set[int]:
    """First ids of the chunks done for good: committed in the tile table, or staged with
    their sidecar (written after the chunk file)."""
    done = {int(p.stem.split("_")[1]) for p in (out / staging).glob("chunk_*.json")}
    db = out / "tiles.sqlite"
    if db.is_file():
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
                done |= {r[0] for r in con.execute("SELECT first_id FROM chunks")}
        except sqlite3.Error:
            pass
    return done


CHILD = """
import sys
from test_index_support import BUILD_KW, GeneratedSource, make_model
from astroapp.index.distributed import build_index_ray
kw = {k: v for k, v in BUILD_KW.items() if k != "workers"} | {"workers": 1}
build_index_ray([GeneratedSource(int(sys.argv[2]), delay=0.15)], make_model(0), sys.argv[1],
                address=sys.argv[3], **kw)
"""


def test_driver_killed_then_resumed_reuses_finished_chunks(cluster, model, local_index,
                                                           tmp_path):
    from astroapp.index.distributed import STAGING_DIR, build_index_ray

    out = tmp_path / "idx"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), str(ROOT)]))
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(out), str(N_TILES), cluster],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and child.poll() is None:
            if len(finished_chunks(out, STAGING_DIR)) >= 2:
                break
            time.sleep(0.05)
        assert child.poll() is None, child.stdout.read().decode()[-3000:]
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(30)
    assert not (out / "manifest.json").exists()
    report = build_index_ray([GeneratedSource(N_TILES)], model, out, **KW)
    assert report.completed
    # committed chunks are skipped by build_index, staged ones taken over by the Ray driver
    assert report.ray_computed <= 2 and report.tiles_embedded <= N_TILES
    assert_same_index(local_index, out)


@pytest.mark.parametrize("name", ["sift-bow", "sift-vote"])
def test_vocabulary_learned_once_and_shipped(cluster, tmp_path, name):
    """sift-bow and sift-vote learn their words (and sift-vote its feature quantizer) from the
    index's tiles on the driver; the Ray workers embed with them: same vocabulary file, same
    descriptors (and feature codes) as a local build."""
    from astroapp.index.distributed import build_index_ray
    from astroapp.retrieval.sift_bow import VOCABULARY_FILE, SiftBow
    from astroapp.retrieval.sift_vote import SiftVote

    def make() -> SiftBow:
        if name == "sift-vote":
            return SiftVote(words=32, input_size=128, max_features=300, pq_bytes=8)
        return SiftBow(words=32, input_size=128, max_features=300)

    local, remote = tmp_path / "local", tmp_path / "ray"
    build_index([GeneratedSource(16)], make(), local, **KW)
    report = build_index_ray([GeneratedSource(16)], make(), remote, **KW)
    assert report.completed and report.ray_computed == 2
    from safetensors.numpy import load_file

    vl, vr = load_file(local / VOCABULARY_FILE), load_file(remote / VOCABULARY_FILE)
    assert vl.keys() == vr.keys() and all(np.array_equal(vl[k], vr[k]) for k in vl)
    dl, dr = (np.concatenate([np.asarray(load_chunk(f, c, 32))
                              for c in TileStore(f, readonly=True).chunks()])
              for f in (local, remote))
    assert dl.shape == (16, 4, 32) and np.abs(dl).sum() > 0
    np.testing.assert_allclose(dl.astype(np.float32), dr.astype(np.float32), atol=2e-3)
    if name == "sift-vote":
        from astroapp.index import TileIndex
        from astroapp.index.local_votes import read_local_chunk

        codes = [[read_local_chunk(f, c) for c in TileStore(f, readonly=True).chunks()]
                 for f in (local, remote)]
        assert sum(len(t) for t, _ in codes[0]) > 0
        for (tl, cl), (tr, cr) in zip(*codes, strict=True):
            assert np.array_equal(tl, tr) and np.array_equal(cl, cr)
        ml, mr = (TileIndex.open(f)._voter.index.ntotal for f in (local, remote))
        assert ml == mr == sum(len(t) for t, _ in codes[0])


def test_cli_build_with_ray_equals_local_cli_build(cluster, tmp_path, capsys):
    """`index build FOLDER --ray ADDRESS`: the workers reopen the folder from its spec."""
    from astroapp.cli import main
    from astroapp.geo.sources.earthloc_folder import format_earthloc_name
    from astroapp.index.manifest import MANIFEST_NAME

    folder = tmp_path / "2021_08"
    folder.mkdir()
    src = GeneratedSource(12)
    for ref in src.tiles():
        name = format_earthloc_name(ref.footprint, ref.tile_id.split("@")[0], 2021)
        cv2.imwrite(str(folder / name), cv2.cvtColor(src.image(ref.tile_id), cv2.COLOR_RGB2BGR))
    base = ["index", "build", str(folder), "--model", "astroapp-small", "--weights", "random",
            "--chunk-size", "8", "--batch-size", "4", "-q", "--device", "cpu"]
    torch.manual_seed(0)
    assert main([*base, "--out", str(tmp_path / "local")]) == 0
    torch.manual_seed(0)
    assert main([*base, "--out", str(tmp_path / "ray"), "--ray", cluster]) == 0
    assert "12 tiles (12 new" in capsys.readouterr().out
    ml, mr = (json.loads((tmp_path / d / MANIFEST_NAME).read_text()) for d in ("local", "ray"))
    assert ml["model"] == mr["model"] and ml["tiles_digest"] == mr["tiles_digest"]
    dl, dr = (np.concatenate([np.asarray(load_chunk(tmp_path / d, c, 256))
                              for c in TileStore(tmp_path / d, readonly=True).chunks()])
              for d in ("local", "ray"))
    np.testing.assert_allclose(dl.astype(np.float32), dr.astype(np.float32), atol=2e-3)
