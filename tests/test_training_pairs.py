"""The AstroLoc pair builder on a real catalogue of rendered photos over a real tile folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import shapely
import training_fixtures as tf

from astroapp.catalog.db import Catalog
from astroapp.cli import main
from astroapp.geo.footprint import Footprint
from astroapp.geo.places import place_cell
from astroapp.geo.sources.opener import open_source
from astroapp.training.pairs import (
    TRAIN,
    VAL,
    PairError,
    PlaceSplit,
    build_pairs,
    training_photos,
)


@pytest.fixture(scope="module")
def world(request):
    return tf.world(request)


@pytest.fixture(scope="module")
def pairs(world):
    with Catalog(world["catalog"]) as cat:
        return build_pairs(cat, open_source(world["tiles"]), min_iou=0.1, cell_deg=15, val_fraction=0.2)


def test_positives_are_the_blocks_overlapping_by_iou(pairs, world):
    refs = list(open_source(world["tiles"]).tiles())
    with Catalog(world["catalog"]) as cat:
        photos, _ = training_photos(cat)
    place = PlaceSplit({place_cell(*fp.centroid(), 15) for _, _, _, fp, _ in photos}, 15, 0.2)
    assert len(pairs.split(TRAIN)) >= 20 and len(pairs.split(VAL)) >= 3
    for p in pairs.photos[:12]:
        for b, iou in p.positives:
            assert iou >= 0.1
            assert iou == pytest.approx(p.footprint.iou(pairs.blocks[b].footprint), abs=1e-3)
        # exactly the blocks of the photo's split overlapping it by the threshold, at any zoom
        expected = {r.tile_id for r in refs if p.footprint.iou(r.footprint) >= 0.1 and place.of(r.footprint) == p.split}
        assert {pairs.blocks[b].tile_id for b, _ in p.positives} == expected
        assert [iou for _, iou in p.positives] == sorted((iou for _, iou in p.positives), reverse=True)
        for b in p.negatives:  # hard negatives never touch the photo
            assert not p.footprint.intersects(pairs.blocks[b].footprint)
        assert {b for b, _ in p.positives} <= p.intersecting
    zooms = {pairs.blocks[b].zoom for p in pairs.photos for b, _ in p.positives}
    assert zooms == set(tf.ZOOMS)


def test_no_place_in_both_splits(pairs):
    def cells(fp: Footprint) -> set:
        return {place_cell(lon, lat, 15) for lon, lat in (*fp.corners, fp.centroid())}

    train_cells = set().union(*(cells(p.footprint) for p in pairs.split(TRAIN)))
    val_cells = set().union(*(cells(p.footprint) for p in pairs.split(VAL)))
    assert train_cells and val_cells and not train_cells & val_cells
    train_blocks = {b for p in pairs.split(TRAIN) for b in [*(b for b, _ in p.positives), *p.negatives]}
    val_blocks = set(pairs.val_database) | {b for p in pairs.split(VAL) for b in [*(b for b, _ in p.positives), *p.negatives]}
    assert not train_blocks & val_blocks
    for b in train_blocks:  # no training block shows any of a validation photo's ground
        poly = pairs.blocks[b].footprint.polygon()
        for p in pairs.split(VAL):
            assert shapely.intersection(poly, p.footprint.polygon()).area < 1e-9


def test_confident_auto_accepted_photos_only_when_asked(world, tmp_path):
    path = tmp_path / "catalog.sqlite"
    shutil.copy(world["catalog"], path)
    with Catalog(path) as cat:
        photo = cat.photos(status="accepted")[0]
        loc = cat.latest_localization(photo.id)
        cat.add_localization(photo.id, footprint=Footprint.from_list(loc.footprint), confidence=0.95, accepted_auto=True)
        cat.set_status(photo.id, "localized")
        source = open_source(world["tiles"])
        without = build_pairs(cat, source, cell_deg=15)
        with_auto = build_pairs(cat, source, cell_deg=15, include_auto=True)
        strict = build_pairs(cat, source, cell_deg=15, include_auto=True, min_confidence=0.99)
    ids = lambda ps: {p.photo_id for p in ps.photos} | {n for n, _ in ps.skipped}  # noqa: E731
    assert photo.name not in ids(without) and photo.id not in ids(without)
    assert photo.id in ids(with_auto) or photo.name in ids(with_auto)
    assert any(photo.name == n and "confidence" in why for n, why in strict.skipped)


def test_no_accepted_photos_is_a_clear_error(world, tmp_path):
    with Catalog(tmp_path / "empty.sqlite") as cat, pytest.raises(PairError, match="no accepted photos"):
        build_pairs(cat, open_source(world["tiles"]))


def test_cli_dry_run_prints_photos_pairs_and_places(world, capsys, tmp_path):
    rc = main(["model", "train", "astroloc", "--from-catalog", "--catalog", world["catalog"], "--source",
               world["tiles"], "--cell-deg", "15", "--dry-run", "--out", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "train" in out and "val" in out and "pairs" in out and "places" in out
    assert not (tmp_path / "run").exists()  # a dry run trains nothing


def test_cli_errors_are_messages_not_tracebacks(world, capsys, tmp_path):
    base = ["model", "train", "astroloc", "--from-catalog", "--source", world["tiles"]]
    assert main([*base, "--catalog", str(tmp_path / "missing.sqlite")]) == 2
    assert "no catalogue at" in capsys.readouterr().err
    Catalog(tmp_path / "empty.sqlite").close()
    assert main([*base, "--catalog", str(tmp_path / "empty.sqlite")]) == 2
    assert "no accepted photos" in capsys.readouterr().err
    assert main([*base, "--catalog", world["catalog"], "--init-weights", str(tmp_path / "nope.pth")]) == 2
    err = capsys.readouterr().err
    assert "weights file not found" in err and "dinov2" in err and "Traceback" not in err
    assert main(["model", "train", "astroloc", "--catalog", world["catalog"]]) == 2
    assert "--from-catalog" in capsys.readouterr().err


def test_the_tiles_can_come_from_an_index(world, capsys, tmp_path):
    """--index: the pairs use the tile source the index was built from."""
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    for path in sorted(Path(world["tiles"]).iterdir())[:40]:
        shutil.copy(path, tiles / path.name)
    assert main(["index", "build", str(tiles), "--model", "astroapp-small", "--out", str(tmp_path / "index"),
                 "--device", "cpu", "-q"]) == 0
    capsys.readouterr()
    assert main(["model", "train", "astroloc", "--from-catalog", "--catalog", world["catalog"], "--index",
                 str(tmp_path / "index"), "--cell-deg", "15", "--dry-run"]) == 0
    assert f"tile source {tiles}" in capsys.readouterr().out
    assert main(["model", "train", "astroloc", "--from-catalog", "--catalog", world["catalog"], "--index",
                 str(tmp_path / "nothing"), "--dry-run"]) == 2
    assert "cannot read the index" in capsys.readouterr().err
