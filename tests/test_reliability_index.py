"""Damaged tile indexes (issue 15, items 2, 7, 11): a changed .faiss, manifest or tile
table is found when the index is opened (a clear error naming the file and the fix) and
`index build` repairs it instead of saying "up to date"; --force starts over."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
from test_index_cli import _weights, tiles_folder  # noqa: F401 - the fixture is used below
from test_index_support import BUILD_KW, GeneratedSource, make_model

from astroapp.catalog import Catalog
from astroapp.cli import main
from astroapp.index import IndexCorruptError, TileIndex, build_index
from astroapp.index.tile_index import verify_index

N_TILES = 24


@pytest.fixture(scope="module")
def model():
    return make_model(0)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, model):
    out = tmp_path_factory.mktemp("ref") / "idx"
    build_index([GeneratedSource(N_TILES)], model, out, **BUILD_KW)
    return out


def manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def faiss_file(folder: Path) -> Path:
    return folder / manifest(folder)["faiss"]["file"]


def top_tiles(folder: Path, model) -> list[str]:
    index = TileIndex.open(folder, model=model)
    rng = np.random.default_rng(0)
    q = rng.standard_normal((3, index.dim)).astype(np.float32)
    return [c.tile_id for cands in index.search(q, k=5) for c in cands]


def flip_byte(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture
def copy(tmp_path, reference):
    dst = tmp_path / "idx"
    shutil.copytree(reference, dst)
    return dst


def rebuild(folder: Path, model, **kw):
    return build_index([GeneratedSource(N_TILES)], model, folder, **BUILD_KW, **kw)


def test_changed_faiss_bytes_are_refused_and_repaired(copy, reference, model):
    f = faiss_file(copy)
    size = f.stat().st_size
    flip_byte(f)  # same size, other bytes: the case that gave wrong results silently
    assert f.stat().st_size == size
    with pytest.raises(IndexCorruptError, match=r"sha256 differs.*index build"):
        TileIndex.open(copy, model=model)
    report = rebuild(copy, model)
    assert report.repaired and "sha256 differs" in report.repaired
    assert not report.up_to_date and report.tiles_embedded == 0  # from the stored descriptors
    assert top_tiles(copy, model) == top_tiles(reference, model)
    verify_index(copy)
    assert rebuild(copy, model).up_to_date


@pytest.mark.parametrize("damage", [
    lambda m: b"\x8f\x00\xff random bytes \xfe" * 40,
    lambda m: json.dumps({**m, "counts": {**m["counts"], "tiles": "many"}}).encode(),
    lambda m: json.dumps({**m, "counts": {**m["counts"], "failed": None}}).encode(),
    lambda m: json.dumps({**m, "faiss": {**m["faiss"], "file": "../../etc/passwd"}}).encode(),
    lambda m: json.dumps({**m, "faiss": {**m["faiss"], "ntotal": 1.5}}).encode(),
    lambda m: json.dumps({**m, "faiss": {**m["faiss"], "type": "hnsw"}}).encode(),
    lambda m: json.dumps({**m, "model": {**m["model"], "descriptor_dim": 10**9}}).encode(),
    lambda m: json.dumps({**m, "model": []}).encode(),
    lambda m: json.dumps({**m, "preprocessing": {"input_size": "big"}}).encode(),
    lambda m: json.dumps({**m, "format_version": "1"}).encode(),
    lambda m: json.dumps(m)[:-40].encode(),
], ids=["random", "tiles-text", "failed-null", "file-escape", "ntotal-float", "type",
        "dim-huge", "model-list", "input-size", "version-text", "truncated"])
def test_damaged_manifest_is_a_clear_error_and_repaired(copy, reference, model, damage):
    (copy / "manifest.json").write_bytes(damage(manifest(reference)))
    with pytest.raises(IndexCorruptError, match=r"manifest\.json.*damaged.*index build"):
        TileIndex.open(copy, model=model)
    report = rebuild(copy, model)
    assert report.repaired and "manifest.json" in report.repaired
    assert report.tiles_embedded == 0 and report.completed
    assert top_tiles(copy, model) == top_tiles(reference, model)


def test_bad_footprint_in_tile_table_is_refused_and_re_embedded(copy, reference, model):
    with sqlite3.connect(copy / "tiles.sqlite") as con:
        con.execute("UPDATE tiles SET footprint = '{not json' WHERE id = 3")
    con.close()
    with pytest.raises(IndexCorruptError, match=r"tiles\.sqlite does not match the manifest"):
        TileIndex.open(copy, model=model)
    report = rebuild(copy, model)
    assert report.repaired and report.tiles_embedded == N_TILES
    assert top_tiles(copy, model) == top_tiles(reference, model)


def test_unreadable_tile_table_or_chunk_is_repaired(copy, reference, model):
    chunk = sorted((copy / "chunks").glob("chunk_*.npy"))[1]
    flip_byte(chunk, chunk.stat().st_size - 5)  # a descriptor value, shape still valid
    report = rebuild(copy, model)
    assert "does not match the manifest" in report.repaired and report.tiles_embedded == N_TILES
    assert top_tiles(copy, model) == top_tiles(reference, model)
    (copy / "tiles.sqlite").write_bytes(b"garbage" * 500)
    for p in copy.glob("tiles.sqlite-*"):
        p.unlink()
    report = rebuild(copy, model)
    assert "tile table" in report.repaired and report.tiles_embedded == N_TILES
    assert top_tiles(copy, model) == top_tiles(reference, model)


def test_old_manifest_without_digests_still_gives_a_clear_footprint_error(copy, model):
    m = manifest(copy)
    del m["tiles_digest"]
    (copy / "manifest.json").write_text(json.dumps(m))
    with sqlite3.connect(copy / "tiles.sqlite") as con:
        con.execute("UPDATE tiles SET footprint = '[1, 2' ")
    con.close()
    index = TileIndex.open(copy, model=model)
    with pytest.raises(IndexCorruptError, match="damaged footprint"):
        index.footprint(0)


def test_cli_build_repairs_and_force_starts_over(tmp_path, tiles_folder, capsys):  # noqa: F811
    folder, _src = tiles_folder
    w0 = _weights(tmp_path / "w0.safetensors", 0)
    out = tmp_path / "idx"
    torch.set_num_threads(1)
    args = ["index", "build", str(folder), "--model", "astroapp-small", "--weights", w0,
            "--out", str(out), "-q", "--device", "cpu"]
    assert main(args) == 0
    capsys.readouterr()
    flip_byte(faiss_file(out))
    assert main(["index", "info", str(out), "--verify"]) == 2
    assert "sha256 differs" in capsys.readouterr().err
    assert main(args) == 0
    text = capsys.readouterr()
    assert "damaged:" in text.err and "rebuilt" in text.err and "up to date" not in text.out
    assert main(["index", "info", str(out), "--verify"]) == 0
    capsys.readouterr()
    (out / "manifest.json").write_bytes(b"\x00\xff" * 100)
    photo = folder / sorted(p.name for p in folder.glob("*.jpg"))[0]
    assert main(["index", "search", str(out), str(photo)]) == 2
    err = capsys.readouterr().err
    assert "manifest.json" in err and "index build" in err
    cat = tmp_path / "cat.sqlite"
    with Catalog(cat) as catalog:
        pid = catalog.add_photo(path=photo, sha256="a" * 64)
    assert main(["--catalog", str(cat), "localize", "--index", str(out), "--model",
                 "astroapp-small", "--weights", w0]) == 2  # refuses to start
    err = capsys.readouterr().err
    assert "manifest.json" in err and "index build" in err
    with Catalog(cat) as catalog:
        assert catalog.get_photo(pid).status == "new"  # nothing marked failed
    assert main([*args, "--force"]) == 0
    assert "12 tiles (12 new, 12 embedded" in capsys.readouterr().out


def test_damaged_demo_index_is_repaired_on_first_use(tmp_path, model):
    from astroapp.index.demo import ensure_demo_index

    folder = ensure_demo_index(model, out=tmp_path / "demo", zooms=(3,))
    expected = top_tiles(folder, model)
    (folder / "manifest.json").write_bytes(b"\xff\xfe broken")
    assert ensure_demo_index(model, out=folder, zooms=(3,)) == folder
    assert top_tiles(folder, model) == expected
