import json

import numpy as np
import pytest
from PIL import Image

from astroapp.geo.demo import DEMO_SIZE, demo_roll_dir, prepare_demo
from astroapp.geo.footprint import Footprint
from astroapp.geo.places import CELL_DEG, place_split
from astroapp.geo.render import Camera


def test_place_split_is_deterministic_and_coarse():
    assert place_split(10.0, 45.0) == place_split(10.0, 45.0)
    # Same 20-degree cell -> same split; the split covers about a fifth of cells.
    assert place_split(0.1, 0.1) == place_split(CELL_DEG - 0.1, CELL_DEG - 0.1)
    splits = [place_split(lon + 10, lat + 10) for lon in range(-180, 180, 20)
              for lat in range(-90, 90, 20)]
    assert set(splits) == {"train", "test"}
    assert 0.1 < splits.count("test") / len(splits) < 0.3
    assert place_split(190.0, 5.0) == place_split(-170.0, 5.0)
    # Known values: a change here silently changes every trainer's data.
    assert [place_split(-110, 50), place_split(10, 45), place_split(-90, 30)] == [
        "test", "train", "test"]


def test_prepare_demo_renders_once_with_exif_and_truth(tmp_path):
    paths = prepare_demo(tmp_path / "demo", n_photos=3, seed=4)
    photos = paths.photos()
    assert [p.name for p in photos] == ["ISS999-E-001001.jpg", "ISS999-E-001038.jpg",
                                        "ISS999-E-001075.jpg"]
    truth = paths.truth()
    assert truth["n_photos"] == 3 and truth["source"] == "bluemarble"
    for photo, entry in zip(photos, truth["photos"], strict=True):
        with Image.open(photo) as im:
            assert im.size == DEMO_SIZE
            exif = im.getexif()
            sub = exif.get_ifd(0x8769)
            assert exif[0x0110] == "NIKON D5"  # Model
            assert sub[0x9003].startswith("2024:03:01")  # DateTimeOriginal
            assert float(sub[0x920A]) == pytest.approx(entry["camera"]["focal_mm"], abs=0.06)
        cam = Camera.from_dict(entry["camera"])
        fp = Footprint.from_list(entry["footprint"])
        assert np.allclose(fp.corners, cam.footprint().corners)
        assert all(place_split(x, y) == "test" for x, y in [*fp.corners, fp.centroid()])
        assert entry["taken_at"].endswith("Z")
    # Cached: a second call renders nothing and returns the same roll.
    stamp = [p.stat().st_mtime_ns for p in photos]
    again = prepare_demo(tmp_path / "demo", n_photos=3, seed=4)
    assert again == paths and [p.stat().st_mtime_ns for p in again.photos()] == stamp
    assert not list((tmp_path / "demo").glob(".roll.*"))
    # A damaged roll (a photo lost) is rebuilt, not trusted.
    photos[1].unlink()
    rebuilt = prepare_demo(tmp_path / "demo", n_photos=3, seed=4)
    assert len(rebuilt.photos()) == 3
    assert json.loads(rebuilt.truth_path.read_text())["photos"] == truth["photos"]


def test_prepare_demo_defaults_to_the_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ASTROAPP_HOME", str(tmp_path / "home"))
    assert not demo_roll_dir().exists()
    paths = prepare_demo(n_photos=1)
    assert paths.root == tmp_path / "home" / "demo" and len(paths.photos()) == 1
    assert demo_roll_dir() == paths.roll_dir
