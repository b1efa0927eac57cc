"""Manual georeferencing: an analyst's tie points (photo pixel <-> ground lon/lat) fitted to a
homography, the fallback when automatic localization fails (QGIS Georeferencer's projective
transform, NASA's manual practice). Qt-free, so the GUI and a CLI share it.

The model is the one the pipeline stores: photo px (edge coordinates, EXIF-upright, full
resolution) -> EPSG:3857 metres by a homography, exact for a flat scene under a pinhole camera
and within a pixel or two over an ISS frame (Earth curvature over a few hundred km). Residuals
are reported in photo pixels (where the analyst clicked) and in km on the ground.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from astroapp.geo.footprint import Footprint, lons_near
from astroapp.geo.tiles import WORLD, lonlat_to_mercator, mercator_to_lonlat
from astroapp.matching.geometry import apply_h

MIN_TIE_POINTS = 4
GCP_GRID = 5


def _mercator(lonlat: np.ndarray) -> np.ndarray:
    """Mercator metres of lon/lat points, longitudes kept continuous across the antimeridian."""
    mx, my = lonlat_to_mercator(lonlat[:, 0], lonlat[:, 1])
    mx = lons_near(mx, mx[0], period=2 * WORLD)
    return np.column_stack([mx, np.asarray(my, dtype=np.float64)])


@dataclass
class ManualFit:
    """A homography fitted to tie points, with how well each point agrees with it."""

    homography: np.ndarray  # photo px -> EPSG:3857 metres
    photo_pts: np.ndarray  # (N, 2) photo px
    lonlat: np.ndarray  # (N, 2) lon, lat
    residuals_px: np.ndarray  # (N,) distance in the photo between the click and the map point mapped back
    residuals_km: np.ndarray  # (N,) ground distance between the map point and the click mapped forward
    photo_size: tuple[int, int]
    rms_without_px: np.ndarray  # (N,) RMS of the fit without each pair: which one spoils the rest

    @property
    def rms_px(self) -> float:
        return float(np.sqrt(np.mean(self.residuals_px**2)))

    @property
    def rms_km(self) -> float:
        return float(np.sqrt(np.mean(self.residuals_km**2)))

    def pixel_to_lonlat(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        merc = apply_h(self.homography, np.column_stack([np.ravel(x), np.ravel(y)]).astype(np.float64))
        lon, lat = mercator_to_lonlat(merc[:, 0], merc[:, 1])
        return np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)

    def footprint(self) -> Footprint:
        """Ground corners of the photo (TL, TR, BR, BL), as the pipeline's footprints."""
        w, h = self.photo_size
        lon, lat = self.pixel_to_lonlat(np.array([0.0, w, w, 0.0]), np.array([0.0, 0.0, h, h]))
        return Footprint(tuple((float(a), float(b)) for a, b in zip(lon, lat, strict=True)))

    def gcps(self, n: int = GCP_GRID) -> list[list[float]]:
        """An n x n grid of (photo x, photo y, lon, lat), like an automatic result's GCPs."""
        w, h = self.photo_size
        xs, ys = np.meshgrid(np.linspace(0, w, n), np.linspace(0, h, n))
        lon, lat = self.pixel_to_lonlat(xs.ravel(), ys.ravel())
        return [[float(a), float(b), float(c), float(d)]
                for a, b, c, d in zip(xs.ravel(), ys.ravel(), lon, lat, strict=True)]


def fit_tie_points(photo_pts: Any, lonlat: Any, photo_size: tuple[int, int]) -> ManualFit:
    """Least-squares homography through every tie point (no RANSAC: the analyst placed them and
    sees each residual). Raises ValueError with a clear message for too few or degenerate points."""
    src = np.asarray(photo_pts, dtype=np.float64).reshape(-1, 2)
    geo = np.asarray(lonlat, dtype=np.float64).reshape(-1, 2)
    if len(src) != len(geo):
        raise ValueError(f"{len(src)} photo points but {len(geo)} map points: tie points come in pairs")
    if len(src) < MIN_TIE_POINTS:
        raise ValueError(f"a homography needs at least {MIN_TIE_POINTS} tie points, got {len(src)}")
    if not (np.isfinite(src).all() and np.isfinite(geo).all()):
        raise ValueError("tie points must be finite numbers")
    if np.abs(geo[:, 1]).max() > 85.05:
        raise ValueError("tie points beyond 85° latitude cannot be placed on the Mercator map")
    merc = _mercator(geo)
    centre = merc.mean(axis=0)  # metres around the points' centre keep the DLT well conditioned
    local = merc - centre
    if _collinear(src) or _collinear(local):
        raise ValueError("the tie points lie on one line: spread them over the photo")
    h_local, _ = cv2.findHomography(src, local, 0)
    if h_local is None or not np.isfinite(h_local).all() or abs(np.linalg.det(h_local)) < 1e-300:
        raise ValueError("no homography fits these tie points: check that each pair shows the same place")
    shift = np.array([[1.0, 0.0, centre[0]], [0.0, 1.0, centre[1]], [0.0, 0.0, 1.0]])
    hmat = shift @ h_local
    hmat /= hmat[2, 2]
    forward = apply_h(hmat, src)
    back = apply_h(np.linalg.inv(hmat), merc)
    scale = np.cos(np.radians(geo[:, 1]))  # Mercator metres -> ground metres at each latitude
    res_km = np.hypot(*(forward - merc).T) * scale / 1000.0
    res_px = np.hypot(*(back - src).T)
    w, h = photo_size
    return ManualFit(hmat, src, geo, res_px, res_km, (int(w), int(h)), _rms_without(src, local))


def _rms_without(src: np.ndarray, local: np.ndarray) -> np.ndarray:
    """The photo-px RMS of the fit of all pairs but one, for each pair (NaN when fewer than 5
    would remain): a least-squares fit spreads one wrong pair's error over every residual, but
    only leaving that pair out brings the RMS down."""
    out = np.full(len(src), np.nan)
    if len(src) <= MIN_TIE_POINTS + 1:  # the others must over-determine their fit to tell anything
        return out
    for i in range(len(src)):
        keep = np.arange(len(src)) != i
        h_i, _ = cv2.findHomography(src[keep], local[keep], 0)
        if h_i is not None and np.isfinite(h_i).all() and abs(np.linalg.det(h_i)) > 1e-300:
            back = apply_h(np.linalg.inv(h_i), local[keep])
            out[i] = float(np.sqrt(np.mean(np.sum((back - src[keep]) ** 2, axis=1))))
    return out


def suspect_pair(fit: ManualFit, factor: float = 0.5) -> int | None:
    """The pair whose removal cuts the RMS below `factor` times it, if one does (a mistake
    worth checking), else None."""
    drop = fit.rms_without_px
    if not np.isfinite(drop).any():
        return None
    i = int(np.nanargmin(drop))
    return i if drop[i] < factor * fit.rms_px and fit.rms_px > 2.0 else None


def _collinear(pts: np.ndarray) -> bool:
    centred = pts - pts.mean(axis=0)
    s = np.linalg.svd(centred, compute_uv=False)
    return bool(s[0] == 0 or s[-1] / s[0] < 1e-3)


def store_manual(catalog: Any, photo_id: int, fit: ManualFit, *, analyst: str,
                 tile_id: str | None = None, source_id: str | None = None,
                 note: str | None = None) -> int:
    """Store the fit as the photo's current localization (the pipeline's one store step, with
    its candidates kept) and record the analyst's acceptance. Returns the localization id."""
    from astroapp.pipeline.localize import store_localization

    fp = fit.footprint()
    if not fp.polygon().is_valid:
        raise ValueError("the fitted footprint folds over itself: check the tie points")
    previous = catalog.latest_localization(photo_id)
    cands = catalog.candidates(previous.id) if previous is not None else []
    method = {"stage": "manual", "by": analyst, "tie_points": len(fit.photo_pts),
              "rms_px": round(fit.rms_px, 3), "rms_km": round(fit.rms_km, 4)}
    values = {
        "method": method,
        "timings": {},
        "tile_id": tile_id,
        "source_id": source_id,
        "footprint": fp,
        "homography": fit.homography,
        "gcps": fit.gcps(),
        # the tie points themselves, in the correspondences' format (photo px -> lon/lat)
        "correspondences": [[float(x), float(y), float(lon), float(lat)]
                            for (x, y), (lon, lat) in zip(fit.photo_pts, fit.lonlat, strict=True)],
        "inliers": len(fit.photo_pts),
        "confidence": None,
        "accepted_auto": False,
    }
    loc_id = store_localization(catalog, photo_id, values, cands)
    text = f"manual georeferencing: {len(fit.photo_pts)} tie points, RMS {fit.rms_px:.1f} px"
    catalog.record_review(photo_id, analyst, "accept", f"{text}; {note}" if note else text)
    return loc_id


def position_uncertainty_km(fit: ManualFit) -> float:
    """A 1-sigma position uncertainty of the centre: the ground RMS of the tie points, inflated
    for the few degrees of freedom left (8 parameters fitted from 2N coordinates)."""
    n = len(fit.photo_pts)
    dof = 2 * n - 8
    if dof <= 0:
        return math.nan
    return fit.rms_km * math.sqrt(2 * n / dof)
