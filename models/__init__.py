"""Installed as `astroapp.bundled.models` (see pyproject.toml): bundled weights and calibrations."""
