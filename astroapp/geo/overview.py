"""An overview picture: photos beside a world map with their footprints drawn on it."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from astroapp.geo.footprint import Footprint, unwrap_lons
from astroapp.geo.tiles import WORLD, MercatorGrid, lonlat_to_mercator

COLORS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
          (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]


def _outline(fp: Footprint, per_edge: int = 24) -> tuple[np.ndarray, np.ndarray]:
    lons = unwrap_lons([c[0] for c in fp.corners] + [fp.corners[0][0]])
    lats = [c[1] for c in fp.corners] + [fp.corners[0][1]]
    t = np.linspace(0, 1, per_edge, endpoint=False)
    lon = np.concatenate([a + (b - a) * t for a, b in zip(lons[:-1], lons[1:], strict=True)])
    lat = np.concatenate([a + (b - a) * t for a, b in zip(lats[:-1], lats[1:], strict=True)])
    return lon, lat


def footprints_overview(source, footprints: Sequence[Footprint], photos: Sequence[np.ndarray],
                        map_width: int = 1200, max_lat: float = 72.0, thumb: int = 240,
                        labels: Sequence[str] | None = None) -> np.ndarray:
    """RGB figure: the source's world map (Web Mercator, |lat| <= max_lat) with numbered
    footprints (a dot marks each top-left corner), and the photos in a grid beside it."""
    _, ytop = lonlat_to_mercator(np.array([0.0]), np.array([max_lat]))
    bounds = (-WORLD, -float(ytop[0]), WORLD, float(ytop[0]))
    map_h = int(round(map_width * (bounds[3] - bounds[1]) / (bounds[2] - bounds[0])))
    grid = MercatorGrid(bounds, map_width, map_h)
    world = np.ascontiguousarray(source.read_mercator(bounds, map_width, map_h))
    for i, fp in enumerate(footprints):
        color = COLORS[i % len(COLORS)]
        lon, lat = _outline(fp)
        mx, my = lonlat_to_mercator(lon, lat)
        x, y = grid.mercator_to_pixel(mx, my)
        pts = np.stack([x, y], axis=1)
        for shift in (-map_width, 0, map_width):  # draw wrapped copies across 180 deg
            p = (pts + [shift, 0]).round().astype(np.int32)
            cv2.polylines(world, [p], True, color, 2, cv2.LINE_AA)
            cv2.circle(world, tuple(int(v) for v in p[0]), 4, color, -1, cv2.LINE_AA)
        cx, cy = grid.lonlat_to_pixel(*fp.centroid())
        text = str(i + 1)
        org = (int(cx) + 8, int(cy) - 8)
        cv2.putText(world, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 4, cv2.LINE_AA)
        cv2.putText(world, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.7, color, 2, cv2.LINE_AA)
    pair_w = thumb + thumb * 2 // 3 + 12
    cols = 2 if len(photos) > 1 else 1
    rows = -(-len(photos) // cols) if photos else 0
    row_h = thumb * 2 // 3 + 10
    panel = np.full((max(map_h, rows * row_h + 8), cols * pair_w + 8, 3), 24, np.uint8)
    for i, img in enumerate(photos):
        r, c = divmod(i, cols)
        h, w = img.shape[:2]
        s = min(thumb / w, (row_h - 10) / h)
        small = cv2.resize(img, (int(w * s), int(h * s)), interpolation=cv2.INTER_AREA)
        y0, x0 = 8 + r * row_h, 8 + c * pair_w
        panel[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
        color = COLORS[i % len(COLORS)]
        cv2.rectangle(panel, (x0, y0), (x0 + small.shape[1] - 1, y0 + small.shape[0] - 1),
                      color, 3)
        cv2.circle(panel, (x0 + 5, y0 + 5), 6, color, -1, cv2.LINE_AA)  # top-left corner
        text = f"#{i + 1}" + (f"  {labels[i]}" if labels else "")
        cv2.putText(panel, text, (x0 + 14, y0 + 26), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                    (0, 0, 0), 4, cv2.LINE_AA)
        cv2.putText(panel, text, (x0 + 14, y0 + 26), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                    (255, 255, 255), 2, cv2.LINE_AA)
        inset = footprint_inset(source, footprints[i], row_h - 10, color)
        xi = x0 + small.shape[1] + 6
        panel[y0:y0 + inset.shape[0], xi:xi + inset.shape[1]] = inset
    canvas = np.full((max(map_h, panel.shape[0]), map_width + panel.shape[1], 3), 24, np.uint8)
    canvas[:map_h, :map_width] = world
    canvas[:panel.shape[0], map_width:] = panel
    return canvas


def footprint_inset(source, fp: Footprint, size: int, color=(255, 255, 0),
                    margin: float = 1.6) -> np.ndarray:
    """A north-up square map around a footprint (its extent x `margin`), outline drawn."""
    lon, lat = _outline(fp)
    mx, my = lonlat_to_mercator(lon, lat)
    cx, cy = (mx.min() + mx.max()) / 2, (my.min() + my.max()) / 2
    half = max(mx.max() - mx.min(), my.max() - my.min()) * margin / 2
    grid = MercatorGrid((cx - half, cy - half, cx + half, cy + half), size, size)
    img = np.ascontiguousarray(source.read_mercator(grid.bounds_3857, size, size))
    x, y = grid.mercator_to_pixel(mx, my)
    pts = np.stack([x, y], axis=1).round().astype(np.int32)
    cv2.polylines(img, [pts], True, color, 2, cv2.LINE_AA)
    cv2.circle(img, tuple(int(v) for v in pts[0]), 4, color, -1, cv2.LINE_AA)
    cv2.putText(img, "N", (size - 18, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1,
                cv2.LINE_AA)
    return img
