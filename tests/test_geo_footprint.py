import json
import math

import pytest
from shapely.geometry import MultiPolygon, Polygon

from astroapp.geo.footprint import Footprint, unwrap_lons, wrap_lon


def test_corner_order_round_trip_and_validation():
    fp = Footprint.from_bounds(10.0, 40.0, 12.0, 42.0)
    assert fp.corners == ((10.0, 42.0), (12.0, 42.0), (12.0, 40.0), (10.0, 40.0))
    assert Footprint.from_list(json.loads(json.dumps(fp.to_list()))) == fp
    with pytest.raises(ValueError, match="4 corners"):
        Footprint(((0, 0), (1, 0), (1, 1)))
    with pytest.raises(ValueError, match="latitude"):
        Footprint(((0, 95), (1, 0), (1, 1), (0, 1)))
    with pytest.raises(ValueError, match="finite"):
        Footprint(((0, float("nan")), (1, 0), (1, 1), (0, 1)))
    # longitudes given beyond 180 are stored wrapped
    assert Footprint(((190, 1), (191, 1), (191, 0), (190, 0))).corners[0] == (-170.0, 1.0)


def test_area_and_centroid_match_geodesy():
    # A 1x1 degree cell at the equator is ~12,309 km^2 on WGS84.
    fp = Footprint.from_bounds(0.0, 0.0, 1.0, 1.0)
    assert fp.area_km2() == pytest.approx(12308.8, rel=1e-3)
    assert fp.centroid() == pytest.approx((0.5, 0.5))
    # Area shrinks with cos(lat).
    high = Footprint.from_bounds(0.0, 60.0, 1.0, 61.0)
    assert high.area_km2() / fp.area_km2() == pytest.approx(math.cos(math.radians(60.5)), rel=2e-2)
    # Polygon is counter-clockwise (RFC 7946) whatever the corner order's winding.
    poly = fp.polygon()
    assert isinstance(poly, Polygon) and poly.exterior.is_ccw


def test_antimeridian_split():
    fp = Footprint.from_bounds(175.0, -20.0, -175.0, -10.0)  # Fiji, 10 degrees wide
    poly = fp.polygon()
    assert isinstance(poly, MultiPolygon) and len(poly.geoms) == 2
    assert fp.crosses_antimeridian()
    xs = sorted(round(g.bounds[0]) for g in poly.geoms)
    assert xs == [-180, 175]
    for g in poly.geoms:
        assert g.exterior.is_ccw
        assert -180.0 <= g.bounds[0] and g.bounds[2] <= 180.0
    assert math.isclose(poly.area, 10 * 10, rel_tol=1e-9)
    assert fp.area_km2() == pytest.approx(Footprint.from_bounds(0, -20, 10, -10).area_km2())
    assert fp.contains(179.5, -15) and fp.contains(-179.5, -15) and fp.contains(540 - 0.5, -15)
    assert not fp.contains(0, -15) and not fp.contains(170, -15)
    lon, lat = fp.centroid()
    assert abs(wrap_lon(lon - 180.0)) < 1e-9 and lat == pytest.approx(-15)
    assert fp.bbox() == (175.0, -20.0, -175.0, -10.0)
    # A rotated photo footprint across the antimeridian also splits.
    rot = Footprint(((178.0, 1.0), (-179.0, 2.0), (-178.0, -1.0), (179.0, -2.0)))
    assert isinstance(rot.polygon(), MultiPolygon)


def test_iou_intersects_contains():
    a = Footprint.from_bounds(0, 0, 2, 2)
    b = Footprint.from_bounds(1, 0, 3, 2)
    assert a.intersects(b)
    assert a.iou(b) == pytest.approx(1 / 3, rel=1e-3)
    assert a.iou(a) == pytest.approx(1.0)
    far = Footprint.from_bounds(10, 10, 11, 11)
    assert not a.intersects(far) and a.iou(far) == 0.0
    # IoU across the antimeridian
    c = Footprint.from_bounds(178, 0, -178, 2)
    d = Footprint.from_bounds(-180, 0, -176, 2)
    assert c.intersects(d)
    assert c.iou(d) == pytest.approx(1 / 3, rel=1e-3)
    assert a.contains(1, 1) and a.contains(0, 0) and not a.contains(-0.1, 1)


def test_scaled_and_unwrap_helpers():
    fp = Footprint.from_bounds(10, 10, 12, 12).scaled(3.0)
    assert fp.bbox() == pytest.approx((8, 8, 14, 14))
    assert unwrap_lons([179.0, -179.0, -178.0]) == [179.0, 181.0, 182.0]
    assert wrap_lon(180.0) == -180.0 and wrap_lon(-181.0) == 179.0
