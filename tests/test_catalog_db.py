"""The SQLite catalogue: schema, migrations, queries, localizations, review, threads."""

import sqlite3
import threading

import numpy as np
import pytest

from astroapp.catalog import SCHEMA_VERSION, STATUSES, Catalog, CatalogError
from astroapp.catalog import db as catalog_db


def _add(cat: Catalog, n: int, **extra) -> int:
    return cat.add_photo(path=f"/roll/photo{n}.jpg", sha256=f"{n:064x}", width=64, height=48, **extra)


@pytest.fixture
def cat(tmp_path):
    with Catalog(tmp_path / "cat.sqlite") as c:
        yield c


def test_new_catalogue_settings(cat, tmp_path):
    con = cat.connection
    assert cat.schema_version == SCHEMA_VERSION
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert con.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"photos", "nasa_metadata", "localizations", "candidates", "review_events", "imports"} <= tables
    assert cat.integrity_check() == "ok"


def test_default_path_is_in_data_dir(tmp_path):
    with Catalog() as c:
        assert c.path == tmp_path / "astroapp_home" / "catalog.sqlite"
        assert c.path.is_file()


def test_photo_filters(cat):
    a = _add(cat, 1, nasa_id="ISS064-E-358", mission="ISS064", roll="E", frame=358,
             captured_at="2020-11-23T10:11:12.340Z", camera_model="NIKON D5")
    b = _add(cat, 2, nasa_id="ISS065-E-7", mission="ISS065", roll="E", frame=7,
             captured_at="2021-05-01T00:00:00.000Z")
    c = _add(cat, 3, status="failed", status_reason="corrupt image: x")
    assert [p.id for p in cat.photos()] == [a, b, c]
    assert [p.id for p in cat.photos(status="failed")] == [c]
    assert [p.id for p in cat.photos(status=["new", "failed"], limit=2)] == [a, b]
    assert [p.id for p in cat.photos(mission="iss064")] == [a]
    assert [p.id for p in cat.photos(search="d5")] == [a]
    assert [p.id for p in cat.photos(search="photo3")] == [c]
    assert [p.id for p in cat.photos(search="%")] == []  # LIKE wildcards are literal
    assert [p.id for p in cat.photos(date_from="2021-01-01")] == [b]
    assert [p.id for p in cat.photos(date_to="2020-11-23")] == [a]  # whole day included
    assert [p.id for p in cat.photos(date_to="2020-11-23T10:11:12")] == [a]
    assert [p.id for p in cat.photos(date_to="2020-11-23T10:11:11")] == []
    assert [p.id for p in cat.photos(ids=[c, a])] == [a, c]
    with pytest.raises(ValueError, match="unknown status"):
        cat.photos(status="bogus")
    photo = cat.get_photo(a)
    assert photo.name == "photo1.jpg" and photo.frame == 358 and photo.status == "new"
    assert cat.photo_by_hash(f"{1:064x}").id == a
    assert cat.get_photo(999) is None
    assert cat.count() == 3


def test_status_and_counts(cat):
    a, b = _add(cat, 1), _add(cat, 2)
    cat.set_status(a, "failed", "matcher found no inliers")
    cat.set_status(b, "localizing")
    counts = cat.counts_by_status()
    assert set(counts) == set(STATUSES)
    assert counts["failed"] == 1 and counts["localizing"] == 1 and counts["new"] == 0
    assert cat.get_photo(a).status_reason == "matcher found no inliers"
    cat.set_status(a, "new")
    assert cat.get_photo(a).status_reason is None
    with pytest.raises(ValueError):
        cat.set_status(a, "done")
    with pytest.raises(KeyError):
        cat.set_status(12345, "new")
    with pytest.raises(sqlite3.IntegrityError):  # the schema itself guards statuses
        cat.connection.execute("UPDATE photos SET status = 'weird' WHERE id = ?", (a,))


class _Fp:
    """Duck-typed Footprint (the geo area's class has the same methods)."""

    def __init__(self, corners):
        self.corners = corners

    def to_list(self):
        return [list(c) for c in self.corners]

    def centroid(self):
        return (float(np.mean([c[0] for c in self.corners])), float(np.mean([c[1] for c in self.corners])))

    def area_km2(self):
        return 1234.5


def test_localizations_and_candidates(cat):
    pid = _add(cat, 1)
    assert cat.latest_localization(pid) is None
    first = cat.add_localization(pid, confidence=0.2, tile_id="t0")
    fp = _Fp(((10.0, 46.0), (11.0, 46.0), (11.0, 45.0), (10.0, 45.0)))
    second = cat.add_localization(
        pid,
        method={"model": "bundled", "index": "/idx", "matcher": "sift"},
        tile_id="09_0266_0426@2021", source_id="bluemarble", angle=np.int64(90), rank=0,
        footprint=fp, confidence=np.float32(0.93), inliers=151, homography=np.eye(3),
        gcps=[[0, 0, 10.0, 46.0]], correspondences=np.zeros((2, 4)), timings={"total": 1.5},
        accepted_auto=True,
    )
    assert second > first
    loc = cat.latest_localization(pid)
    assert loc.id == second and loc.angle == 90 and loc.accepted_auto is True
    assert loc.footprint == [[10.0, 46.0], [11.0, 46.0], [11.0, 45.0], [10.0, 45.0]]
    assert loc.center_lon == pytest.approx(10.5) and loc.area_km2 == pytest.approx(1234.5)
    assert loc.homography == np.eye(3).tolist() and loc.method["matcher"] == "sift"
    assert loc.confidence == pytest.approx(0.93, abs=1e-6)
    assert [x.id for x in cat.localizations(pid)] == [first, second]
    assert cat.get_photo(pid).confidence == pytest.approx(0.93, abs=1e-6)
    assert cat.get_photo(pid).localization_id == second
    assert [p.id for p in cat.photos(min_conf=0.9)] == [pid]
    assert cat.photos(max_conf=0.5) == []

    class Cand:
        def __init__(self, rank, tile):
            self.tile_id, self.source_id, self.angle, self.score = tile, "bluemarble", 0, 0.5 - rank / 10
            self.footprint, self.rank = fp, rank

    cat.add_candidates(second, [Cand(1, "b"), Cand(0, "a")])
    cat.add_candidates(second, [{"tile_id": "c", "score": np.float32(0.1), "rank": 2}])
    cands = cat.candidates(second)
    assert [(c.rank, c.tile_id) for c in cands] == [(0, "a"), (1, "b"), (2, "c")]
    assert cands[0].footprint == fp.to_list() and cands[2].source_id is None
    with pytest.raises(TypeError, match="unknown localization fields"):
        cat.add_localization(pid, colour="red")
    with pytest.raises(KeyError):
        cat.add_localization(999, confidence=0.5)
    with pytest.raises(sqlite3.IntegrityError):  # foreign keys are enforced
        cat.add_candidates(424242, [{"tile_id": "x"}])


def test_review_accept_reject_undo(cat):
    pid = _add(cat, 1)
    cat.set_status(pid, "localized")
    cat.record_review(pid, "alice", "accept")
    assert cat.get_photo(pid).status == "accepted"
    cat.record_review(pid, "bob", "reject", note="clouds")
    cat.record_review(pid, "bob", "note", note="check the coast")
    assert cat.get_photo(pid).status == "rejected"
    undone = cat.undo_review(pid, who="bob")
    assert undone.action == "reject" and cat.get_photo(pid).status == "accepted"
    assert cat.undo_review(pid).action == "accept"
    assert cat.get_photo(pid).status == "localized"
    assert cat.undo_review(pid) is None
    events = cat.review_events(pid)
    assert [e.action for e in events] == ["accept", "reject", "note", "undo", "undo"]
    assert events[1].note == "clouds" and events[1].previous_status == "accepted"
    assert events[3].undoes == events[1].id and events[4].undoes == events[0].id
    assert all(e.at.endswith("Z") for e in events)
    with pytest.raises(ValueError):
        cat.record_review(pid, "alice", "undo")
    with pytest.raises(KeyError):
        cat.record_review(999, "alice", "accept")


def test_nasa_metadata_joins_by_id(cat):
    cat.upsert_nasa_metadata("ISS064-E-358", center_lat=36.4, center_lon=38.2, cloud_pct=10.0)
    pid = _add(cat, 1, nasa_id="ISS064-E-358")
    other = _add(cat, 2)
    meta = cat.nasa_metadata(pid)
    assert meta.center_lon == 38.2 and meta.cloud_pct == 10.0
    assert cat.nasa_metadata(other) is None
    cat.upsert_nasa_metadata("ISS064-E-358", center_lat=36.5, tilt_deg=3.0)
    meta = cat.nasa_metadata(pid)
    assert meta.center_lat == 36.5 and meta.tilt_deg == 3.0


def test_transaction_rolls_back_as_a_whole(cat):
    with pytest.raises(RuntimeError), cat.transaction():
        _add(cat, 1)
        _add(cat, 2)
        raise RuntimeError("boom")
    assert cat.count() == 0
    with cat.transaction():
        _add(cat, 1)
    assert cat.count() == 1


def test_thumbnail(cat):
    pid = _add(cat, 1, thumbnail=b"\xff\xd8jpeg")
    assert cat.thumbnail(pid) == b"\xff\xd8jpeg"
    assert cat.thumbnail(_add(cat, 2)) is None


def test_migration_from_version_1_keeps_data(tmp_path):
    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    for statement in catalog_db._split_sql(catalog_db.MIGRATIONS[0]):
        con.execute(statement)
    con.execute("PRAGMA user_version = 1")
    con.execute(
        "INSERT INTO photos (path, sha256, imported_at, updated_at, status) "
        "VALUES ('/old/ISS064-E-358.jpg', 'abc', '2020-01-01T00:00:00.000Z', "
        "'2020-01-01T00:00:00.000Z', 'localized')"
    )
    con.execute(
        "INSERT INTO review_events (photo_id, who, at, action, previous_status) "
        "VALUES (1, 'alice', '2020-01-02T00:00:00.000Z', 'accept', 'localized')"
    )
    con.execute("UPDATE photos SET status = 'accepted'")
    con.execute("INSERT INTO nasa_metadata (nasa_id, center_lat, imported_at) VALUES ('X', 1.0, 'now')")
    con.commit()
    con.close()
    with Catalog(path) as cat:
        assert cat.schema_version == SCHEMA_VERSION
        assert cat.get_photo(1).status == "accepted"
        cols = {r[1] for r in cat.connection.execute("PRAGMA table_info(review_events)")}
        assert "undoes" in cols
        assert cat.undo_review(1).who == "alice"
        assert cat.get_photo(1).status == "localized"
        assert cat.nasa_metadata_by_id("X").sun_elevation_deg is None
        assert cat.integrity_check() == "ok"


def test_refuses_newer_or_foreign_files(tmp_path):
    newer = tmp_path / "newer.sqlite"
    with Catalog(newer):
        pass
    con = sqlite3.connect(newer)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(CatalogError, match="upgrade astroapp"):
        Catalog(newer)
    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t (x)")
    con.close()
    with pytest.raises(CatalogError, match="not an astroapp catalogue"):
        Catalog(other)
    text = tmp_path / "notes.sqlite"
    text.write_text("this is not a database at all, just some text " * 50)
    with pytest.raises(CatalogError):
        Catalog(text)
    with pytest.raises(CatalogError, match="folder"):
        Catalog(tmp_path)


def test_one_catalog_per_thread_concurrent_writers(tmp_path):
    path = tmp_path / "cat.sqlite"
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def worker(k: int) -> None:
        try:
            start.wait()
            with Catalog(path) as c:  # concurrent first opens race to create/migrate
                for i in range(25):
                    pid = _add(c, k * 100 + i)
                    c.set_status(pid, "localized")
                    c.photos(status="localized", limit=5)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with Catalog(path) as c:
        assert c.counts_by_status()["localized"] == 100

    shared = Catalog(path)
    failures = []
    t = threading.Thread(target=lambda: failures.append(_safe_count(shared)))
    t.start()
    t.join()
    shared.close()
    assert failures == ["ProgrammingError"]  # a Catalog belongs to its thread


def _safe_count(c: Catalog) -> str:
    try:
        c.count()
    except sqlite3.ProgrammingError:
        return "ProgrammingError"
    return "ok"
