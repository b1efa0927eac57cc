"""Exports of localized photos: GeoJSON, CSV, GeoTIFF (GCPs + warped) and an offline HTML map.

Every file is written atomically (`atomic.atomic_path`). Exporters work on `ExportRecord`s;
`export_catalog` reads them from the catalogue and dispatches on the format, so the CLI and
the GUI share one entry point.
"""

from __future__ import annotations

import importlib
from typing import Any

from astroapp.export.formats import FORMATS

# Names resolved on first use (PEP 562), so that `import astroapp.export` (the CLI parser, the
# GUI menus) does not pull in folium and rasterio before an export is actually made.
_LAZY = {
    "ExportCancelled": "geotiff",
    "PROPERTY_NAMES": "records",
    "ExportRecord": "records",
    "ExportResult": "run",
    "atomic_path": "astroapp.atomic",
    "atomic_text": "astroapp.atomic",
    "export_catalog": "run",
    "export_geotiffs": "geotiff",
    "export_records": "run",
    "feature_collection": "geojson",
    "records_from_catalog": "records",
    "render_html": "html_map",
    "write_csv": "csv_export",
    "write_gcp_geotiff": "geotiff",
    "write_geojson": "geojson",
    "write_html_map": "html_map",
    "write_warped_geotiff": "geotiff",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = _LAZY[name]
        if "." not in module:
            module = f"astroapp.export.{module}"
        return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module 'astroapp.export' has no attribute {name!r}")


__all__ = ["FORMATS", *_LAZY]
