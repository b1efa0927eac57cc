"""sift-vote: tiles ranked by their own RootSIFT features' nearest-neighbour votes, from an
index whose quantizer is learned from its own tiles (the bundled world's zoom-6 blocks; the
real ISS pairs when ../shared is there)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image
from world_blocks import N_TILES

from astroapp.cli import main
from astroapp.geo.sources.earthloc_folder import format_earthloc_name
from astroapp.index import IndexCorruptError, Region, TileIndex, describe_queries
from astroapp.index.tile_index import verify_index
from astroapp.retrieval import load_model
from astroapp.retrieval.sift_bow import VOCABULARY_FILE, VocabularyMissingError
from astroapp.retrieval.sift_vote import SiftVote


@pytest.fixture(scope="module")
def built(tmp_path_factory, earthloc_folder):
    out = tmp_path_factory.mktemp("vote") / "idx"
    assert main(["index", "build", str(earthloc_folder), "--out", str(out), "-q"]) == 0
    return out


def _turned_crop(image: np.ndarray, deg: float, keep: float) -> np.ndarray:
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0)
    turned = cv2.warpAffine(image, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    cut = int(h * (1 - keep) / 2)
    return np.ascontiguousarray(turned[cut:h - cut, cut:w - cut])


def test_unfitted_model_says_how_to_get_its_quantizer():
    model = load_model("sift-vote")  # weight-free: no file needed
    assert isinstance(model, SiftVote) and model.local_votes
    with pytest.raises(VocabularyMissingError, match="index build"):
        model.describe([np.zeros((64, 64, 3), np.uint8)])
    with pytest.raises(VocabularyMissingError, match="index build"):
        model.feature_index()


def test_real_imagery_default_is_sift_vote_and_the_index_keeps_tile_features(built):
    from astroapp.cli.index_cmds import default_model_for

    assert default_model_for(["some/earthloc/folder"]) == "sift-vote"
    assert default_model_for(["bluemarble"]) != "sift-vote"
    manifest = json.loads((built / "manifest.json").read_text())
    assert manifest["model"]["name"] == "sift-vote"
    local = manifest["local"]
    assert local["ntotal"] > 100 * N_TILES
    assert len(local["chunks_sha256"]) == len(manifest["chunks_sha256"])
    assert all((built / name).is_file() for name in local["chunks_sha256"])
    verify_index(built)
    assert TileIndex.open(built)._voter.index.ntotal == local["ntotal"]


def test_a_turned_crop_finds_its_tile_by_votes(built, world_tiles):
    model = load_model("sift-vote")
    index = TileIndex.open(built, model=model)
    assert index.votes_locally
    refs, tiles = world_tiles
    picks = list(range(0, N_TILES, 3))
    crops = [_turned_crop(tiles[i], 40.0 * j, 0.5) for j, i in enumerate(picks)]
    found = index.search(describe_queries(model, crops), k=5)
    hits = [cands[0].tile_id.split("@")[0] == refs[i].tile_id.split("@")[0]
            for i, cands in zip(picks, found, strict=True)]
    assert sum(hits) >= len(picks) - 1, hits  # half the tile's width, any way up
    # a region keeps the search inside it, and fills up with unvoted tiles when asked for more
    i = picks[0]
    lon, lat = refs[i].footprint.centroid()
    near = index.search(describe_queries(model, crops[:1]), k=N_TILES,
                        region=Region(lon, lat, 1500.0))[0]
    inside = set(index.tiles_in_region(Region(lon, lat, 1500.0)).tolist())
    assert near and {c.index_id for c in near} <= inside and len(near) == len(inside)
    assert near[0].tile_id.split("@")[0] == refs[i].tile_id.split("@")[0]
    scores = [c.score for c in near]
    assert scores == sorted(scores, reverse=True)


def test_cli_search_and_resume_keep_the_quantizer(tmp_path, built, world_tiles, capsys):
    refs, tiles = world_tiles
    photo = tmp_path / "photo.png"
    Image.fromarray(_turned_crop(tiles[7], 90.0, 0.6)).save(photo)
    assert main(["index", "search", str(built), str(photo), "-k", "3", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found[0]["candidates"][0]["tile_id"] == refs[7].tile_id.split("@")[0] + "@2021"
    vocab = (built / VOCABULARY_FILE).read_bytes()
    again = SiftVote()
    again.load_vocabulary(built)  # the quantizer travels in the vocabulary file
    manifest = json.loads((built / "manifest.json").read_text())
    with np.load(built / next(iter(manifest["local"]["chunks_sha256"]))) as stored:
        assert again.feature_index().is_trained and again.code_size == stored["codes"].shape[1]
    assert (built / VOCABULARY_FILE).read_bytes() == vocab


def test_damaged_feature_codes_are_found_and_rebuilt(tmp_path, earthloc_folder):
    out = tmp_path / "idx"
    assert main(["index", "build", str(earthloc_folder), "--model", "sift-vote", "--out",
                 str(out), "-q"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    codes = out / next(iter(manifest["local"]["chunks_sha256"]))
    raw = bytearray(codes.read_bytes())
    raw[-10] ^= 0xFF
    codes.write_bytes(bytes(raw))
    with pytest.raises(IndexCorruptError, match="feature codes"):
        verify_index(out)
    assert main(["index", "build", str(earthloc_folder), "--model", "sift-vote", "--out",
                 str(out), "-q"]) == 0  # repaired: re-embedded
    verify_index(out)
    codes.unlink()
    with pytest.raises(IndexCorruptError, match="feature codes"):
        TileIndex.open(out, model=load_model("sift-vote"))


def test_real_pairs_photos_find_their_surroundings_by_votes(tmp_path, shared_dir):
    """The real photos among their own and each other's surroundings (9 blocks each)."""
    pairs = sorted(p for p in (shared_dir / "data" / "real_pairs").iterdir()
                   if (p / "query.jpg").is_file())
    if len(pairs) < 3:
        pytest.skip("fewer than 3 real pairs")
    from astroapp.geo.tiles import block_footprint, block_id

    folder = tmp_path / "db" / "2021_10"
    folder.mkdir(parents=True)
    owner = {}
    for i, p in enumerate(pairs):
        s = np.asarray(Image.open(p / "surroundings.jpg").convert("RGB"))
        n = s.shape[0] // 3
        for a in range(3):
            for b in range(3):
                row, col = 300 + 4 * a, 40 + 40 * i + 4 * b  # far-apart places, 3x3 each
                bid = block_id(10, row, col)
                Image.fromarray(np.ascontiguousarray(s[a * n:(a + 1) * n, b * n:(b + 1) * n])
                                ).save(folder / format_earthloc_name(block_footprint(10, row, col),
                                                                     bid, 2021), quality=92)
                owner[f"{bid}@2021"] = i
    out = tmp_path / "idx"
    assert main(["index", "build", str(tmp_path / "db"), "--out", str(out), "-q"]) == 0
    model = load_model("sift-vote")
    index = TileIndex.open(out, model=model)
    photos = [np.asarray(Image.open(p / "query.jpg").convert("RGB")) for p in pairs]
    found = index.search(describe_queries(model, photos), k=1)
    firsts = [owner[c[0].tile_id] == i for i, c in enumerate(found)]
    assert sum(firsts) >= len(pairs) - 1, firsts  # chance: 1 in len(pairs) per photo


def test_tiles_without_texture_get_a_clear_error(tmp_path, capsys):
    from astroapp.geo.tiles import block_footprint, block_id

    folder = tmp_path / "db" / "2021_10"
    folder.mkdir(parents=True)
    for i in range(3):  # flat grey blocks: no SIFT feature to learn words from
        bid = block_id(10, 300, 40 + 4 * i)
        Image.fromarray(np.full((512, 512, 3), 100 + i, np.uint8)).save(
            folder / format_earthloc_name(block_footprint(10, 300, 40 + 4 * i), bid, 2021))
    assert main(["index", "build", str(tmp_path / "db"), "--out", str(tmp_path / "idx"),
                 "-q"]) == 2
    err = capsys.readouterr().err
    assert "cannot learn sift-vote's vocabulary" in err and "texture" in err
    assert "Traceback" not in err
