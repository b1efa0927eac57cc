"""'review' is a status of its own (was 'localized' + a 'needs review' reason): the v4
migration converts old catalogues, filters run in SQL, exports tell automatic acceptance
from a person's."""

from __future__ import annotations

import json
import sqlite3

import pytest

from astroapp.catalog import Catalog
from astroapp.catalog.db import MIGRATIONS, _split_sql
from astroapp.cli import main
from astroapp.export import records_from_catalog

FOOTPRINT = [[10.0, 21.0], [12.0, 21.0], [12.0, 19.0], [10.0, 19.0]]


def _v3_catalogue(path):
    """A catalogue as astroapp wrote it at schema v3, with photos in every state."""
    con = sqlite3.connect(path, isolation_level=None)
    for script in MIGRATIONS[:3]:
        for statement in _split_sql(script):
            con.execute(statement)
    con.execute("PRAGMA user_version = 3")
    now = "2026-01-01T00:00:00.000Z"
    rows = [("conf.jpg", "localized", None), ("weak.jpg", "localized",
             "needs review: no confident candidate among 2 (best: rank 1, 12 inliers < 50)"),
            ("bare.jpg", "localized", "needs review"), ("person.jpg", "accepted", None),
            ("new.jpg", "new", None)]
    for i, (name, status, reason) in enumerate(rows, start=1):
        con.execute("INSERT INTO photos (id, path, sha256, imported_at, updated_at, status, "
                    "status_reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (i, f"/x/{name}", f"{i:064d}", now, now, status, reason))
        con.execute("INSERT INTO thumbnails (photo_id, jpeg) VALUES (?, x'ffd8')", (i,))
        if status != "new":
            con.execute("INSERT INTO localizations (photo_id, created_at, footprint, confidence,"
                        " accepted_auto) VALUES (?, ?, ?, ?, ?)",
                        (i, now, json.dumps(FOOTPRINT), 0.0 if reason else 1.0,
                         0 if reason else 1))
    con.execute("INSERT INTO review_events (photo_id, who, at, action, previous_status) "
                "VALUES (4, 'ana', ?, 'accept', 'localized')", (now,))
    con.close()


def test_v4_migration_makes_review_a_status_and_keeps_everything(tmp_path):
    path = tmp_path / "v3.sqlite"
    _v3_catalogue(path)
    with Catalog(path) as cat:
        assert cat.schema_version == len(MIGRATIONS) >= 4
        by_name = {p.name: p for p in cat.photos()}
        assert by_name["conf.jpg"].status == "localized" and by_name["conf.jpg"].status_reason is None
        assert by_name["weak.jpg"].status == "review"
        assert by_name["weak.jpg"].status_reason.startswith("no confident candidate among 2")
        assert by_name["bare.jpg"].status == "review" and by_name["bare.jpg"].status_reason is None
        assert by_name["person.jpg"].status == "accepted"
        assert [p.name for p in cat.photos(status="review")] == ["weak.jpg", "bare.jpg"]
        counts = cat.counts_by_status()
        assert (counts["localized"], counts["review"], counts["accepted"], counts["new"]) == (1, 2, 1, 1)
        con = cat.connection
        # ids and child rows survived the table rebuild, and still cascade
        assert con.execute("SELECT count(*) FROM thumbnails").fetchone()[0] == 5
        assert con.execute("SELECT count(*) FROM localizations").fetchone()[0] == 4
        assert cat.review_events(4)[0].who == "ana"
        assert {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'index' "
                                          "AND tbl_name = 'photos'")} >= {
            "photos_status", "photos_nasa_id", "photos_path", "photos_captured_at"}
        assert con.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        con.execute("DELETE FROM photos WHERE id = 2")
        assert con.execute("SELECT count(*) FROM localizations WHERE photo_id = 2").fetchone()[0] == 0
        with pytest.raises(sqlite3.IntegrityError):
            con.execute("UPDATE photos SET status = 'bogus' WHERE id = 1")
        assert cat.integrity_check() == "ok"


def test_review_filters_in_the_cli_and_exports(tmp_path, capsys):
    path = tmp_path / "v3.sqlite"
    _v3_catalogue(path)
    assert main(["photos", "--status", "review", "--json", "--catalog", str(path)]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert sorted(p["path"].rsplit("/", 1)[1] for p in listed) == ["bare.jpg", "weak.jpg"]
    assert main(["status", "--catalog", str(path)]) == 0
    assert "review" in capsys.readouterr().out
    with Catalog(path) as cat:
        accepted, _ = records_from_catalog(cat, status=["accepted"])
        assert [r.file_name for r in accepted] == ["person.jpg"]
        confident, _ = records_from_catalog(cat, status=["accepted", "localized"])
        assert sorted(r.file_name for r in confident) == ["conf.jpg", "person.jpg"]
        by_name = {r.file_name: r for r in records_from_catalog(cat)[0]}
    # automatic acceptance only where no person decided; never for photos to review
    assert by_name["conf.jpg"].accepted_auto is True
    assert by_name["weak.jpg"].accepted_auto is False
    assert by_name["person.jpg"].accepted_auto is False
    assert by_name["person.jpg"].reviewer == "ana"


def test_export_dialog_says_whether_accepted_includes_automatic(qtbot):
    from astroapp.gui.dialogs import EXPORT_SCOPES

    scopes = dict(EXPORT_SCOPES)
    person_only = [label for label, st in EXPORT_SCOPES if st == ("accepted",)]
    assert person_only and "not auto-accepted" in person_only[0]
    both = [label for label, st in EXPORT_SCOPES if st and set(st) == {"accepted", "localized"}]
    assert both and "auto-accepted" in both[0]
    assert None in scopes.values()


def test_v5_refits_old_homographies_to_web_mercator(tmp_path):
    """Rows written before the stored homography was photo px -> EPSG:3857 get it refitted
    from their GCPs: the photo's corners then land on the stored footprint."""
    import numpy as np

    from astroapp.geo.tiles import mercator_to_lonlat

    path = tmp_path / "v3.sqlite"
    _v3_catalogue(path)
    w, h = 800, 600
    truth = np.array([[2e3, 30.0, 1.1e6], [-25.0, -1.9e3, 2.4e6], [1e-5, 2e-5, 1.0]])
    xs, ys = np.meshgrid(np.linspace(0, w, 5), np.linspace(0, h, 5))
    m = np.column_stack([xs.ravel(), ys.ravel(), np.ones(25)]) @ truth.T
    lon, lat = mercator_to_lonlat(m[:, 0] / m[:, 2], m[:, 1] / m[:, 2])
    gcps = np.column_stack([xs.ravel(), ys.ravel(), lon, lat]).tolist()
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("UPDATE localizations SET homography = ?, gcps = ?, method = ? WHERE photo_id = 1",
                (json.dumps(np.eye(3).tolist()), json.dumps(gcps), json.dumps({"size": 512})))
    con.execute("UPDATE localizations SET homography = ? WHERE photo_id = 2",
                (json.dumps(np.eye(3).tolist()),))  # no GCPs: left as it was
    con.close()
    with Catalog(path) as cat:
        fitted = np.array(cat.latest_localization(1).homography)
        method = cat.latest_localization(1).method
        untouched = cat.latest_localization(2)
    assert method["homography"].endswith("EPSG:3857 m") and method["size"] == 512
    corners = np.array([[0, 0, 1], [w, 0, 1], [w, h, 1], [0, h, 1]], float)
    got, want = corners @ fitted.T, corners @ truth.T
    assert np.abs(got[:, :2] / got[:, 2:] - want[:, :2] / want[:, 2:]).max() < 1e-3  # metres
    assert untouched.homography == np.eye(3).tolist() and "homography" not in (untouched.method or {})
