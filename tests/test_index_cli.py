"""`astroapp index build/info/search` on a real EarthLoc-format folder of JPEG tiles."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from test_index_support import GeneratedSource, make_model

from astroapp.cli import main
from astroapp.geo.sources.earthloc_folder import format_earthloc_name


@pytest.fixture(scope="module")
def tiles_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("earthloc") / "2021_08"
    folder.mkdir()
    src = GeneratedSource(12)
    for ref in src.tiles():
        img = cv2.resize(src.image(ref.tile_id), (320, 320), interpolation=cv2.INTER_CUBIC)
        block = ref.tile_id.split("@")[0]
        name = format_earthloc_name(ref.footprint, block, 2021)
        cv2.imwrite(str(folder / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    (folder / "@not@an@earthloc@name@.jpg").write_bytes(b"junk")
    return folder, src


def _weights(path, seed):
    model = make_model(seed)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path),
              metadata={"architecture": "astroapp-small"})
    return str(path)


def test_build_info_search_and_mismatch(tmp_path, tiles_folder, capsys):
    folder, src = tiles_folder
    w0, w1 = _weights(tmp_path / "w0.safetensors", 0), _weights(tmp_path / "w1.safetensors", 1)
    out = tmp_path / "idx"
    torch.set_num_threads(1)
    args = ["index", "build", str(folder), "--model", "astroapp-small", "--weights", w0,
            "--out", str(out), "-q", "--device", "cpu"]
    assert main(args) == 0
    text = capsys.readouterr()
    assert "12 tiles (12 new" in text.out and "flat index" in text.out
    assert "not@an@earthloc" in text.err  # the bad file is named, the rest indexed
    assert main(args) == 0
    assert "up to date" in capsys.readouterr().out

    assert main(["index", "info", str(out), "--verify"]) == 0
    info = capsys.readouterr().out
    assert "astroapp-small" in info and "12 (0 failed) x 4 rotations" in info and "verified" in info
    assert main(["index", "info", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["tiles"] == 12

    ref = list(src.tiles())[5]
    photo = tmp_path / "photo.jpg"
    img = np.ascontiguousarray(np.rot90(src.image(ref.tile_id), 1))
    cv2.imwrite(str(photo), cv2.cvtColor(cv2.resize(img, (480, 480)), cv2.COLOR_RGB2BGR))
    assert main(["index", "search", str(out), str(photo), "-k", "3", "--weights", w0,
                 "--device", "cpu", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)[0]["candidates"]
    assert res[0]["tile_id"].startswith(ref.tile_id.split("@")[0]) and res[0]["angle"] == 90
    assert [c["rank"] for c in res] == [1, 2, 3]
    # geometric re-ranking reads the tiles back from the folder and verifies them
    assert main(["index", "search", str(out), str(photo), "-k", "3", "--rerank", "12",
                 "--weights", w0, "--device", "cpu", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)[0]["candidates"]
    assert res[0]["tile_id"] == ref.tile_id and res[0]["inliers"] >= 8 and res[0]["angle"] == 90
    assert [c["rank"] for c in res] == [1, 2, 3]
    lon, lat = ref.footprint.centroid()
    assert main(["index", "search", str(out), str(photo), "--near", f"{lon},{lat}",
                 "--radius-km", "50", "--weights", w0, "--device", "cpu"]) == 0
    assert "within 50 km" in capsys.readouterr().out

    assert main(["index", "search", str(out), str(photo), "--weights", w1,
                 "--device", "cpu"]) == 2
    assert "built with model astroapp-small" in capsys.readouterr().err
    assert main(["index", "info", str(tmp_path / "none")]) == 2
    assert "no tile index" in capsys.readouterr().err
