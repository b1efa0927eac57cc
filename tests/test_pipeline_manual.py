"""Manual georeferencing core: tie points on a photo rendered over the bundled world (whose
true footprint is known) give back that footprint; bad tie points are clear errors; the
result is stored by the pipeline's store step and exported like an automatic one."""

from __future__ import annotations

import json

import numpy as np
import pytest
from manual_fixtures import H, W, rendered_photo
from shapely.geometry import shape

from astroapp.catalog import Catalog
from astroapp.export import records_from_catalog, write_geojson
from astroapp.pipeline.manual import (
    fit_tie_points,
    position_uncertainty_km,
    store_manual,
    suspect_pair,
)


@pytest.fixture(scope="module")
def rendered():
    return rendered_photo()


def tie_points(render, n=6, seed=0):
    rng = np.random.default_rng(seed)
    xs = rng.uniform(0.05, 0.95, n) * W
    ys = rng.uniform(0.05, 0.95, n) * H
    lon, lat, hit = render.camera.pixel_to_lonlat(xs, ys, W, H)
    assert hit.all()
    return np.column_stack([xs, ys]), np.column_stack([lon, lat])


def test_fit_recovers_the_true_footprint(rendered):
    photo, lonlat = tie_points(rendered, n=6)
    fit = fit_tie_points(photo, lonlat, (W, H))
    truth = rendered.footprint.polygon()
    got = fit.footprint().polygon()
    size = truth.length / 4
    # a homography is the pipeline's model: Earth curvature over this ~380 km frame leaves ~1 %
    assert got.hausdorff_distance(truth) < 0.015 * size
    assert fit.rms_px < 2.0 and len(fit.residuals_px) == 6
    assert np.isfinite(position_uncertainty_km(fit))


def test_a_wrong_pair_stands_out_in_the_residuals(rendered):
    photo, lonlat = tie_points(rendered, n=8, seed=1)
    lonlat[3] += [0.6, -0.4]  # one map point put at the wrong place
    fit = fit_tie_points(photo, lonlat, (W, H))
    assert fit.rms_px > 3  # least squares spreads the error; leaving each pair out finds it
    assert suspect_pair(fit) == 3 and fit.rms_without_px[3] < 2.0
    assert suspect_pair(fit_tie_points(*tie_points(rendered, n=8, seed=1), (W, H))) is None


@pytest.mark.parametrize(("photo", "lonlat", "message"), [
    ([[0, 0], [10, 0], [10, 10]], [[0, 0], [1, 0], [1, 1]], "at least 4"),
    ([[0, 0], [10, 0], [20, 0], [30, 0]], [[0, 0], [1, 0], [2, 0], [3, 1]], "one line"),
    ([[0, 0], [10, 0], [10, 10], [0, 10]], [[0, 0], [1, 0], [1, 1]], "pairs"),
    ([[0, 0], [10, 0], [10, 10], [0, 10]], [[0, 89], [1, 89], [1, 88], [0, 88]], "latitude"),
])
def test_bad_tie_points_are_clear_errors(photo, lonlat, message):
    with pytest.raises(ValueError, match=message):
        fit_tie_points(photo, lonlat, (100, 100))


def test_stored_like_an_automatic_result_and_exported(rendered, tmp_path):
    photo, lonlat = tie_points(rendered, n=8, seed=2)
    fit = fit_tie_points(photo, lonlat, (W, H))
    with Catalog(tmp_path / "c.sqlite") as cat:
        pid = cat.add_photo(path=tmp_path / "p.jpg", sha256="0" * 64, width=W, height=H)
        old = cat.add_localization(pid, confidence=0.1, inliers=7, method={"stage": "coregistration"})
        cat.add_candidates(old, [{"rank": 1, "tile_id": "t1", "footprint": None}])
        cat.set_status(pid, "review", "no confident candidate")
        store_manual(cat, pid, fit, analyst="ana", source_id="bluemarble")
        loc = cat.latest_localization(pid)
        assert loc.method["stage"] == "manual" and loc.method["tie_points"] == 8
        assert loc.method["homography"] and loc.method["gcps"]  # the store step's frame marks
        assert [c.tile_id for c in cat.candidates(loc.id)] == ["t1"]  # candidates kept
        hm = np.array(loc.homography)  # photo px -> EPSG:3857: the photo's centre maps inside
        assert np.allclose(hm, fit.homography)
        assert len(loc.gcps) == 25 and len(loc.correspondences) == 8
        assert cat.get_photo(pid).status == "accepted"
        event = cat.review_events(pid)[-1]
        assert (event.action, event.who) == ("accept", "ana") and "8 tie points" in event.note
        out = tmp_path / "out.geojson"
        records, skipped = records_from_catalog(cat, status="accepted")
        assert not skipped
        write_geojson(records, out)
    feat = json.loads(out.read_text())["features"][0]
    truth = rendered.footprint.polygon()
    assert shape(feat["geometry"]).hausdorff_distance(fit.footprint().polygon()) < 1e-6
    assert shape(feat["geometry"]).hausdorff_distance(truth) < 0.015 * truth.length / 4
