"""Installed as `astroapp.bundled.resources` (see pyproject.toml): vendored static assets."""
