"""`run_demo` / `astroapp demo` end to end on a small demo roll: real world, real faiss index
(the bundled architecture with seeded random weights: the shipped weights are not needed),
real catalogue, SIFT coregistration, real export files."""

from __future__ import annotations

import csv
import io
import json
import threading
from pathlib import Path

import pytest
from test_index_support import make_model

from astroapp import config
from astroapp.catalog import Catalog
from astroapp.cli import main
from astroapp.evaluation.demo_score import TruthScore, run_scored_demo, score_localizations
from astroapp.geo.footprint import Footprint
from astroapp.pipeline.demo import CACHED, CANCELLED, NOT_AVAILABLE, STEP_NAMES, run_demo
from astroapp.progress import Progress

N_PHOTOS = 3
FAST = {"n_photos": N_PHOTOS, "max_candidates": 2, "k": 4}


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory):
    """A data dir where the small demo ran once (world, roll, index, catalogue, exports).

    The retrieval model has random weights; the roll's NASA metadata (nadir point, altitude),
    which the demo imports, restricts retrieval to the tiles around the nadir, so
    coregistration still has right tiles to confirm and footprints reach the exports.
    """
    home = tmp_path_factory.mktemp("demo_home")
    model = make_model(0)
    seen: list[Progress] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASTROAPP_HOME", str(home))
        summary = run_scored_demo(progress=seen.append, model=model, **FAST)
    # as written by this run (later tests write the same files from other catalogues)
    written = {p.name: p.read_text() for p in summary.files}
    return home, model, summary, seen, written


def _photo_rows(cat_path: Path) -> tuple[int, int, int]:
    with Catalog(cat_path) as cat:
        con = cat.connection
        return (con.execute("SELECT count(*) FROM photos").fetchone()[0],
                con.execute("SELECT count(*) FROM localizations").fetchone()[0],
                con.execute("SELECT count(*) FROM candidates").fetchone()[0])


def test_first_run_does_the_whole_job(demo_home):
    home, _, s, seen, _ = demo_home
    assert [st.name for st in s.steps] == list(STEP_NAMES)
    assert s.ok, s.format_table()
    assert s.catalog_path == home / "catalog.sqlite"  # the user's default catalogue
    assert s.step("demo roll").status == "done" and s.step("index").status == "done"
    assert f"NASA metadata for {N_PHOTOS} photos" in s.step("import").detail
    assert s.roll_photos == N_PHOTOS and s.imported == N_PHOTOS and s.added_this_run == N_PHOTOS
    assert s.localized_this_run == s.localized
    assert s.localized + s.failed + s.pending == N_PHOTOS and s.pending == 0
    assert s.accepted_auto + s.for_review == s.localized
    assert all(st.seconds > 0 for st in s.steps)
    assert {e.stage for e in seen} == set(STEP_NAMES)
    assert any(e.stage == "localize" and e.total == N_PHOTOS for e in seen)
    # the localize step's per-photo events name the photo as a user reads it, not by its id
    photo_events = [e for e in seen if e.stage == "localize" and e.total == N_PHOTOS]
    assert photo_events and all(e.item and not e.item.startswith("photo ") for e in photo_events)
    for stage in STEP_NAMES:  # each step ends with done == total == 1 and its status
        assert [(e.done, e.total) for e in seen if e.stage == stage][-1] == (1, 1)
    with Catalog(s.catalog_path) as cat:
        photos = cat.photos(ids=s.photo_ids)
        assert sorted(p.name for p in photos) == sorted(
            p.name for p in (home / "demo" / "roll").glob("*.jpg"))
        assert not cat.photos(status=["new", "localizing"])
        for p in photos:
            loc = cat.latest_localization(p.id)
            assert loc is not None and loc.method["stage"] == "coregistration"
            assert len(cat.candidates(loc.id)) == FAST["k"]
            assert bool(loc.accepted_auto) == (p.status_reason is None)
            assert cat.nasa_metadata(p.id).nadir_lon is not None  # the retrieval prior
            assert loc.method["tried"]  # coregistration ran on the candidates
    # scored against truth.json: every photo has ground truth and retrieval candidates
    t = s.truth
    assert t.photos == N_PHOTOS and t.retrieval_scored == N_PHOTOS
    assert 0 <= t.retrieval_correct <= t.retrieval_correct_k <= N_PHOTOS
    assert t.candidates_k == FAST["k"]
    assert t.confident == s.accepted_auto and len(t.corner_errors_km) == 4 * t.confident
    table = s.format_table()
    for text in ("imported", "accepted automatically", "for review", "failed",
                 "correct tile (top-1)", "median corner error", "false accepts", "files written"):
        assert text in table


def test_exports_exist_and_parse(demo_home):
    home, _, s, _, written = demo_home
    out = home / "demo" / "exports"
    assert s.exports_dir == out
    assert sorted(p.name for p in s.files) == sorted(
        ["demo_footprints.geojson", "demo_map.html", "demo_footprints.csv"])
    with Catalog(s.catalog_path) as cat:
        with_fp = {p.name for p in cat.photos(ids=s.photo_ids)
                   if cat.latest_localization(p.id).footprint}
    assert all(p.parent == out for p in s.files)
    assert with_fp  # with the nadir prior, coregistration finds footprints
    gj = json.loads(written["demo_footprints.geojson"])
    assert gj["type"] == "FeatureCollection"
    assert {f["properties"]["file_name"] for f in gj["features"]} == with_fp
    for f in gj["features"]:
        assert f["geometry"]["type"] in ("Polygon", "MultiPolygon")
    rows = list(csv.DictReader(io.StringIO(written["demo_footprints.csv"], newline="")))
    assert {r["file_name"] for r in rows} == with_fp
    html = written["demo_map.html"]
    assert html.lstrip().lower().startswith("<!doctype html") and "L.map" in html


def test_rerun_adds_nothing_and_reports_the_same(demo_home, monkeypatch):
    home, model, first, _, _ = demo_home
    monkeypatch.setenv("ASTROAPP_HOME", str(home))
    before = _photo_rows(first.catalog_path)
    s = run_scored_demo(model=model, **FAST)
    assert s.ok, s.format_table()
    assert [st.status for st in s.steps] == [CACHED] * 5  # exports too: nothing changed
    assert s.added_this_run == 0 and s.localized_this_run == 0
    assert _photo_rows(first.catalog_path) == before
    assert s.photo_ids == first.photo_ids
    for attr in ("imported", "localized", "accepted_auto", "for_review", "failed"):
        assert getattr(s, attr) == getattr(first, attr), attr
    assert s.truth == first.truth
    assert s.seconds < first.seconds / 4


def test_cancel_keeps_done_work_and_rerun_finishes(demo_home, monkeypatch, tmp_path):
    home, model, _, _, _ = demo_home
    monkeypatch.setenv("ASTROAPP_HOME", str(home))
    cat_path = tmp_path / "other.sqlite"
    cancel = threading.Event()

    def progress(event: Progress) -> None:
        if event.stage == "localize" and event.total == N_PHOTOS and event.done == 1:
            cancel.set()  # after the first photo

    s = run_demo(cat_path, progress=progress, cancel=cancel, model=model, **FAST)
    assert s.cancelled and not s.ok
    assert s.step("localize").status == CANCELLED and s.step("exports").status == "skipped"
    assert s.localized + s.failed == 1 and s.pending == N_PHOTOS - 1
    with Catalog(cat_path) as cat:
        assert not cat.photos(status="localizing")
    s = run_demo(cat_path, model=model, **FAST)
    assert s.ok and s.localized_this_run + s.failed == N_PHOTOS - 1 and s.pending == 0


def test_score_against_truth_on_a_real_catalogue(tmp_path):
    """Exact and wrong confident footprints, a wrong top-1 tile: the figures the table shows."""
    truth = Footprint.from_list([[10, 21], [12, 21], [12, 19], [10, 19]])
    far = Footprint.from_list([[40, 21], [42, 21], [42, 19], [40, 19]])
    truth_by_file = {f"p{i}.jpg": {"file": f"p{i}.jpg", "footprint": truth.to_list()}
                     for i in range(3)}
    with Catalog(tmp_path / "c.sqlite") as cat:
        ids = [cat.add_photo(path=tmp_path / f"p{i}.jpg", sha256=f"{i:064d}") for i in range(3)]
        for pid, (fp, top, auto) in zip(ids, [(truth, truth, True), (far, far, True),
                                              (None, truth, False)], strict=True):
            loc = cat.add_localization(pid, footprint=fp, accepted_auto=auto,
                                       method={"stage": "coregistration"})
            cat.add_candidates(loc, [{"tile_id": "t", "source_id": "s", "angle": 0,
                                      "score": 1.0, "footprint": top.to_list()}])
        score = score_localizations(cat, ids, {pid: f"p{i}.jpg" for i, pid in enumerate(ids)},
                                    truth_by_file)
    assert isinstance(score, TruthScore)
    assert (score.photos, score.retrieval_scored, score.retrieval_correct) == (3, 3, 2)
    assert (score.retrieval_correct_k, score.candidates_k) == (2, 1)
    assert (score.confident, score.confident_correct, score.false_accepts) == (2, 1, 1)
    assert len(score.corner_errors_km) == 8
    assert score.corner_errors_km[:4] == pytest.approx([0, 0, 0, 0], abs=1e-6)
    assert min(score.corner_errors_km[4:]) > 3000  # 30 degrees of longitude at 20 N


def test_cli_reports_missing_weights_and_how_to_open_the_app(demo_home, monkeypatch, capsys,
                                                             tmp_path):
    """No shipped weights: index and localize are 'not available' (never faked), the rest of
    the job still runs; without a display the app is not opened, the command to do it is
    printed. --catalog is honoured."""
    home, _, _, _, _ = demo_home
    monkeypatch.setenv("ASTROAPP_HOME", str(home))
    monkeypatch.setattr(config, "MODELS_DIR", tmp_path / "no_models")
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    cat = tmp_path / "cli.sqlite"
    code = main(["--catalog", str(cat), "demo", "--photos", str(N_PHOTOS)])
    out = capsys.readouterr().out
    assert code == 1
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.split()[:1] and
             ln.split()[0] in ("index", "localize", "import", "exports")}
    assert NOT_AVAILABLE in lines["index"] and "weights" in lines["index"]
    assert NOT_AVAILABLE in lines["localize"]
    assert f"{N_PHOTOS} added" in lines["import"]
    assert " done " in lines["exports"]  # another catalogue: re-exported, not "cached"
    assert str(cat) in out and "not localized yet" in out
    assert "no display available" in out and "gui" in out.splitlines()[-1]
    with Catalog(cat) as c:
        assert c.counts_by_status()["new"] == N_PHOTOS  # imported, left for a later localize


def test_cli_rejects_bad_arguments(capsys):
    assert main(["demo", "--no-gui", "--photos", "0"]) == 2
    assert "--photos" in capsys.readouterr().err
    assert main(["demo", "--no-gui", "--model", "nope"]) == 2
    assert "unknown retrieval model" in capsys.readouterr().err
