"""Atomic exports: a failing or interrupted writer leaves no half-written target file."""

from __future__ import annotations

import json
import os
import stat
import threading

import pytest
from export_fixtures import build_catalog

from astroapp.catalog import Catalog
from astroapp.export import (
    atomic_path,
    csv_export,
    export_records,
    geotiff,
    html_map,
    records_from_catalog,
)
from astroapp.progress import Progress


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    root = tmp_path_factory.mktemp("export_atomic")
    cat, _ = build_catalog(root)
    with Catalog(cat) as catalog:
        recs, _ = records_from_catalog(catalog)
    return recs


def _only(directory, *names):
    assert sorted(p.name for p in directory.iterdir()) == sorted(names)


def test_atomic_path_replaces_only_on_success(tmp_path):
    target = tmp_path / "a.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    _only(tmp_path, "a.json")
    with atomic_path(target) as tmp:
        tmp.write_text("new")
        assert target.read_text() == "old"  # not visible before the end
    assert target.read_text() == "new"
    _only(tmp_path, "a.json")
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_atomic_dir_swaps_a_whole_folder_only_on_success(tmp_path):
    from astroapp.atomic import atomic_dir

    target = tmp_path / "roll"
    target.mkdir()
    (target / "a.jpg").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "b.jpg").write_text("half")
        raise RuntimeError("boom")
    assert sorted(p.name for p in target.iterdir()) == ["a.jpg"]
    _only(tmp_path, "roll")
    with atomic_dir(target) as tmp:
        (tmp / "b.jpg").write_text("new")
        assert not (target / "b.jpg").exists()  # not visible before the end
    assert sorted(p.name for p in target.iterdir()) == ["b.jpg"]
    _only(tmp_path, "roll")
    with atomic_dir(target, keep_existing=lambda t: (t / "b.jpg").is_file()) as tmp:
        (tmp / "c.jpg").write_text("late")  # another writer finished first: its folder stays
    assert sorted(p.name for p in target.iterdir()) == ["b.jpg"]
    _only(tmp_path, "roll")


def test_geojson_interrupted(records, tmp_path, monkeypatch):
    target = tmp_path / "out.geojson"
    target.write_text("previous export")
    calls = []

    def dump(obj, fh, **kw):  # writes part of the document, then the user hits Ctrl-C
        fh.write(json.dumps(obj)[:100])
        calls.append(1)
        raise KeyboardInterrupt

    monkeypatch.setattr("astroapp.export.geojson.json.dump", dump)
    with pytest.raises(KeyboardInterrupt):
        export_records(records, "geojson", target)
    assert calls and target.read_text() == "previous export"
    _only(tmp_path, "out.geojson")


def test_csv_fails_mid_way(records, tmp_path, monkeypatch):
    target = tmp_path / "out.csv"
    real = csv_export.wkt
    seen = []

    def failing_wkt(rec):
        seen.append(rec)
        if len(seen) == 3:
            raise OSError("disk full")
        return real(rec)

    monkeypatch.setattr(csv_export, "wkt", failing_wkt)
    with pytest.raises(OSError, match="disk full"):
        export_records(records, "csv", target)
    assert len(seen) == 3
    _only(tmp_path)  # no target, no temporary file


def test_html_fails_mid_way(records, tmp_path, monkeypatch):
    target = tmp_path / "map.html"

    def failing_thumbnail(rec):
        raise MemoryError("out of memory")

    monkeypatch.setattr(html_map, "thumbnail_data_uri", failing_thumbnail)
    with pytest.raises(MemoryError):
        export_records(records, "html", target)
    _only(tmp_path)


def test_geotiff_fails_mid_way(records, tmp_path, monkeypatch):
    out = tmp_path / "tif"
    monkeypatch.setattr(geotiff, "STRIP_ROWS", 64)  # several strips per photo
    strips = []

    def stop(row):
        strips.append(row)
        if len(strips) == 3:
            raise OSError("device removed")

    with pytest.raises(OSError):
        geotiff.write_gcp_geotiff(records[0], out / "x_gcps.tif", on_strip=stop)
    assert strips == [0, 64, 128]
    assert not out.exists() or not list(out.iterdir())
    # An interrupted warp also leaves nothing; the GCP file written before it stays whole.
    gcp = geotiff.write_gcp_geotiff(records[0], out / "x_gcps.tif")

    def broken_reproject(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(geotiff, "reproject", broken_reproject)
    with pytest.raises(KeyboardInterrupt):
        geotiff.write_warped_geotiff(records[0], gcp, out / "x_warped.tif")
    _only(out, "x_gcps.tif")


def test_geotiff_export_cancelled(records, tmp_path):
    cancel = threading.Event()

    seen: list[Progress] = []

    def progress(event: Progress) -> None:
        seen.append(event)
        if event.done == 1 and event.result is None:
            cancel.set()  # the user presses Cancel while the second photo starts

    result = export_records(records, "geotiff", tmp_path, progress=progress, cancel=cancel)
    assert result.cancelled and result.exported == 1 and not result.failed
    assert [(e.stage, e.done, e.message) for e in seen] == [
        ("export", 0, "writing GeoTIFFs"), ("export", 1, "written"),
        ("export", 1, "writing GeoTIFFs"), ("export", 1, "cancelled")]
    assert seen[0].item == records[0].photo_id and seen[0].photo_id == records[0].catalog_id
    assert [p.name for p in seen[1].result] == [f"{records[0].photo_id}_gcps.tif",
                                                f"{records[0].photo_id}_warped.tif"]
    stem = records[0].photo_id
    _only(tmp_path, f"{stem}_gcps.tif", f"{stem}_warped.tif")
