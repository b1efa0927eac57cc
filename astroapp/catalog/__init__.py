"""Photo catalogue (SQLite), roll import, EXIF, NASA photo ids and NASA metadata CSVs."""

from astroapp.catalog.db import (
    SCHEMA_VERSION,
    STATUSES,
    Catalog,
    CatalogError,
    CatalogReadOnlyError,
    ImportRecord,
    Localization,
    NasaMetadata,
    Photo,
    ReviewEvent,
    StoredCandidate,
    utc_now,
)

__all__ = [
    "SCHEMA_VERSION",
    "STATUSES",
    "Catalog",
    "CatalogError",
    "CatalogReadOnlyError",
    "ImportRecord",
    "Localization",
    "NasaMetadata",
    "Photo",
    "ReviewEvent",
    "StoredCandidate",
    "utc_now",
]
