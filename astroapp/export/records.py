"""One flat record per localized photo: everything an exporter writes, read from the catalogue once.

Exporters take `ExportRecord`s, never the catalogue, so each format is testable on plain
records and the catalogue is read in one place (`records_from_catalog`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from astroapp import __version__
from astroapp.geo.footprint import Footprint, lons_near, unwrap_lons
from astroapp.geo.tiles import WORLD, lonlat_to_mercator, mercator_to_lonlat
from astroapp.matching.geometry import apply_h

# Property names and order shared by GeoJSON, CSV and the HTML popups.
PROPERTY_NAMES = (
    "photo_id", "catalog_id", "nasa_id", "file_name", "captured_at", "center_lon", "center_lat",
    "area_km2", "status", "accepted_auto", "confidence", "inliers", "model", "matcher", "index",
    "tile_id", "source_id", "localized_at", "reviewer", "reviewed_at", "app_version",
)


@dataclass(frozen=True)
class ExportRecord:
    """A photo and its current localization, as exported."""

    catalog_id: int
    file_name: str
    footprint: Footprint
    nasa_id: str | None = None
    path: Path | None = None  # the photo file (GeoTIFF export, thumbnails)
    width: int | None = None
    height: int | None = None
    captured_at: str | None = None  # ISO 8601 UTC
    center_lon: float | None = None
    center_lat: float | None = None
    area_km2: float | None = None
    status: str = "localized"
    confidence: float | None = None
    inliers: int | None = None
    model: str | None = None
    matcher: str | None = None
    index: str | None = None
    tile_id: str | None = None
    source_id: str | None = None
    localized_at: str | None = None
    reviewer: str | None = None
    reviewed_at: str | None = None
    review_action: str | None = None  # accept | reject of the reviewer, None = automatic only
    # accepted automatically: the pipeline found it confident (calibrated threshold) and the
    # photo is `localized`; False once a person accepted or rejected it (see review_action)
    accepted_auto: bool | None = None
    homography: list[list[float]] | None = None  # photo px -> surroundings px (as stored)
    gcps: list[list[float]] | None = None  # stored (x, y, lon, lat) ground control points
    correspondences: list[list[float]] | None = None  # inliers: (photo x, y, lon, lat)
    thumbnail: bytes | None = field(default=None, repr=False)  # JPEG
    app_version: str = __version__

    @property
    def photo_id(self) -> str:
        """NASA's photo id when known, else the file's stem (what a person calls the photo)."""
        return self.nasa_id or Path(self.file_name).stem

    @property
    def registration_method(self) -> str:
        return "manual-reviewed" if self.review_action else "automatic"

    def properties(self) -> dict[str, Any]:
        """The shared export properties (JSON-serialisable), in `PROPERTY_NAMES` order."""
        lon, lat = self.center_lon, self.center_lat
        if lon is None or lat is None:
            lon, lat = self.footprint.centroid()
        area = self.area_km2 if self.area_km2 is not None else self.footprint.area_km2()
        values = {
            "photo_id": self.photo_id,
            "catalog_id": self.catalog_id,
            "nasa_id": self.nasa_id,
            "file_name": self.file_name,
            "captured_at": self.captured_at,
            "center_lon": round(float(lon), 7),
            "center_lat": round(float(lat), 7),
            "area_km2": round(float(area), 3),
            "status": self.status,
            "accepted_auto": self.accepted_auto,
            "confidence": None if self.confidence is None else round(float(self.confidence), 6),
            "inliers": None if self.inliers is None else int(self.inliers),
            "model": self.model,
            "matcher": self.matcher,
            "index": self.index,
            "tile_id": self.tile_id,
            "source_id": self.source_id,
            "localized_at": self.localized_at,
            "reviewer": self.reviewer,
            "reviewed_at": self.reviewed_at,
            "app_version": self.app_version,
        }
        return {k: values[k] for k in PROPERTY_NAMES}

    # ---- photo pixel -> ground mapping -------------------------------------------------

    def image_size(self) -> tuple[int, int]:
        """(width, height) of the photo, read from the file when the catalogue lacks it."""
        if self.width and self.height:
            return int(self.width), int(self.height)
        if self.path is None:
            raise ValueError(f"{self.file_name}: image size unknown and no file path")
        from astroapp.catalog.photo_reader import photo_header

        return photo_header(self.path).file_size  # the displayed (EXIF-upright) frame

    def ground_homography(self) -> np.ndarray:
        """3x3 homography photo px (edge coordinates) -> Web Mercator metres.

        EarthMatch's homography maps photo pixels to the north-up Web Mercator surroundings,
        whose pixels are linear in Mercator metres: photo -> Mercator is exactly projective,
        so it is recovered from the stored GCPs (least squares) or, without them, from the
        four footprint corners. Longitudes are unwrapped, so x may leave the +-180 degree
        range for photos over the antimeridian.
        """
        w, h = self.image_size()
        pts = _valid_gcps(self.gcps)
        if pts is not None:
            px, lonlat = pts[:, :2], pts[:, 2:]
        else:
            px = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=float)
            lonlat = np.array(self.footprint.corners, dtype=float)
        lons = np.array(unwrap_lons(list(lonlat[:, 0])))
        mx, my = _lonlat_to_merc(lons, lonlat[:, 1])
        return _fit_homography(px, np.column_stack([mx, my]))

    def pixel_to_lonlat(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """Lon/lat (continuous longitudes) of photo pixels, vectorised."""
        hmat = self.ground_homography()
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        pts = np.stack([x.ravel(), y.ravel(), np.ones(x.size)])
        m = hmat @ pts
        lon, lat = _merc_to_lonlat(m[0] / m[2], m[1] / m[2])
        return lon.reshape(x.shape), lat.reshape(y.shape)

    def gcp_grid(self, n: int = 9) -> list[tuple[float, float, float, float]]:
        """An n x n grid of ground control points (photo x, photo y, lon, lat)."""
        if n < 2:
            raise ValueError("a GCP grid needs n >= 2")
        w, h = self.image_size()
        xs, ys = np.meshgrid(np.linspace(0, w, n), np.linspace(0, h, n))
        lon, lat = self.pixel_to_lonlat(xs, ys)
        return [
            (float(a), float(b), float(c), float(d))
            for a, b, c, d in zip(xs.ravel(), ys.ravel(), lon.ravel(), lat.ravel(), strict=True)
        ]

    def fit_error_px(self) -> float | None:
        """RMS residual (photo px) of the stored inlier matches under the fitted mapping.

        The pipeline stores each final inlier as (photo x, photo y, lon, lat) of the matched
        reference point; each is mapped back through the photo -> ground homography and
        compared with where it was detected in the photo. None without matches.
        """
        if not self.correspondences:
            return None
        try:
            corr = np.asarray([list(c)[:4] for c in self.correspondences], dtype=float)
        except (TypeError, ValueError):
            return None
        if corr.ndim != 2 or corr.shape[1] != 4 or len(corr) == 0 or not np.isfinite(corr).all():
            return None
        try:
            inv = np.linalg.inv(self.ground_homography())
        except np.linalg.LinAlgError:
            return None
        lon0 = unwrap_lons([c[0] for c in self.footprint.corners])[0]
        lons = lons_near(corr[:, 2], lon0)
        mx, my = _lonlat_to_merc(lons, corr[:, 3])
        back = apply_h(inv, np.column_stack([mx, my]))
        dx, dy = back[:, 0] - corr[:, 0], back[:, 1] - corr[:, 1]
        return float(np.sqrt(np.mean(dx * dx + dy * dy)))

    def ground_sample_m(self) -> float:
        """Mean ground size of one photo pixel (m): sqrt(footprint area / pixel count)."""
        w, h = self.image_size()
        area = self.area_km2 if self.area_km2 is not None else self.footprint.area_km2()
        return math.sqrt(float(area) * 1e6 / (w * h))

    def position_uncertainty_m(self) -> float | None:
        """Fit error converted to metres on the ground (None without correspondences)."""
        err = self.fit_error_px()
        return None if err is None else err * self.ground_sample_m()


def _valid_gcps(gcps: Any) -> np.ndarray | None:
    """Stored GCPs as an (N, 4) array when they are usable (>= 4 finite x, y, lon, lat)."""
    if not gcps:
        return None
    try:
        arr = np.asarray([list(g)[:4] for g in gcps], dtype=float)
    except (TypeError, ValueError):
        return None
    if arr.ndim != 2 or arr.shape[1] != 4 or len(arr) < 4 or not np.isfinite(arr).all():
        return None
    return arr


def _lonlat_to_merc(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mercator with continuous x: longitudes beyond +-180 map beyond the world edge."""
    lon = np.asarray(lon, dtype=float)
    turns = np.round(lon / 360.0)
    mx, my = lonlat_to_mercator(lon - 360.0 * turns, lat)
    return mx + turns * 2 * WORLD, my


def _merc_to_lonlat(mx: np.ndarray, my: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mx = np.asarray(mx, dtype=float)
    turns = np.round(mx / (2 * WORLD))
    lon, lat = mercator_to_lonlat(mx - turns * 2 * WORLD, my)
    return lon + 360.0 * turns, lat


def _fit_homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares homography src -> dst (OpenCV's DLT; exact for 4 points)."""
    import cv2

    # Normalise the metres so the DLT is well conditioned.
    shift = dst.mean(axis=0)
    scale = float(np.abs(dst - shift).max()) or 1.0
    hmat, _ = cv2.findHomography(src.astype(np.float64), ((dst - shift) / scale).astype(np.float64), 0)
    if hmat is None:
        raise ValueError("the footprint/GCPs do not define a projective mapping")
    denorm = np.array([[scale, 0, shift[0]], [0, scale, shift[1]], [0, 0, 1.0]])
    return denorm @ hmat


# ---- from the catalogue --------------------------------------------------------------------


def records_from_catalog(
    catalog: Any,
    status: str | Sequence[str] | None = None,
    ids: Iterable[int] | None = None,
) -> tuple[list[ExportRecord], list[str]]:
    """Export records of the catalogue's localized photos.

    Returns (records, skipped): photos matching the filters that have no footprint (never
    localized, or every attempt failed) are named in `skipped` rather than exported.
    """
    records: list[ExportRecord] = []
    skipped: list[str] = []
    for photo in catalog.photos(status=status, ids=ids):
        loc = catalog.latest_localization(photo.id)
        if loc is None or not loc.footprint:
            skipped.append(photo.name)
            continue
        try:
            footprint = Footprint.from_list(loc.footprint)
        except (TypeError, ValueError) as exc:
            skipped.append(f"{photo.name} (bad footprint: {exc})")
            continue
        method = loc.method if isinstance(loc.method, dict) else {}
        review = _active_review(catalog.review_events(photo.id))
        records.append(
            ExportRecord(
                catalog_id=photo.id,
                file_name=photo.name,
                footprint=footprint,
                nasa_id=photo.nasa_id,
                path=Path(photo.path),
                width=photo.width,
                height=photo.height,
                captured_at=photo.captured_at,
                center_lon=loc.center_lon,
                center_lat=loc.center_lat,
                area_km2=loc.area_km2,
                status=photo.status,
                confidence=loc.confidence,
                inliers=loc.inliers,
                model=_text(method.get("model")),
                matcher=_text(method.get("matcher")),
                index=_text(method.get("index")),
                tile_id=loc.tile_id,
                source_id=loc.source_id,
                localized_at=loc.created_at,
                reviewer=review.who if review else None,
                reviewed_at=review.at if review else None,
                review_action=review.action if review else None,
                # accepted automatically: confident and no person has decided since
                accepted_auto=bool(loc.accepted_auto) and photo.status == "localized",
                homography=loc.homography,
                gcps=loc.gcps,
                correspondences=loc.correspondences,
                thumbnail=catalog.thumbnail(photo.id),
            )
        )
    return records, skipped


def _active_review(events: Sequence[Any]) -> Any | None:
    """The latest accept/reject that no later undo reverted."""
    undone = {e.undoes for e in events if e.action == "undo" and getattr(e, "undoes", None)}
    for event in reversed(events):
        if event.action in ("accept", "reject") and event.id not in undone:
            return event
    return None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
