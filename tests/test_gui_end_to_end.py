"""The real window, offscreen, on the bundled demo: import the demo roll -> localize all ->
review a photo -> accept with the keyboard -> export GeoJSON; and cancelling a batch.

Everything is real: the demo roll rendered over the bundled world, a faiss tile index of the
bundled world built with the retrieval model, SIFT coregistration, the SQLite catalogue and
the GeoJSON exporter. To keep the suite fast the index covers only the demo photos' region
(a regional index, as analysts build for one area) and tries at most two candidates.
"""

import getpass
import json
import time

import pytest
from PySide6.QtCore import Qt
from shapely.geometry import box, shape

from astroapp.catalog import Catalog
from astroapp.geo.demo import prepare_demo
from astroapp.geo.footprint import Footprint
from astroapp.geo.sources.bluemarble import BlueMarbleSource
from astroapp.gui.dialogs import ExportDialog
from astroapp.gui.main_window import MainWindow
from astroapp.gui.settings import AppSettings
from astroapp.index import build_index
from astroapp.retrieval import load_model

N_PHOTOS = 3


class RegionalBlueMarble(BlueMarbleSource):
    """The bundled world's blocks that intersect a lon/lat box (same source id and imagery)."""

    def __init__(self, lonlat_box, zooms=(5, 6)):
        super().__init__(zooms)
        area = box(*lonlat_box)
        self._refs = [r for r in super().tiles() if r.footprint.polygon().intersects(area)]

    def tiles(self):
        return iter(self._refs)

    def __len__(self):
        return len(self._refs)


@pytest.fixture(scope="session")
def demo_setup(tmp_path_factory):
    """Demo roll + a regional index of the demo world built with the bundled model."""
    root = tmp_path_factory.mktemp("gui_demo")
    with pytest.MonkeyPatch.context() as mp:  # caches go to a temp home, never the user's
        mp.setenv("ASTROAPP_HOME", str(root / "home"))
        return _demo_setup(root)


def _demo_setup(root):
    demo = prepare_demo(root / "demo", n_photos=N_PHOTOS, seed=0)
    model = load_model()  # the bundled model and its shipped weights
    weights = ""  # the app's default: the bundled weights
    corners = [c for p in demo.truth()["photos"] for c in p["footprint"]]
    lons, lats = [c[0] for c in corners], [c[1] for c in corners]
    region = (min(lons) - 5, max(min(lats) - 5, -85), max(lons) + 5, min(max(lats) + 5, 85))
    index_dir = root / "index"
    report = build_index([RegionalBlueMarble(region)], model, index_dir, source_specs=["bluemarble"])
    assert report.completed and report.vectors > 0
    return demo, index_dir, weights


@pytest.fixture
def window(qtbot, tmp_path, demo_setup):
    demo, index_dir, weights = demo_setup
    settings = AppSettings(index_dir=str(index_dir), weights=weights, matcher="sift",
                           localize_options={"max_candidates": 2})
    win = MainWindow(tmp_path / "catalog.sqlite", settings=settings)
    qtbot.addWidget(win)
    win.resize(1400, 900)
    win.show()
    with qtbot.waitSignal(win.jobFinished, timeout=60_000) as done:
        win.load_demo(root=demo.root, n_photos=N_PHOTOS)
    assert done.args[0] == "import" and done.args[1].added == N_PHOTOS
    assert win.model.rowCount() == N_PHOTOS
    return win


def test_import_localize_review_accept_export(qtbot, window, tmp_path):
    win = window
    assert "new 3" in win.counts_label.text()
    ticks = []
    with qtbot.waitSignal(win.jobFinished, timeout=110_000) as done:
        assert win.localize_all() is not None
        assert win.cancel_button.isVisible() and not win.act_localize_all.isEnabled()
        win.job.worker.yielded.connect(lambda p: ticks.append((p.done, p.total, win.progress.format())))
        events = []
        win.job.worker.yielded.connect(events.append)
    kind, summary = done.args
    # the pipeline's own events reach the window unchanged, named by photo, not database id
    labels = {p.id: p.label for p in win.catalog.photos()}
    finished = [e for e in events if e.result is not None]
    assert {e.stage for e in events} == {"localize"} and len(finished) == N_PHOTOS
    assert all(e.item == labels[e.photo_id] for e in events)
    log_text = win.log_view.toPlainText()
    assert all(f"  {e.item}: {e.message}" in log_text for e in finished)
    assert kind == "localize" and not summary.cancelled and len(summary.outcomes) == N_PHOTOS
    dones = [t[0] for t in ticks]  # a report as each photo starts and as it finishes
    assert dones == sorted(dones) and set(range(1, N_PHOTOS + 1)) <= set(dones)
    assert ticks[-1][:2] == (N_PHOTOS, N_PHOTOS)
    assert "ETA" in ticks[-1][2]
    statuses = win.catalog.counts_by_status()
    assert statuses["localizing"] == 0 and statuses["new"] == 0
    f = win.filters  # the non-confident ones are one filter away
    f.status.setCurrentIndex(f.status.findData("review"))
    assert win.model.rowCount() == summary.count("review")
    assert all(win.model.data(win.model.index(r, 4)) == "to review" for r in range(win.model.rowCount()))
    f.status.setCurrentIndex(0)
    assert win.model.rowCount() == N_PHOTOS
    with_fp = [p for p in win.catalog.photos() if (loc := win.catalog.latest_localization(p.id)) and loc.footprint]
    assert with_fp, f"no photo got a footprint: {summary.describe()}"
    photo = with_fp[0]

    # open the review from the table (keyboard: select the row, Enter)
    win.select_photo(photo.id)
    win.table.setFocus()
    qtbot.keyClick(win.table, Qt.Key.Key_Return)
    assert win.tabs.currentWidget() is win.review and win.review.photo_id == photo.id
    rv = win.review
    qtbot.waitUntil(lambda: not rv.render_pending, timeout=20_000)  # imagery: read in a thread
    assert rv.last_render["satellite"] and rv.pair.line_count > 0
    assert rv.info_labels["Inliers"].text() == str(win.catalog.latest_localization(photo.id).inliers)
    assert rv.candidates.count() >= 2  # the localization and the retrieval candidates
    assert ("photo", photo.id) in rv.map.footprint_keys()
    rv.chk_advance.setChecked(False)
    qtbot.keyClick(rv, Qt.Key.Key_C)  # correspondences off and on again
    assert not rv.pair.lines.isVisible()
    qtbot.keyClick(rv, Qt.Key.Key_C)
    assert rv.pair.lines.isVisible()
    rv.note.setPlainText("coastline matches")
    rv.setFocus()
    qtbot.keyClick(rv, Qt.Key.Key_A)
    assert win.catalog.get_photo(photo.id).status == "accepted"
    event = win.catalog.review_events(photo.id)[-1]
    assert (event.action, event.who, event.note) == ("accept", getpass.getuser(), "coastline matches")
    assert event.at.endswith("Z")
    assert "accepted" in win.model.photo_at(win.model.row_of(photo.id)).status

    export = tmp_path / "out" / "accepted.geojson"
    dlg = ExportDialog(win, start_dir=tmp_path)
    qtbot.addWidget(dlg)
    dlg.format.setCurrentIndex(dlg.format.findData("geojson"))
    dlg.scope.setCurrentIndex(0)  # accepted photos
    dlg.out.setText(str(export))
    with qtbot.waitSignal(win.jobFinished, timeout=30_000) as done:
        win.start_export(**dlg.value())
    result = done.args[1]
    assert [str(p) for p in result.written] == [str(export)] and result.exported == 1
    collection = json.loads(export.read_text())
    assert len(collection["features"]) == 1
    feat = collection["features"][0]
    assert feat["properties"]["catalog_id"] == photo.id and feat["properties"]["status"] == "accepted"
    assert feat["properties"]["reviewer"] == getpass.getuser()
    expected = Footprint.from_list(win.catalog.latest_localization(photo.id).footprint).polygon()
    assert shape(feat["geometry"]).hausdorff_distance(expected) < 1e-6  # GeoJSON keeps 7 decimals


def test_undo_and_navigation_keys(qtbot, window):
    win = window
    ids = win.model.photo_ids()
    win.open_review(ids[0])
    rv = win.review
    rv.chk_advance.setChecked(True)
    rv.setFocus()
    qtbot.keyClick(rv, Qt.Key.Key_N)
    assert rv.photo_id == ids[1]
    qtbot.keyClick(rv, Qt.Key.Key_Left)
    assert rv.photo_id == ids[0]
    qtbot.keyClick(rv, Qt.Key.Key_R)  # reject (nothing localized yet: still recordable)
    assert win.catalog.get_photo(ids[0]).status == "rejected" and rv.photo_id == ids[1]
    qtbot.keyClick(rv, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert rv.photo_id == ids[0] and win.catalog.get_photo(ids[0]).status == "new"
    assert [e.action for e in win.catalog.review_events(ids[0])] == ["reject", "undo"]
    qtbot.keyClick(rv, Qt.Key.Key_A)  # no footprint: accept refused, nothing recorded
    assert win.catalog.get_photo(ids[0]).status == "new"
    # typing in the note field never triggers the single-key shortcuts
    rv.note.setFocus()
    qtbot.keyClicks(rv.note, "ran")
    assert rv.note.toPlainText() == "ran" and rv.photo_id == ids[0]
    assert win.catalog.get_photo(ids[0]).status == "new"
    qtbot.waitUntil(lambda: not rv.render_pending, timeout=20_000)  # shown pictures reset the zoom
    scale = rv.pair.transform().m11()
    rv.setFocus()
    qtbot.keyClick(rv, Qt.Key.Key_Plus)
    assert rv.pair.transform().m11() > scale
    qtbot.keyClick(rv, Qt.Key.Key_N)  # moving on keeps the typed note as a note event
    assert [e.action for e in win.catalog.review_events(ids[0])][-1] == "note"


def test_cancel_keeps_finished_results_and_leaves_nothing_localizing(qtbot, window):
    win = window
    reports = []
    win.localize_all()
    win.job.worker.yielded.connect(reports.append)
    qtbot.waitUntil(lambda: any(r.done >= 1 for r in reports), timeout=90_000)  # one photo done
    t0 = time.monotonic()
    with qtbot.waitSignal(win.jobFinished, timeout=30_000) as done:
        win.cancel_job()
        assert not win.cancel_button.isEnabled()
    waited = time.monotonic() - t0
    summary = done.args[1]
    assert summary.cancelled
    done_ids = {o.photo_id for o in summary.outcomes if o.outcome != "cancelled"}
    assert 1 <= len(done_ids) < N_PHOTOS
    with Catalog(win.catalog_path) as cat:
        counts = cat.counts_by_status()
        assert counts["localizing"] == 0
        for p in cat.photos():
            if p.id in done_ids:
                assert p.status in ("localized", "failed") and cat.latest_localization(p.id) is not None
            else:
                assert p.status == "new" and cat.latest_localization(p.id) is None
    assert waited < 10, f"cancel took {waited:.1f} s"
    assert win.job is None and win.act_localize_all.isEnabled()


def test_first_start_loads_the_demo_once(qtbot, tmp_path, demo_setup):
    demo, index_dir, weights = demo_setup
    win = MainWindow(tmp_path / "fresh.sqlite", settings=AppSettings(index_dir=str(index_dir), weights=weights))
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.jobFinished, timeout=60_000):
        assert win.offer_demo(root=demo.root, n_photos=N_PHOTOS) is not None
    assert win.model.rowCount() == N_PHOTOS
    assert {p.name for p in win.catalog.photos()} == {p["file"] for p in demo.truth()["photos"]}
    assert win.offer_demo(root=demo.root, n_photos=N_PHOTOS) is None  # not again
    from astroapp.gui.settings import load_settings

    assert load_settings().demo_offered


def test_localize_selected_map_and_switching_candidate(qtbot, window):
    win = window
    # localize the first photo only (Localize selected)
    first = win.model.photo_ids()[0]
    win.select_photo(first)
    with qtbot.waitSignal(win.jobFinished, timeout=90_000):
        assert win.localize_selected() is not None
    loc = win.catalog.latest_localization(first)
    assert loc is not None and win.catalog.get_photo(first).status in ("localized", "failed")
    assert all(win.catalog.latest_localization(p) is None for p in win.model.photo_ids()[1:])
    win.tabs.setCurrentWidget(win.overview)
    if loc.footprint:
        assert ("photo", first) in win.overview.footprint_keys()
        win.overview.footprintClicked.emit(("photo", first))
        assert win.tabs.currentWidget() is win.review and win.review.photo_id == first
    else:
        win.open_review(first)

    # the reviewer switches to another retrieval candidate and coregisters against it
    rv = win.review
    before = win.catalog.latest_localization(first)
    cands = win.catalog.candidates(before.id)
    assert len(cands) >= 2
    rv.candidates.setCurrentRow(2)  # row 0 is the localization, row 2 the rank-2 candidate
    assert rv.selected_candidate().rank == cands[1].rank and rv.btn_try.isEnabled()
    qtbot.waitUntil(lambda: not rv.render_pending, timeout=20_000)
    assert rv.last_render["satellite"]
    rv.setFocus()
    with qtbot.waitSignal(win.jobFinished, timeout=60_000) as done:
        qtbot.keyClick(rv, Qt.Key.Key_T)
    assert done.args[0] == "coregister" and not isinstance(done.args[1], Exception)
    after = win.catalog.latest_localization(first)
    assert after.id != before.id and after.rank == cands[1].rank and after.tile_id == cands[1].tile_id
    assert after.method["chosen_by"] == getpass.getuser() and after.inliers == done.args[1]["inliers"]
    assert [c.tile_id for c in win.catalog.candidates(after.id)] == [c.tile_id for c in cands]
    assert rv.candidate_index is None and rv.info_labels["Inliers"].text() == str(after.inliers)
