"""The review view reads its imagery (photo decode, satellite view) in a reading thread, not
on the UI thread: opening a photo shows a loading state at once and the pictures arrive by
signal; stepping N/N/N faster than they load shows the last photo, never a stale one.
Offscreen Qt, real SQLite catalogue, real JPEGs, the bundled Blue Marble as satellite view."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt

from astroapp.catalog import Catalog

FOOTPRINT = [[10.0, 21.0], [12.0, 21.0], [12.0, 19.0], [10.0, 19.0]]
SIZES = [(90 + 10 * i, 60 + 4 * i) for i in range(5)]  # each photo's caption names its size


@pytest.fixture
def window(open_window, tmp_path):
    path = tmp_path / "catalog.sqlite"
    rng = np.random.default_rng(0)
    ids = []
    with Catalog(path) as cat:
        for i, (w, h) in enumerate(SIZES):
            jpg = tmp_path / f"photo_{i}.jpg"
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(jpg)
            pid = cat.add_photo(path=jpg, sha256=f"{i:064d}", width=w, height=h)
            x, y = w / 2, h / 2
            gcps = [[0, 0, 10.0, 21.0], [w, 0, 12.0, 21.0], [w, h, 12.0, 19.0], [0, h, 10.0, 19.0]]
            corr = [[x, y, 11.0, 20.0], [x / 2, y / 2, 10.5, 20.5]]
            cat.add_localization(pid, footprint=FOOTPRINT, confidence=0.9, inliers=2,
                                 method={"stage": "coregistration"}, tile_id="t", rank=1,
                                 source_id="none", center_lon=11.0, center_lat=20.0,
                                 gcps=gcps, correspondences=corr)
            cat.set_status(pid, "review", "check it")
            ids.append(pid)
    return open_window(path), ids


def test_opening_a_photo_does_not_wait_for_its_imagery(qtbot, window):
    win, ids = window
    rv = win.review
    win.open_review(ids[0])
    # back on the event loop before any picture: only a queued signal can deliver them
    assert rv.render_pending and "loading" in rv.caption_left.text()
    assert "loading the satellite view" in rv.caption_right.text()
    assert ("photo", ids[0]) in rv.map.footprint_keys()  # the map does not wait
    qtbot.waitUntil(lambda: not rv.render_pending, timeout=20_000)
    w, h = SIZES[0]
    assert rv.caption_left.text().startswith(f"photo {w}x{h} — 2 inlier correspondences")
    assert "matched satellite view (bundled Blue Marble)" in rv.caption_right.text()
    assert rv.last_render == {"lines": 2, "source": "none", "satellite": True}
    rv.chk_warp.setChecked(True)  # another picture of the same photo: loaded the same way
    assert rv.render_pending
    qtbot.waitUntil(lambda: not rv.render_pending, timeout=20_000)
    assert "warped into the photo's frame" in rv.caption_right.text()


def test_rapid_next_shows_the_last_photo(qtbot, window):
    win, ids = window
    rv = win.review
    win.open_review(ids[0])
    qtbot.waitUntil(lambda: not rv.render_pending, timeout=20_000)
    shown = []
    rv.pair.captionsChanged.connect(lambda left, _right: shown.append(left))
    rv.chk_advance.setChecked(False)
    rv.setFocus()
    for _ in range(3):
        qtbot.keyClick(rv, Qt.Key.Key_N)
    assert rv.photo_id == ids[3]
    qtbot.waitUntil(lambda: not rv.render_pending, timeout=20_000)
    qtbot.wait(300)  # a stale result still on its way would land here
    w, h = SIZES[3]
    assert shown and shown[-1].startswith(f"photo {w}x{h} — ")
    # the pictures of photos 1 and 2 (superseded before they were shown) never were
    assert not any(s.startswith((f"photo {SIZES[1][0]}x", f"photo {SIZES[2][0]}x")) for s in shown)
    assert rv.caption_left.text() == shown[-1] and not rv.render_pending
