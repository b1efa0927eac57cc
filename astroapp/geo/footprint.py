"""The ground footprint of an image: four (lon, lat) corners in a fixed order.

Corner order is the image as displayed: top-left, top-right, bottom-right, bottom-left
(row 0 at the top, column 0 on the left). Longitudes may cross the antimeridian: corners are
stored wrapped to [-180, 180) and every derived geometry is unwrapped and then split with the
`antimeridian` package, so a footprint over Fiji is two polygons, not one spanning the globe.
Edges are straight lines in lon/lat (exact for Web Mercator blocks, whose edges are meridians
and parallels; a close approximation for photo footprints of a few hundred km).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

import antimeridian
import numpy as np
import shapely
from pyproj import Geod
from shapely.geometry import MultiPolygon, Point, Polygon

GEOD = Geod(ellps="WGS84")

Corner = tuple[float, float]


def wrap_lon(lon: float | np.ndarray) -> float | np.ndarray:
    """Longitude(s) in [-180, 180): a float for a number, an array for an array."""
    if np.ndim(lon) == 0:
        return ((float(lon) + 180.0) % 360.0) - 180.0
    return (np.asarray(lon, dtype=np.float64) + 180.0) % 360.0 - 180.0


def unwrap_lons(lons: Sequence[float], period: float = 360.0) -> list[float]:
    """Longitudes made continuous (each within 180 degrees of the previous one): a ring
    across the antimeridian becomes one run. `period` 2 x WORLD does the same for Mercator x.
    """
    half = period / 2.0
    out = [float(lons[0])]
    for lon in lons[1:]:
        d = (float(lon) - out[-1] + half) % period - half
        out.append(out[-1] + d)
    return out


def lons_near(lons: Sequence[float] | np.ndarray, ref: float | np.ndarray,
              period: float = 360.0) -> np.ndarray:
    """Each longitude shifted by whole turns to lie within 180 degrees of `ref` (points of
    one footprint across the antimeridian); `period` 2 x WORLD does it for Mercator x."""
    lons = np.asarray(lons, dtype=np.float64)
    return lons + period * np.round((ref - lons) / period)


@dataclass(frozen=True)
class Footprint:
    """Four ground corners (lon, lat) in degrees: TL, TR, BR, BL (lon kept in [-180, 180])."""

    corners: tuple[Corner, Corner, Corner, Corner]

    def __post_init__(self) -> None:
        corners = tuple(self.corners)
        if len(corners) != 4:
            raise ValueError(f"a footprint needs 4 corners, got {len(corners)}")
        clean = []
        for c in corners:
            if len(c) != 2:
                raise ValueError(f"a corner is (lon, lat), got {c!r}")
            lon, lat = float(c[0]), float(c[1])
            if not (math.isfinite(lon) and math.isfinite(lat)):
                raise ValueError(f"corner is not finite: {c!r}")
            if not -90.0 <= lat <= 90.0:
                raise ValueError(f"latitude out of range in corner {c!r}")
            clean.append((lon if -180.0 <= lon <= 180.0 else wrap_lon(lon), lat))
        object.__setattr__(self, "corners", tuple(clean))

    # construction -------------------------------------------------------------------------
    @classmethod
    def from_list(cls, x: Iterable[Sequence[float]]) -> Footprint:
        """From `[[lon, lat], ...]` (TL, TR, BR, BL), e.g. JSON from the catalogue."""
        pts = [tuple(map(float, p)) for p in x]
        return cls(tuple(pts))  # type: ignore[arg-type]

    @classmethod
    def from_bounds(cls, west: float, south: float, east: float, north: float) -> Footprint:
        """A north-up rectangle; `west > east` means it crosses the antimeridian."""
        return cls(((west, north), (east, north), (east, south), (west, south)))

    def to_list(self) -> list[list[float]]:
        return [[lon, lat] for lon, lat in self.corners]

    # geometry -----------------------------------------------------------------------------
    @cached_property
    def _unwrapped(self) -> list[Corner]:
        lons = unwrap_lons([c[0] for c in self.corners])
        return [(lon, c[1]) for lon, c in zip(lons, self.corners, strict=True)]

    def unwrapped_polygon(self) -> Polygon:
        """One polygon with continuous longitudes (may leave [-180, 180]); for local maths."""
        return shapely.geometry.polygon.orient(Polygon(self._unwrapped), 1.0)

    @cached_property
    def _polygon(self) -> Polygon | MultiPolygon:
        poly = self.unwrapped_polygon()
        if not poly.is_valid:
            poly = shapely.make_valid(poly)
            polys = [g for g in getattr(poly, "geoms", [poly]) if isinstance(g, Polygon)]
            poly = max(polys, key=lambda p: p.area) if polys else Polygon()
        if poly.is_empty:
            return poly
        minx, _, maxx, _ = poly.bounds
        if minx >= -180.0 and maxx <= 180.0:
            return poly
        # Wrap every vertex back into [-180, 180]; antimeridian then splits at the jump.
        shift = 360.0 * math.floor((poly.centroid.x + 180.0) / 360.0)
        ring = [(wrap_lon(x - shift) if abs(x - shift) > 180.0 else x - shift, y)
                for x, y in poly.exterior.coords]
        return antimeridian.fix_polygon(Polygon(ring), fix_winding=False, great_circle=False)

    def polygon(self) -> Polygon | MultiPolygon:
        """Shapely geometry in lon/lat, counter-clockwise, split at the antimeridian."""
        return self._polygon

    def crosses_antimeridian(self) -> bool:
        return isinstance(self._polygon, MultiPolygon)

    def bbox(self) -> tuple[float, float, float, float]:
        """(west, south, east, north); west > east when crossing the antimeridian."""
        lons = [c[0] for c in self._unwrapped]
        lats = [c[1] for c in self._unwrapped]
        west, east = min(lons), max(lons)
        west = west if -180.0 <= west <= 180.0 else wrap_lon(west)
        east = east if -180.0 <= east <= 180.0 else wrap_lon(east)
        return (west, min(lats), east, max(lats))

    def area_km2(self) -> float:
        """Geodesic area on the WGS84 ellipsoid."""
        lons = [c[0] for c in self._unwrapped]
        lats = [c[1] for c in self._unwrapped]
        area, _ = GEOD.polygon_area_perimeter(lons, lats)
        return abs(area) / 1e6

    def centroid(self) -> tuple[float, float]:
        """(lon, lat) of the planar centroid of the unwrapped polygon."""
        poly = self.unwrapped_polygon()
        c = poly.centroid if poly.area > 0 else Polygon(self._unwrapped).envelope.centroid
        return (wrap_lon(c.x), c.y)

    def center_distance_km(self, other: Footprint) -> float:
        a, b = self.centroid(), other.centroid()
        _, _, dist = GEOD.inv(a[0], a[1], b[0], b[1])
        return dist / 1e3

    def intersects(self, other: Footprint) -> bool:
        return bool(self._polygon.intersects(other._polygon))

    def contains(self, lon: float, lat: float) -> bool:
        """Whether the point lies inside or on the boundary."""
        return bool(self._polygon.covers(Point(wrap_lon(lon), lat)))

    def iou(self, other: Footprint) -> float:
        """Intersection over union of geodesic areas (0 when disjoint)."""
        inter = self._polygon.intersection(other._polygon)
        if inter.is_empty:
            return 0.0
        a_inter = _geodesic_area_km2(inter)
        union = self.area_km2() + other.area_km2() - a_inter
        return float(a_inter / union) if union > 0 else 0.0

    def scaled(self, factor: float) -> Footprint:
        """Enlarged (or shrunk) about the centroid, in local lon/lat (e.g. EarthMatch's 3x)."""
        poly = self.unwrapped_polygon()
        cx, cy = poly.centroid.x, poly.centroid.y
        pts = [(cx + (x - cx) * factor, float(np.clip(cy + (y - cy) * factor, -90, 90)))
               for x, y in self._unwrapped]
        return Footprint(tuple(pts))  # type: ignore[arg-type]

    def __repr__(self) -> str:
        pts = ", ".join(f"({lon:.5f}, {lat:.5f})" for lon, lat in self.corners)
        return f"Footprint({pts})"


def _geodesic_area_km2(geom: shapely.Geometry) -> float:
    total = 0.0
    for g in getattr(geom, "geoms", [geom]):
        if isinstance(g, Polygon | MultiPolygon):
            area, _ = GEOD.geometry_area_perimeter(g)
            total += abs(area)
    return total / 1e6
