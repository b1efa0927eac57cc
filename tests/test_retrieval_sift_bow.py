"""sift-bow: the training-free descriptor learned from an index's own tiles, on real imagery
(the bundled Blue Marble world's zoom-6 blocks; the real ISS pairs when ../shared is there)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image
from world_blocks import N_TILES

from astroapp.cli import main
from astroapp.index import TileIndex
from astroapp.retrieval import load_model
from astroapp.retrieval.sift_bow import VOCABULARY_FILE, SiftBow, VocabularyMissingError


@pytest.fixture(scope="module")
def fitted(world_tiles):
    model = SiftBow()
    model.fit(world_tiles[1])
    return model, model.embed_numpy(world_tiles[1])


def _rotate(image: np.ndarray, deg: float) -> np.ndarray:
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0)
    return cv2.warpAffine(image, m, (w, h), borderMode=cv2.BORDER_REFLECT)


def test_unfitted_model_says_how_to_get_a_vocabulary():
    model = load_model("sift-bow")  # weight-free: no file needed
    assert not model.is_fitted and model.descriptor_dim == 512
    with pytest.raises(VocabularyMissingError, match="index build"):
        model.embed_numpy([np.zeros((64, 64, 3), np.uint8)])


def test_rotation_invariant_and_a_crop_finds_its_tile(world_tiles, fitted):
    model, db = fitted
    tiles = world_tiles[1]
    assert db.shape == (N_TILES, 512)
    np.testing.assert_allclose(np.linalg.norm(db, axis=1), 1.0, atol=1e-5)
    hits = 0
    for i in range(0, N_TILES, 3):
        turned = model.embed_numpy([np.rot90(tiles[i]).copy(), _rotate(tiles[i], 37.0)])
        assert (np.argmax(turned @ db.T, axis=1) == i).all()  # the same ground, any way up
        h = tiles[i].shape[0]
        crop = _rotate(tiles[i], 120.0)[h // 6: -h // 6, h // 6: -h // 6]  # 2/3 of it, turned
        scores = db @ model.embed_numpy([crop])[0]
        hits += int(np.argmax(scores) == i)
    assert hits >= 6  # of 8 (chance: 1 in 24 each)


def test_vocabulary_round_trip(tmp_path, fitted):
    model, db = fitted
    model.save_vocabulary(tmp_path)
    again = SiftBow()
    again.load_vocabulary(tmp_path)
    assert again.weights_sha256 == model.weights_sha256
    loaded = load_model("sift-bow", weights=tmp_path / VOCABULARY_FILE)
    img = np.ascontiguousarray(np.full((200, 200, 3), 90, np.uint8))
    img[50:150, 60:120] = 200
    np.testing.assert_allclose(loaded.embed_numpy([img]), model.embed_numpy([img]), atol=1e-5)
    other = SiftBow(words=256)
    with pytest.raises(ValueError, match="not for sift-bow"):
        other.load_vocabulary(tmp_path)


def test_cli_build_search_and_resume(tmp_path, earthloc_folder, world_tiles, capsys):
    out = tmp_path / "idx"
    args = ["index", "build", str(earthloc_folder), "--model", "sift-bow", "--out", str(out), "-q"]
    assert main(args) == 0
    assert f"{N_TILES} tiles ({N_TILES} new" in capsys.readouterr().out
    vocab = (out / VOCABULARY_FILE).read_bytes()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["name"] == "sift-bow"
    # a build that stopped before its manifest resumes with the stored vocabulary
    (out / "manifest.json").unlink()
    assert main(args) == 0
    assert (out / VOCABULARY_FILE).read_bytes() == vocab
    assert json.loads((out / "manifest.json").read_text())["model"] == manifest["model"]
    capsys.readouterr()
    # metadata-driven search: zoom-6 blocks (~2,000 km) fit a photo that wide; a 20 km photo
    # fits no block of this index within 8x, so its hint excludes nothing
    index = TileIndex.open(out, model=load_model("sift-bow"))
    assert index.fitting_zooms((1500.0, 2500.0)) == {6}
    assert index.fitting_zooms((20.0, 25.0)) is None
    assert len(index.tiles_in_region(None, (20.0, 25.0))) == N_TILES
    refs, tiles = world_tiles
    photo = tmp_path / "photo.png"
    h = tiles[5].shape[0]
    Image.fromarray(np.ascontiguousarray(np.rot90(tiles[5])[h // 8: -h // 8, h // 8: -h // 8])).save(photo)
    assert main(["index", "search", str(out), str(photo), "-k", "3", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found[0]["candidates"][0]["tile_id"] == refs[5].tile_id.split("@")[0] + "@2021"


def test_real_pairs_photo_finds_its_own_surroundings(shared_dir):
    pairs = sorted(p for p in (shared_dir / "data" / "real_pairs").iterdir()
                   if (p / "query.jpg").is_file())
    if len(pairs) < 3:
        pytest.skip("fewer than 3 real pairs")
    blocks, owner = [], []
    for i, p in enumerate(pairs):
        s = np.asarray(Image.open(p / "surroundings.jpg").convert("RGB"))
        n = s.shape[0] // 3
        for a in range(3):
            for b in range(3):
                blocks.append(np.ascontiguousarray(s[a * n:(a + 1) * n, b * n:(b + 1) * n]))
                owner.append(i)
    model = SiftBow()
    model.fit(blocks)
    db = model.embed_numpy(blocks)
    firsts = []
    for i, p in enumerate(pairs):
        q = np.asarray(Image.open(p / "query.jpg").convert("RGB"))
        firsts.append(owner[int(np.argmax(db @ model.embed_numpy([q])[0]))] == i)
    # chance: 1 in len(pairs) per photo
    assert sum(firsts) >= len(pairs) - 2, firsts


@pytest.mark.parametrize("model_name", ["sift-bow", "sift-vote"])
def test_app_localizes_with_an_index_adapted_model_when_none_is_named(
        tmp_path, earthloc_folder, world_tiles, model_name):
    """The app's settings name no model: the index's own (sift-bow, sift-vote) is used, not
    refused as a mismatch with the bundled CNN."""
    import threading

    from astroapp.catalog import Catalog
    from astroapp.catalog.importer import import_paths
    from astroapp.gui import backend
    from astroapp.gui.settings import AppSettings
    from astroapp.progress import drain

    out = tmp_path / "idx"
    assert main(["index", "build", str(earthloc_folder), "--model", model_name, "--out",
                 str(out), "-q"]) == 0
    refs, tiles = world_tiles
    photo = tmp_path / "photo.png"
    h = tiles[5].shape[0]
    Image.fromarray(np.ascontiguousarray(tiles[5][h // 8: -h // 8, h // 8: -h // 8])).save(photo)
    cat_path = tmp_path / "cat.sqlite"
    with Catalog(cat_path) as catalog:
        import_paths(catalog, [photo])
        pid = catalog.photos()[0].id
    settings = AppSettings(index_dir=str(out), model="", verify_shortlist=0,
                           localize_options={"k": 1})
    drain(backend.localize_job(cat_path, [pid], settings, threading.Event()))
    with Catalog(cat_path) as catalog:
        photo_row = catalog.get_photo(pid)
        assert photo_row.status != "failed", photo_row.status_reason
        loc = catalog.latest_localization(pid)
        assert loc is not None and loc.tile_id.split("@")[0] == refs[5].tile_id.split("@")[0]
