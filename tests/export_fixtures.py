"""A real catalogue for the export tests: JPEG photos imported by the catalogue's importer,
localized with EarthMatch-like homographies onto Web Mercator surroundings, then reviewed.

The ground truth of every localization is kept (`Truth`): the MercatorGrid and the photo ->
surroundings homography, so tests can check exported geometry against an independent
photo pixel -> lon/lat mapping.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import piexif
from PIL import Image

from astroapp.catalog import Catalog
from astroapp.catalog.importer import import_paths
from astroapp.geo.footprint import Footprint
from astroapp.geo.tiles import MercatorGrid, lonlat_to_mercator

W, H = 640, 480
MARKS = [(80, 60), (320, 240), (560, 420), (560, 60), (80, 420), (200, 330)]  # photo px
METHOD = {"model": "earthloc", "index": "alps-2021", "matcher": "sift"}


@dataclass
class Truth:
    photo_id: int
    nasa_id: str
    path: Path
    grid: MercatorGrid
    homography: np.ndarray  # photo px -> surroundings px
    footprint: Footprint
    noise_px: float

    def pixel_to_lonlat(self, x, y):
        pts = cv2.perspectiveTransform(
            np.column_stack([np.ravel(x), np.ravel(y)]).reshape(-1, 1, 2).astype(np.float64),
            self.homography,
        ).reshape(-1, 2)
        return self.grid.pixel_to_lonlat(pts[:, 0], pts[:, 1])


def make_photo(path: Path, seed: int, when: str) -> None:
    """A textured JPEG with bright square marks at `MARKS` and an EXIF capture time."""
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.integers(30, 120, (H // 16, W // 16, 3), dtype=np.uint8), (W, H),
                      interpolation=cv2.INTER_LINEAR)
    for x, y in MARKS:
        base[y - 5:y + 5, x - 5:x + 5] = 255
    exif = piexif.dump({"Exif": {piexif.ExifIFD.DateTimeOriginal: when.encode()}})
    Image.fromarray(base).save(path, "JPEG", quality=95, exif=exif)


def _grid_around(lon: float, lat: float, half_km: float = 300.0) -> MercatorGrid:
    mx, my = lonlat_to_mercator(np.array([lon]), np.array([lat]))
    half = half_km * 1000.0 / np.cos(np.radians(lat))
    return MercatorGrid((float(mx[0] - half), float(my[0] - half),
                         float(mx[0] + half), float(my[0] + half)), 1536, 1536)


def _homography(seed: int) -> np.ndarray:
    """An oblique view: the photo's corners onto a rotated, skewed quadrilateral."""
    rng = np.random.default_rng(seed)
    src = np.float32([[0, 0], [W, 0], [W, H], [0, H]])
    quad = np.float32([[520, 560], [1010, 470], [1060, 900], [560, 1010]])
    quad += rng.uniform(-30, 30, quad.shape).astype(np.float32)
    return cv2.getPerspectiveTransform(src, quad).astype(np.float64)


def _localize(catalog: Catalog, photo_id: int, grid: MercatorGrid, hmat: np.ndarray,
              seed: int, noise: float) -> Footprint:
    """Store what the pipeline stores: footprint, homography, GCP grid, inlier matches."""
    corners = cv2.perspectiveTransform(
        np.float64([[[0, 0]], [[W, 0]], [[W, H]], [[0, H]]]), hmat).reshape(-1, 2)
    lon, lat = grid.pixel_to_lonlat(corners[:, 0], corners[:, 1])
    fp = Footprint(tuple((float(a), float(b)) for a, b in zip(lon, lat, strict=True)))
    xs, ys = np.meshgrid(np.linspace(0, W, 5), np.linspace(0, H, 5))
    sp = cv2.perspectiveTransform(np.column_stack([xs.ravel(), ys.ravel()])
                                  .reshape(-1, 1, 2), hmat).reshape(-1, 2)
    glon, glat = grid.pixel_to_lonlat(sp[:, 0], sp[:, 1])
    gcps = [[float(a), float(b), float(c), float(d)]
            for a, b, c, d in zip(xs.ravel(), ys.ravel(), glon, glat, strict=True)]
    rng = np.random.default_rng(seed)
    pts = rng.uniform([0, 0], [W, H], (80, 2))
    proj = cv2.perspectiveTransform(pts.reshape(-1, 1, 2), hmat).reshape(-1, 2)
    proj += rng.normal(0, noise, proj.shape)
    # As the pipeline stores them: photo px -> lon/lat of the matched reference point.
    mlon, mlat = grid.pixel_to_lonlat(proj[:, 0], proj[:, 1])
    corr = np.column_stack([pts, mlon, mlat])
    catalog.add_localization(
        photo_id, method=METHOD, tile_id=f"10_{seed:04d}_0100@2021", source_id="sentinel2-2021",
        angle=0, rank=0, footprint=fp, confidence=0.97, inliers=80, homography=hmat,
        gcps=gcps, correspondences=corr, timings={"match": 0.1}, accepted_auto=True,
    )
    return fp


def build_catalog(root: Path) -> tuple[Path, dict[str, Truth]]:
    """Catalogue with photos: accepted (Alps), localized over the antimeridian (Fiji),
    rejected (Texas), accepted-then-undone (Gobi) and one never localized."""
    photos = root / "photos"
    photos.mkdir(parents=True)
    specs = [  # nasa id, seed, capture time, centre, review
        ("ISS064-E-358", 1, "2021:03:04 05:06:07", (10.5, 46.0), "accept"),
        ("ISS030-E-12345", 2, "2012:01:15 22:10:00", (179.9, -17.0), None),
        ("ISS045-E-100", 3, "2015:09:30 18:00:30", (-96.0, 30.0), "reject"),
        ("ISS050-E-7", 4, "2016:12:01 01:02:03", (105.0, 40.0), "undo"),
        ("ISS060-E-999", 5, "2019:07:07 07:07:07", None, None),
    ]
    for nasa, seed, when, _, _ in specs:
        make_photo(photos / f"{nasa}.jpg", seed, when)
    path = root / "catalog.sqlite"
    truth: dict[str, Truth] = {}
    with Catalog(path) as catalog:
        import_paths(catalog, [photos], workers=1)
        for nasa, seed, _, centre, review in specs:
            (photo,) = catalog.photos_by_nasa_id(nasa)
            if centre is None:
                continue
            grid = _grid_around(*centre)
            hmat = _homography(seed)
            fp = _localize(catalog, photo.id, grid, hmat, seed, noise=0.8)
            catalog.set_status(photo.id, "localized")
            if review == "accept":
                catalog.record_review(photo.id, "alice", "accept", "looks right")
            elif review == "reject":
                catalog.record_review(photo.id, "bob", "reject")
            elif review == "undo":
                catalog.record_review(photo.id, "carol", "accept")
                catalog.undo_review(photo.id, "carol")
            truth[nasa] = Truth(photo.id, nasa, Path(photo.path), grid, hmat, fp, 0.8)
    return path, truth
