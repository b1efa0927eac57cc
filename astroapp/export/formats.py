"""The export formats (kept import-light: the CLI builds its parser from it)."""

FORMATS = ("geojson", "geotiff", "html", "csv")
