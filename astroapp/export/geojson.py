"""GeoJSON (RFC 7946) FeatureCollection of footprints.

RFC 7946: WGS84 lon/lat with no `crs` member, exterior rings counter-clockwise (holes
clockwise), geometries crossing the antimeridian cut into parts on either side, `bbox` as
[west, south, east, north] with west > east across the antimeridian, and coordinates at a
precision that does not pretend (7 decimals, ~1 cm).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import shapely
import shapely.affinity
import shapely.errors
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.polygon import orient

from astroapp.atomic import atomic_text
from astroapp.export.records import ExportRecord
from astroapp.geo.footprint import Footprint, unwrap_lons

log = logging.getLogger(__name__)
PRECISION = 7


def footprint_geometry(record: ExportRecord) -> Polygon | MultiPolygon:
    """The footprint as RFC 7946 wants it: split at the antimeridian, rings CCW; a footprint
    around a pole becomes the cap up to that pole. Raises ValueError for one with no area."""
    fp = record.footprint
    pole = enclosed_pole(fp)
    geom = _pole_cap(fp, pole) if pole is not None else fp.polygon()
    parts = [orient(p, 1.0) for p in getattr(geom, "geoms", [geom])
             if isinstance(p, Polygon) and not p.is_empty and p.area > 0]
    if not parts:
        raise ValueError(f"{record.file_name}: degenerate footprint (no area): {fp.to_list()}")
    return parts[0] if len(parts) == 1 else MultiPolygon(parts)


def enclosed_pole(fp: Footprint) -> float | None:
    """90 or -90 when the footprint's ring winds once around that pole (its longitudes
    run through all 360 degrees), else None."""
    lons = unwrap_lons([c[0] for c in fp.corners] + [fp.corners[0][0]])
    turn = lons[-1] - lons[0]
    if abs(abs(turn) - 360.0) > 1e-6:
        return None
    return 90.0 if sum(c[1] for c in fp.corners) > 0 else -90.0


def _pole_cap(fp: Footprint, pole: float) -> Polygon | MultiPolygon:
    """The region between the footprint's ring and the pole it encloses, in [-180, 180]:
    the ring with continuous, increasing longitudes, closed along the pole, then cut into the
    world's longitude range (copies shifted by 360 degrees fill the rest)."""
    corners = list(fp.corners)
    lons = unwrap_lons([c[0] for c in corners])
    if lons[-1] < lons[0]:  # winding westwards: walk it the other way
        corners.reverse()
        lons = unwrap_lons([c[0] for c in corners])
    ring = [(lon, c[1]) for lon, c in zip(lons, corners, strict=True)]
    ring += [(lons[0] + 360.0, corners[0][1]), (lons[0] + 360.0, pole), (lons[0], pole)]
    cap = shapely.make_valid(Polygon(ring))
    world = shapely.box(-180.0, -90.0, 180.0, 90.0)
    pieces = [shapely.affinity.translate(cap, xoff=360.0 * k).intersection(world)
              for k in (-2, -1, 0, 1)]
    return shapely.unary_union([p for p in pieces if not p.is_empty])


def drop_unusable(records: Iterable[ExportRecord]) -> tuple[list[ExportRecord], list[str]]:
    """(records whose footprint can be exported, "name (why)" of the others): one bad
    footprint is skipped with a warning instead of aborting the whole export."""
    good, skipped = [], []
    for record in records:
        try:
            footprint_geometry(record)
        except (ValueError, shapely.errors.ShapelyError) as exc:
            log.warning("skipped %s: %s", record.file_name, exc)
            skipped.append(f"{record.file_name} ({exc})")
        else:
            good.append(record)
    return good, skipped


def geometry_mapping(geom: Polygon | MultiPolygon) -> dict[str, Any]:
    """GeoJSON geometry object with coordinates rounded to `PRECISION` decimals."""
    def ring(coords: Iterable[Sequence[float]]) -> list[list[float]]:
        return [[_r(x), _r(y)] for x, y in coords]

    def poly(p: Polygon) -> list[list[list[float]]]:
        return [ring(p.exterior.coords)] + [ring(i.coords) for i in p.interiors]

    if isinstance(geom, MultiPolygon):
        return {"type": "MultiPolygon", "coordinates": [poly(p) for p in geom.geoms]}
    return {"type": "Polygon", "coordinates": poly(geom)}


def feature_bbox(record: ExportRecord) -> list[float]:
    """[W, S, E, N] of one footprint; W > E when it crosses the antimeridian; all longitudes
    and up to the pole for a footprint around a pole."""
    if enclosed_pole(record.footprint) is not None:
        w, s, e, n = footprint_geometry(record).bounds
        return [-180.0, _r(s), 180.0, _r(n)]
    w, s, e, n = record.footprint.bbox()
    return [_r(w), _r(s), _r(e), _r(n)]


def collection_bbox(boxes: Sequence[Sequence[float]]) -> list[float] | None:
    """Smallest [W, S, E, N] covering antimeridian-aware boxes.

    Longitude spans are arcs on a circle: the covering arc is the circle minus its largest
    gap not covered by any box (so boxes at 179E and 179W give a box across the antimeridian,
    not one spanning the globe).
    """
    if not boxes:
        return None
    south = min(b[1] for b in boxes)
    north = max(b[3] for b in boxes)
    arcs: list[tuple[float, float]] = []  # [start, end] within [-180, 180]
    for w, _, e, _ in boxes:
        if w <= e:
            arcs.append((w, e))
        else:
            arcs += [(w, 180.0), (-180.0, e)]
    arcs.sort()
    merged: list[list[float]] = []
    for a, b in arcs:
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    if merged[0][0] <= -180.0 and merged[-1][1] >= 180.0 and len(merged) > 1:
        # The first and last arcs meet at the antimeridian: one arc across it.
        first = merged.pop(0)
        merged[-1][1] = first[1] + 360.0
    if len(merged) == 1 and merged[0][1] - merged[0][0] >= 360.0:
        return [-180.0, _r(south), 180.0, _r(north)]
    # Largest gap between consecutive arcs (cyclically) is left out.
    best_gap, west, east = -1.0, -180.0, 180.0
    for i, (_, end) in enumerate(merged):
        nxt = merged[(i + 1) % len(merged)][0]
        gap = nxt + (360.0 if i + 1 == len(merged) else 0.0) - end
        if gap > best_gap:
            best_gap, east, west = gap, end, nxt
    east = east - 360.0 if east > 180.0 else east
    return [_r(west), _r(south), _r(east), _r(north)]


def feature(record: ExportRecord) -> dict[str, Any]:
    return {
        "type": "Feature",
        "id": record.catalog_id,
        "bbox": feature_bbox(record),
        "geometry": geometry_mapping(footprint_geometry(record)),
        "properties": record.properties(),
    }


def feature_collection(records: Iterable[ExportRecord]) -> dict[str, Any]:
    features = [feature(r) for r in drop_unusable(records)[0]]
    out: dict[str, Any] = {"type": "FeatureCollection"}
    bbox = collection_bbox([f["bbox"] for f in features])
    if bbox is not None:
        out["bbox"] = bbox
    out["features"] = features
    return out


def write_geojson(records: Iterable[ExportRecord], out: str | Path) -> Path:
    """Write the FeatureCollection atomically; returns the path."""
    collection = feature_collection(records)
    with atomic_text(out) as fh:
        json.dump(collection, fh, ensure_ascii=False, allow_nan=False)
        fh.write("\n")
    return Path(out)


def wkt(record: ExportRecord) -> str:
    """The split, CCW footprint as WKT with `PRECISION` decimals (CSV column)."""
    return shapely.to_wkt(footprint_geometry(record), rounding_precision=PRECISION, trim=True)


def _r(x: float) -> float:
    v = round(float(x), PRECISION)
    return 0.0 if v == 0 else v
