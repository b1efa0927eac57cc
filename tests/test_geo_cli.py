import json

import numpy as np

from astroapp.cli import main
from astroapp.geo.footprint import Footprint
from astroapp.geo.sources import open_source
from astroapp.geo.tiles import block_footprint


def test_world_info_and_bad_source(capsys, tmp_path):
    assert main(["world", "info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    per_zoom = info["tiles_per_zoom"]
    assert set(per_zoom) == {"6", "7", "8"} and info["tiles"] == sum(per_zoom.values())
    assert per_zoom["6"] < per_zoom["7"] < per_zoom["8"]
    assert info["years"] == [2004] and info["errors"] == []
    assert main(["world", "info", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err


def test_world_export_round_trips_through_the_earthloc_reader(tmp_path, capsys):
    out = tmp_path / "tiles"
    assert main(["world", "export", str(out), "--zoom", "6", "--bbox", "5", "40", "15", "50",
                 "--size", "128"]) == 0
    folder = open_source(out)
    refs = list(folder.tiles())
    assert folder.errors == [] and len(refs) == 12
    world = open_source("bluemarble")
    for ref in refs[:3]:
        assert np.allclose(ref.footprint.corners,
                           block_footprint(ref.zoom, ref.row, ref.col).corners, atol=1e-5)
        a = folder.load(ref).astype(int)
        b = world.load(ref, 128).astype(int)
        assert np.abs(a - b).mean() < 4  # only JPEG loss between them


def test_render_command_writes_photos_and_truth(tmp_path, capsys):
    out = tmp_path / "renders"
    assert main(["render", str(out), "-n", "2", "--size", "96", "64", "--seed", "3",
                 "--split", "train", "--clean"]) == 0
    truth = json.loads((out / "truth.json").read_text())
    assert [p["file"] for p in truth["photos"]] == ["SYN-R-000001.jpg", "SYN-R-000002.jpg"]
    for p in truth["photos"]:
        assert (out / p["file"]).is_file()
        assert Footprint.from_list(p["footprint"]).area_km2() > 1e4
    assert main(["render", str(out), "-n", "1", "--focal", "50", "60"]) == 2
    assert "horizon" in capsys.readouterr().err
