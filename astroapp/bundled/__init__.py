"""Data shipped with astroapp, as package data read through importlib.resources.

The files live in the repository's top-level `models/` (retrieval weights, model card, matcher
calibrations) and `resources/` (vendored Leaflet); pyproject.toml maps those folders to the
subpackages `astroapp.bundled.models` and `astroapp.bundled.resources`, so a wheel carries them
and an editable install finds them in the checkout.
"""
