"""A rendered photo with a known footprint, for the manual georeferencing tests (core and GUI)."""

from __future__ import annotations

from functools import lru_cache

from astroapp.geo.render import Camera, Render, focal_scale_for, render_photo
from astroapp.geo.sources.bluemarble import BlueMarbleSource

W, H = 480, 320


@lru_cache(maxsize=1)
def rendered_photo() -> Render:
    """The Nile delta at 1600 mm, 5 degrees off nadir: about 380 km across."""
    src = BlueMarbleSource()
    cam = Camera(lon=31.0, lat=30.0, focal_mm=1600.0, tilt_deg=5.0, heading_deg=30.0,
                 focal_scale=focal_scale_for(src))
    return render_photo(src, cam, (W, H))
