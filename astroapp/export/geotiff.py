"""GeoTIFFs of localized photos, in the spirit of NASA's automatic registrations.

Two files per photo:
- `<id>_gcps.tif`: the original pixels, untouched apart from EXIF orientation (written in the
  displayed frame, the one the catalogue's size and every stored pixel coordinate use), with
  an n x n grid of ground control points in EPSG:4326 (an oblique photo has no affine georeference; GIS tools warp it
  on the fly from the GCPs);
- `<id>_warped.tif`: the photo warped north-up onto a lon/lat grid (geotransform, alpha band
  marking pixels outside the photo).
Both are tiled and compressed, and tagged with how the registration was made (method,
reference imagery, acquisition time, fit error, position uncertainty, transform).

Memory stays bounded for any photo size: pixels are copied in row strips, and the warp reads
the GCP GeoTIFF through GDAL's warper (`rasterio.warp.reproject` from the dataset's bands,
with a memory limit), one output strip at a time. The GCP grid is sampled from the localization's projective photo -> Web Mercator
mapping and the warp interpolates it with a thin-plate spline, which is exact at the GCPs and
well under a pixel between them.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import numpy as np
import rasterio
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import from_origin
from rasterio.warp import reproject
from rasterio.windows import Window
from rasterio.windows import transform as window_transform
from shapely.geometry import Polygon

from astroapp.atomic import atomic_path, remove_dead_temporaries
from astroapp.catalog.photo_reader import PhotoReadError, PhotoRows, open_photo_rows, photo_header
from astroapp.export.records import ExportRecord
from astroapp.progress import Progress, ProgressFn, ignore

WGS84 = CRS.from_epsg(4326)
STRIP_ROWS = 512  # rows copied / warped per step
WARP_MEM_MB = 64
GCP_GRID = 13  # n x n control points: TPS between them stays well under a pixel


class ExportCancelled(Exception):
    """The user cancelled; the file being written was discarded."""


@dataclass
class GeoTiffReport:
    """What a batch export wrote and what failed (one bad photo does not stop the rest)."""

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (photo, reason)
    cancelled: bool = False


def _check(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise ExportCancelled("export cancelled")


def registration_tags(record: ExportRecord, kind: str) -> dict[str, str]:
    """Metadata tags (GDAL default domain) describing the registration."""
    fit = record.fit_error_px()
    unc = record.position_uncertainty_m()
    hmat = record.ground_homography()
    hmat = hmat / hmat[2, 2]
    tags = {
        "PHOTO_ID": record.photo_id,
        "NASA_ID": record.nasa_id or "",
        "FILE_NAME": record.file_name,
        "ACQUISITION_TIME": record.captured_at or "unknown",
        "REGISTRATION_METHOD": record.registration_method,
        "REGISTRATION_STATUS": record.status,
        "REVIEWER": record.reviewer or "",
        "REVIEW_TIME": record.reviewed_at or "",
        "REFERENCE_IMAGERY": _reference(record),
        "RETRIEVAL_MODEL": record.model or "",
        "MATCHER": record.matcher or "",
        "INDEX": record.index or "",
        "CONFIDENCE": "" if record.confidence is None else f"{record.confidence:.6f}",
        "INLIERS": "" if record.inliers is None else str(int(record.inliers)),
        "FIT_ERROR_RMS_PX": "unknown" if fit is None else f"{fit:.3f}",
        "POSITION_UNCERTAINTY_M": "unknown" if unc is None else f"{unc:.1f}",
        "TRANSFORM": "projective, photo pixel (edge coordinates) -> EPSG:3857 metres: "
        + json.dumps([[float(f"{v:.10g}") for v in row] for row in hmat.tolist()]),
        "FOOTPRINT": json.dumps(record.footprint.to_list()),
        "LOCALIZED_AT": record.localized_at or "",
        "KIND": kind,
        "TIFFTAG_SOFTWARE": f"astroapp {record.app_version}",
        "TIFFTAG_IMAGEDESCRIPTION": f"{record.photo_id} ({record.file_name}), {kind}, "
        f"registration {record.registration_method}",
    }
    stamp = _tiff_datetime(record.captured_at)
    if stamp:
        tags["TIFFTAG_DATETIME"] = stamp
    return tags


def write_gcp_geotiff(
    record: ExportRecord,
    out: str | Path,
    n: int = GCP_GRID,
    compress: str = "deflate",
    on_strip: Callable[[int], None] | None = None,
    cancel: threading.Event | None = None,
) -> Path:
    """Original pixels + an n x n GCP grid (EPSG:4326), written atomically."""
    if record.path is None:
        raise ValueError(f"{record.file_name}: no image file recorded")
    record, _ = displayed_frame(record)
    with _open_photo(record) as src:
        bands = src.bands
        width, height = record.image_size()
        profile = _tiff_profile(width, height, len(bands), src.dtype, compress)
        gcps = [
            GroundControlPoint(row=y, col=x, x=lon, y=lat, id=str(i + 1))
            for i, (x, y, lon, lat) in enumerate(record.gcp_grid(n))
        ]
        with atomic_path(out) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)  # GCPs come next
            with rasterio.open(tmp, "w", **profile) as dst:
                dst.gcps = (gcps, WGS84)
                if len(bands) == 3:
                    dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
                dst.update_tags(**registration_tags(record, "original pixels with GCPs"))
                dst.update_tags(GCP_COUNT=str(len(gcps)), GCP_GRID=f"{n}x{n}")
                for row in range(0, height, STRIP_ROWS):
                    _check(cancel)
                    rows = min(STRIP_ROWS, height - row)
                    dst.write(src.read(row, rows), window=Window(0, row, width, rows))
                    if on_strip is not None:
                        on_strip(row)
                _add_overviews(dst)
    return Path(out)


def warped_grid(record: ExportRecord, max_pixels: int | None = None) -> tuple[rasterio.Affine, int, int]:
    """North-up lon/lat grid covering the footprint at about the photo's own resolution.

    Square pixels in degrees; longitudes continuous (a photo over the antimeridian gets a
    grid such as 179.5..180.5, which GDAL handles).
    """
    w, h = record.image_size()
    t = np.linspace(0.0, 1.0, 65)
    edge_x = np.concatenate([t * w, np.full_like(t, w), (1 - t) * w, np.zeros_like(t)])
    edge_y = np.concatenate([np.zeros_like(t), t * h, np.full_like(t, h), (1 - t) * h])
    lon, lat = record.pixel_to_lonlat(edge_x, edge_y)
    west, east = float(lon.min()), float(lon.max())
    south, north = float(lat.min()), float(lat.max())
    area = Polygon(np.column_stack([lon, lat])).area
    res = math.sqrt(area / (w * h)) if area > 0 else (east - west) / w
    width, height = math.ceil((east - west) / res), math.ceil((north - south) / res)
    if max_pixels and width * height > max_pixels:
        scale = math.sqrt(width * height / max_pixels)
        res *= scale
        width, height = math.ceil((east - west) / res), math.ceil((north - south) / res)
    return from_origin(west, north, res, res), max(width, 1), max(height, 1)


def write_warped_geotiff(
    record: ExportRecord,
    gcp_tif: str | Path,
    out: str | Path,
    max_pixels: int | None = 64_000_000,
    compress: str = "deflate",
    resampling: Resampling = Resampling.bilinear,
    cancel: threading.Event | None = None,
) -> Path:
    """Warp the GCP GeoTIFF north-up onto a lon/lat grid with an alpha band, atomically."""
    transform, width, height = warped_grid(record, max_pixels)
    with rasterio.open(gcp_tif) as src:
        gcps, gcp_crs = src.gcps
        if not gcps:
            raise ValueError(f"{gcp_tif}: has no ground control points")
        bands = list(range(1, src.count + 1))
        count = src.count + 1
        profile = _tiff_profile(width, height, count, src.dtypes[0], compress)
        profile.update(transform=transform, crs=WGS84)
        if src.count == 3:
            profile["alpha"] = "YES"
        with atomic_path(out) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            if src.count == 3:
                dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue,
                                   ColorInterp.alpha]
            else:
                dst.colorinterp = [ColorInterp.gray, ColorInterp.alpha]
            tags = registration_tags(record, "warped north-up, alpha = inside the photo")
            tags["WARP"] = "GDAL thin-plate spline through the GCP grid, " + resampling.name
            dst.update_tags(**tags)
            # One output strip at a time; GDAL reads only the source pixels each strip needs.
            for row in range(0, height, STRIP_ROWS):
                _check(cancel)
                win = Window(0, row, width, min(STRIP_ROWS, height - row))
                block = np.zeros((count, int(win.height), width), dtype=src.dtypes[0])
                reproject(
                    rasterio.band(src, bands),
                    block,
                    gcps=gcps,
                    src_crs=gcp_crs,
                    dst_transform=window_transform(win, transform),
                    dst_crs=WGS84,
                    dst_alpha=count,
                    resampling=resampling,
                    warp_mem_limit=WARP_MEM_MB,
                    SRC_METHOD="GCP_TPS",
                )
                dst.write(block, window=win)
            _add_overviews(dst)
    return Path(out)


def export_geotiffs(
    records: Iterable[ExportRecord],
    out_dir: str | Path,
    gcp_grid: int = GCP_GRID,
    warped: bool = True,
    max_pixels: int | None = 64_000_000,
    compress: str = "deflate",
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> GeoTiffReport:
    """`<id>_gcps.tif` and `<id>_warped.tif` per photo into `out_dir`.

    `progress` gets two events (stage "export", `item` the photo's id as exported,
    `photo_id` its catalogue id) per photo: one as it starts (`done` = photos finished
    before it) and one when it is finished (message written/failed/cancelled, `result` the
    files written for it).

    `cancel` (a threading.Event) stops between row strips: the file in progress is
    discarded, finished photos stay, and the report says `cancelled`.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_dead_temporaries(out_dir)  # what a killed export left
    records = list(records)
    names = file_stems(records)
    report = GeoTiffReport()
    emit = progress or ignore
    for i, (rec, stem) in enumerate(zip(records, names, strict=True)):
        emit(Progress("export", i, len(records), item=rec.photo_id, message="writing GeoTIFFs",
                      photo_id=rec.catalog_id))
        n_written, outcome = len(report.written), "written"
        try:
            if rec.path is not None:
                rec, _ = displayed_frame(rec)  # the warped grid needs the displayed size too
            gcp_path = write_gcp_geotiff(rec, out_dir / f"{stem}_gcps.tif", n=gcp_grid,
                                         compress=compress, cancel=cancel)
            report.written.append(gcp_path)
            if warped:
                report.written.append(write_warped_geotiff(
                    rec, gcp_path, out_dir / f"{stem}_warped.tif", max_pixels,
                    compress=compress, cancel=cancel))
        except ExportCancelled:
            report.cancelled = True
            emit(Progress("export", i, len(records), item=rec.photo_id, message="cancelled",
                          photo_id=rec.catalog_id))
            break
        except (OSError, ValueError, rasterio.errors.RasterioError) as exc:
            report.failed.append((rec.file_name, str(exc)))
            outcome = f"failed: {exc}"
        emit(Progress("export", i + 1, len(records), item=rec.photo_id, message=outcome,
                      photo_id=rec.catalog_id, result=report.written[n_written:]))
    return report


def file_stems(records: Sequence[ExportRecord]) -> list[str]:
    """Safe, unique file stems: the photo id, plus the catalogue id where ids repeat."""
    stems = [re.sub(r"[^A-Za-z0-9._-]+", "_", r.photo_id).strip("._") or "photo" for r in records]
    seen: dict[str, int] = {}
    for s in stems:
        seen[s] = seen.get(s, 0) + 1
    return [s if seen[s] == 1 else f"{s}_{r.catalog_id}" for s, r in zip(stems, records, strict=True)]


def _add_overviews(dst: rasterio.io.DatasetWriter, smallest: int = 512) -> None:
    """Internal overviews (GIS tools display large photos without reading every pixel)."""
    factors = []
    f = 2
    while max(dst.width, dst.height) / f >= smallest:
        factors.append(f)
        f *= 2
    if factors:
        dst.build_overviews(factors, Resampling.average)
        dst.update_tags(ns="rio_overview", resampling="average")


def displayed_frame(record: ExportRecord) -> tuple[ExportRecord, int]:
    """The record with the photo's displayed (EXIF-upright) size, and the file's EXIF
    orientation. Catalogues imported before the size was stored upright have the stored
    size of a quarter-turned photo: that is accepted as the same file."""
    try:
        header = photo_header(record.path)  # the one photo reader's frame and pixel limit
    except PhotoReadError as exc:
        raise ValueError(f"{record.file_name}: {exc}") from exc
    stored, shown, orientation = header.stored_size, header.file_size, header.orientation
    if record.width and record.height and (record.width, record.height) not in (shown, stored):
        raise ValueError(
            f"{record.file_name}: file is {shown[0]}x{shown[1]} px but the catalogue says "
            f"{record.width}x{record.height} (file changed since import?)"
        )
    return replace(record, width=shown[0], height=shown[1]), orientation


@contextlib.contextmanager
def _open_photo(record: ExportRecord) -> Iterator[PhotoRows]:
    """The photo's displayed rows at full resolution, through the one photo reader."""
    try:
        with open_photo_rows(record.path) as rows:
            yield rows
    except PhotoReadError as exc:
        raise ValueError(f"{record.file_name}: {exc}") from exc

def _tiff_profile(width: int, height: int, count: int, dtype: str, compress: str) -> dict:
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": dtype,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": compress,
        "interleave": "pixel",
        "BIGTIFF": "IF_SAFER",
    }
    if compress.lower() in ("deflate", "lzw"):
        profile["predictor"] = 2
    if count >= 3:
        profile["photometric"] = "RGB"
    return profile


def _reference(record: ExportRecord) -> str:
    parts = [p for p in (record.source_id, record.tile_id) if p]
    return " / tile ".join(parts) if parts else "unknown"


def _tiff_datetime(iso: str | None) -> str | None:
    """TIFF's `YYYY:MM:DD HH:MM:SS` from the catalogue's ISO 8601 UTC."""
    if not iso:
        return None
    try:
        dt = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt.strftime("%Y:%m:%d %H:%M:%S")
