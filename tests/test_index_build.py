"""Index build: resumable after SIGKILL (identical result), incremental, refuses mismatches."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import faiss
import numpy as np
import pytest
from test_index_support import BUILD_KW, GeneratedSource, make_model

from astroapp.atomic import STRAY_GLOB
from astroapp.index import (
    IndexCorruptError,
    IndexMismatchError,
    IndexNotFoundError,
    TileIndex,
    build_index,
    embed_images,
)
from astroapp.progress import Progress

HERE = Path(__file__).resolve().parent
N_TILES = 40


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def committed_chunks(folder: Path) -> int:
    db = folder / "tiles.sqlite"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return con.execute("SELECT count(*) FROM chunks").fetchone()[0]
    except sqlite3.Error:
        return 0


def index_file(folder: Path) -> Path:
    return folder / json.loads((folder / "manifest.json").read_text())["faiss"]["file"]


@pytest.fixture(scope="module")
def model():
    return make_model(0)


@pytest.fixture(scope="module")
def reference_index(tmp_path_factory, model):
    out = tmp_path_factory.mktemp("ref") / "idx"
    report = build_index([GeneratedSource(N_TILES)], model, out, **BUILD_KW)
    assert report.completed and report.tiles_embedded == N_TILES
    return out


def test_build_writes_manifest_table_and_index(reference_index, model):
    man = json.loads((reference_index / "manifest.json").read_text())
    assert man["model"]["name"] == "astroapp-small"
    assert man["model"]["descriptor_dim"] == 256
    assert len(man["model"]["weights_sha256"]) == 64
    assert man["counts"] == {"tiles": N_TILES, "failed": 0, "vectors": 4 * N_TILES,
                             "rotations": 4, "sources": {"gen": N_TILES}}
    assert man["faiss"]["type"] == "flat" and man["faiss"]["ntotal"] == 4 * N_TILES
    assert man["preprocessing"]["input_size"] == list(model.input_size)
    assert man["preprocessing"]["angles"] == [0, 90, 180, 270]
    with sqlite3.connect(reference_index / "tiles.sqlite") as con:
        rows = con.execute("SELECT id, source_id, tile_id, footprint, zoom, year, status "
                           "FROM tiles ORDER BY id").fetchall()
    assert [r[0] for r in rows] == list(range(N_TILES))
    ref0 = next(GeneratedSource(N_TILES).tiles())
    assert rows[0][1:3] == ("gen", ref0.tile_id)
    assert json.loads(rows[0][3]) == ref0.footprint.to_list()
    assert rows[0][4:] == (8, 2021, "ok")
    # the stored vectors are the model's descriptors of the tiles at 0/90/180/270 degrees
    index = faiss.read_index(str(index_file(reference_index)))
    img = GeneratedSource(N_TILES).image(ref0.tile_id)
    rots = [np.ascontiguousarray(np.rot90(img, k)) for k in range(4)]
    expect = embed_images(model, rots)
    got = index.reconstruct_n(0, 4)
    assert np.abs(got - expect).max() < 2e-3  # float16 storage


def test_sigkill_mid_build_then_resume_is_identical(tmp_path, reference_index, model):
    out = tmp_path / "idx"
    env = dict(os.environ, PYTHONPATH=str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, str(HERE / "test_index_support.py"), str(out),
                             str(N_TILES), "0.05"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while committed_chunks(out) < 2 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read().decode()
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    done = committed_chunks(out)
    assert 2 <= done < N_TILES // BUILD_KW["chunk_size"], "the build was not killed mid-way"
    assert not (out / "manifest.json").exists()
    with pytest.raises(IndexNotFoundError, match="not finished"):
        TileIndex.open(out)

    seen: list[Progress] = []
    report = build_index([GeneratedSource(N_TILES)], model, out, **BUILD_KW,
                         progress=seen.append)
    assert report.completed
    assert report.tiles_new == 0  # tiles were registered by the killed run
    assert report.tiles_embedded == N_TILES - done * BUILD_KW["chunk_size"]
    assert (seen[-1].done, seen[-1].total) == (report.tiles_embedded, report.tiles_embedded)
    assert {e.stage for e in seen} == {"index"} and {e.item for e in seen} == {out.name}
    assert [e.done for e in seen] == sorted(e.done for e in seen)  # monotone
    assert sha(index_file(out)) == sha(index_file(reference_index))
    for name in sorted(p.name for p in (reference_index / "chunks").iterdir()):
        a = np.load(reference_index / "chunks" / name)
        b = np.load(out / "chunks" / name)
        assert np.array_equal(a, b), name
    assert not list(out.rglob(STRAY_GLOB))
    q = embed_images(model, [GeneratedSource(N_TILES).image("08_0082_0126@2021")])
    got = TileIndex.open(out, model=model).search(q, k=5)[0]
    ref = TileIndex.open(reference_index, model=model).search(q, k=5)[0]
    assert [(c.tile_id, c.angle, c.score) for c in got] == [(c.tile_id, c.angle, c.score)
                                                           for c in ref]


def test_adding_a_source_embeds_only_new_tiles(tmp_path, model):
    out = tmp_path / "idx"
    a = GeneratedSource(12, "a")
    b = GeneratedSource(8, "b", first_row=100)
    first = build_index([a], model, out, **BUILD_KW)
    assert (first.tiles_embedded, first.tiles_total) == (12, 12)
    again = build_index([a], model, out, **BUILD_KW)
    assert again.up_to_date and again.tiles_embedded == 0
    chunks_before = {p.name: sha(p) for p in (out / "chunks").iterdir()}
    second = build_index([a, b], model, out, **BUILD_KW)
    assert (second.tiles_new, second.tiles_embedded, second.tiles_total) == (8, 8, 20)
    for name, digest in chunks_before.items():  # earlier descriptors untouched
        assert sha(out / "chunks" / name) == digest
    assert len(list(out.glob("index-*.faiss"))) == 1
    index = TileIndex.open(out, model=model)
    assert len(index) == 20 and index.manifest["counts"]["sources"] == {"a": 12, "b": 8}
    ref = list(b.tiles())[3]
    hit = index.search(embed_images(model, [b.image(ref.tile_id)]), k=1)[0][0]
    assert (hit.source_id, hit.tile_id, hit.angle) == ("b", ref.tile_id, 0)


def test_other_model_is_refused(tmp_path, reference_index, model):
    other = make_model(1)
    with pytest.raises(IndexMismatchError, match="astroapp-small"):
        TileIndex.open(reference_index, model=other)
    with pytest.raises(IndexMismatchError):
        build_index([GeneratedSource(N_TILES)], other, reference_index, **BUILD_KW)
    index = TileIndex.open(reference_index, model=model)
    with pytest.raises(ValueError, match="256"):
        index.search(np.ones((1, 128), np.float32), k=3)


def test_corrupt_or_partial_files_are_refused(tmp_path, reference_index, model):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(reference_index, bad)
    f = index_file(bad)
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(IndexCorruptError, match="truncated or corrupt"):
        TileIndex.open(bad, model=model)
    f.unlink()
    with pytest.raises(IndexCorruptError, match="missing"):
        TileIndex.open(bad)
    other = tmp_path / "bad2"
    shutil.copytree(reference_index, other)
    (other / "tiles.sqlite").write_bytes(b"garbage" * 1000)
    for p in other.glob("tiles.sqlite-*"):
        p.unlink()
    with pytest.raises(IndexCorruptError, match="tile table"):
        TileIndex.open(other, model=model)
    (bad / "manifest.json").write_text("{not json")
    with pytest.raises(IndexCorruptError, match="not valid JSON"):
        TileIndex.open(bad)
    (bad / "manifest.json").unlink()
    with pytest.raises(IndexNotFoundError):
        TileIndex.open(bad)
    with pytest.raises(IndexNotFoundError):
        TileIndex.open(tmp_path / "nowhere")


def test_bad_tile_is_recorded_and_never_returned(tmp_path, model):
    src = GeneratedSource(10, bad={"08_0080_0124@2021"})
    report = build_index([src], model, tmp_path / "idx", **BUILD_KW)
    assert report.completed and report.tiles_failed == 1
    index = TileIndex.open(tmp_path / "idx", model=model)
    q = embed_images(model, [src.image("08_0080_0126@2021")])
    cands = index.search(q, k=20)[0]
    assert len(cands) == 9
    assert "08_0080_0124@2021" not in {c.tile_id for c in cands}
    with sqlite3.connect(tmp_path / "idx" / "tiles.sqlite") as con:
        status, error = con.execute("SELECT status, error FROM tiles WHERE tile_id=?",
                                    ("08_0080_0124@2021",)).fetchone()
    assert status == "failed" and "truncated JPEG" in error


def test_cancel_keeps_committed_chunks(tmp_path, model):
    cancel = threading.Event()

    def progress(event: Progress) -> None:
        if event.done >= 12:
            cancel.set()

    out = tmp_path / "idx"
    report = build_index([GeneratedSource(N_TILES)], model, out, **BUILD_KW,
                         progress=progress, cancel=cancel)
    # stops after the batch in flight; the chunk it was filling (tiles 8-15) is dropped
    assert not report.completed and committed_chunks(out) == 1
    assert not (out / "manifest.json").exists()
    report = build_index([GeneratedSource(N_TILES)], model, out, **BUILD_KW)
    assert report.completed and report.tiles_embedded == N_TILES - 8


def test_killed_while_writing_the_index_finishes_without_re_embedding(tmp_path, reference_index,
                                                                      model):
    import shutil

    out = tmp_path / "idx"
    shutil.copytree(reference_index, out)
    # the state a SIGKILL between the last chunk and the manifest leaves behind
    (out / "manifest.json").unlink()
    (out / ".index-0002.abc123.part.faiss").write_bytes(b"half a faiss file")  # atomic_path's temp
    report = build_index([GeneratedSource(N_TILES)], model, out, **BUILD_KW)
    assert report.completed and report.tiles_embedded == 0 and report.tiles_new == 0
    assert not list(out.glob(STRAY_GLOB))
    assert sha(index_file(out)) == sha(index_file(reference_index))
