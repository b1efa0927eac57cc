"""Confidence that means something and one vocabulary: fit RMS and position uncertainty in the
review (the figures the GeoTIFF export writes), the status words shared by table, filter and
status bar with a legend; the metadata panel (EXIF, NASA fields, failure reason in view)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from astroapp.catalog import Catalog
from astroapp.export.records import records_from_catalog
from astroapp.gui.main_window import MainWindow
from astroapp.gui.settings import AppSettings
from astroapp.pipeline.manual import fit_tie_points, store_manual

W, H = 600, 400


def _lonlat(px):
    """A known photo -> ground mapping (a tilted, rotated frame near 30° N)."""
    x, y = px[:, 0] / W, px[:, 1] / H
    return np.column_stack([31.0 + 2.0 * x + 0.4 * y, 30.0 - 1.5 * y + 0.3 * x])


@pytest.fixture
def window(qtbot, tmp_path):
    rng = np.random.default_rng(0)
    with Catalog(tmp_path / "c.sqlite") as cat:
        ids = {}
        for i, name in enumerate(("ISS064-E-10.jpg", "auto.jpg", "broken.jpg")):
            jpg = tmp_path / name
            Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(jpg)
            ids[name] = cat.add_photo(path=jpg, sha256=f"{i:064d}", width=W, height=H,
                                      nasa_id="ISS064-E-10" if i == 0 else None, camera_make="NIKON",
                                      camera_model="D5", focal_length_mm=400.0,
                                      captured_at="2020-11-23T10:11:12Z")
        cat.upsert_nasa_metadata("ISS064-E-10", source="test", nadir_lon=31.5, nadir_lat=29.4,
                                 altitude_km=421.0, focal_length_mm=400.0, tilt_deg=12.0, cloud_pct=20.0)
        px = rng.uniform(0, 1, (8, 2)) * [W, H]
        fit = fit_tie_points(px + rng.normal(0, 1.5, px.shape), _lonlat(px), (W, H))
        store_manual(cat, ids["ISS064-E-10.jpg"], fit, analyst="ana")
        cat.add_localization(ids["auto.jpg"], confidence=0.9, inliers=120, accepted_auto=True,
                             footprint=[[10, 21], [12, 21], [12, 19], [10, 19]])
        cat.set_status(ids["auto.jpg"], "localized")
        cat.set_status(ids["broken.jpg"], "failed", "cannot decode: truncated JPEG")
    win = MainWindow(tmp_path / "c.sqlite", settings=AppSettings())
    qtbot.addWidget(win)
    win.show()
    return win, ids, fit


def test_fit_rms_and_position_uncertainty_as_exported(qtbot, window):
    win, ids, fit = window
    win.open_review(ids["ISS064-E-10.jpg"])
    lab = win.review.info_labels
    record = records_from_catalog(win.catalog, ids=[ids["ISS064-E-10.jpg"]])[0][0]
    assert lab["Fit RMS"].text() == f"{record.fit_error_px():.1f} px"
    assert lab["Uncertainty"].text() == f"± {record.position_uncertainty_m() / 1000:.2f} km"
    assert 0.5 < record.fit_error_px() < 5  # the tie points' noise, as the export reports it
    assert lab["Inliers"].text() == "8"
    win.open_review(ids["auto.jpg"])  # no stored matches: unknown, not zero
    assert lab["Fit RMS"].text() == "—" and "auto-accepted" in lab["Confidence"].text()


def test_one_vocabulary_and_a_legend(qtbot, window):
    win, ids, _ = window
    shown = {win.model.photo_at(r).name: win.model.data(win.model.index(r, 4)) for r in range(3)}
    assert shown == {"ISS064-E-10.jpg": "accepted", "auto.jpg": "auto-accepted", "broken.jpg": "failed"}
    combo = win.filters.status
    assert [combo.itemText(i) for i in range(combo.count())][1:] == [
        "new", "localizing", "auto-accepted", "to review", "accepted", "rejected", "failed"]
    assert "calibrated threshold" in combo.itemData(combo.findData("localized"), 3)  # tooltip role
    text = win.counts_label.text()
    assert "auto-accepted 1" in text and "accepted 1" in text and "to review 0" in text
    legend = win.counts_label.toolTip()
    assert "auto-accepted</b>: the pipeline found it confident" in legend and "rejected by a person" in legend


def test_metadata_panel_shows_nasa_exif_and_the_failure(qtbot, window):
    win, ids, _ = window
    win.open_review(ids["ISS064-E-10.jpg"])
    meta = win.review.meta_labels
    assert meta["NASA nadir"].text() == "29.40, 31.50 (lat, lon)"
    assert meta["Altitude"].text() == "421 km" and meta["Tilt"].text() == "12°" and meta["Cloud"].text() == "20 %"
    assert meta["Focal length"].text() == "400 mm (NASA), 400 mm (EXIF)"
    assert meta["Camera"].text() == "NIKON D5" and meta["Captured (UTC)"].text().startswith("2020-11-23 10:11")
    win.open_review(ids["broken.jpg"])
    assert meta["Problem"].text() == "cannot decode: truncated JPEG" and meta["Problem"].isVisible()
    assert "no NASA record" in meta["NASA nadir"].text()
