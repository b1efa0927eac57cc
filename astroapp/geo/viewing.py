"""What a photo's viewing geometry says about its footprint's size on the ground.

NASA's catalogue gives the lens (focal length), the ISS altitude and the camera's tilt off
nadir (degrees, or a code: NV / LO / HO); EXIF gives the focal length and the camera model.
From these the ground width of the frame follows, to within the tilt's uncertainty. Matching
uses it to choose the scale at which to look for the photo in its candidate's surroundings,
retrieval to choose the tile zooms and the search circle. With nothing known, callers fall
back to searching scales themselves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

EARTH_RADIUS_KM = 6371.0088
DEFAULT_ALTITUDE_KM = 420.0
DEFAULT_SENSOR_WIDTH_MM = 36.0  # full-frame (Nikon D3S/D4/D5/D850/Z9: the ISS's usual bodies)
MAX_TILT_DEG = 80.0

# NASA's tilt codes, as a range of degrees off nadir (an estimate: NASA defines them by what
# the frame shows, "near vertical", "low oblique" (no horizon), "high oblique" (horizon)).
TILT_CODE_RANGES: dict[str, tuple[float, float]] = {
    "NV": (0.0, 15.0),
    "LO": (15.0, 45.0),
    "HO": (45.0, 75.0),
}

# Sensor widths (mm) of camera bodies flown on the ISS, by a lower-case substring of the EXIF
# model. Anything not listed is taken as full frame.
_SENSOR_WIDTH_MM: tuple[tuple[str, float], ...] = (
    ("d2xs", 23.7), ("d2x", 23.7), ("d200", 23.6), ("d300", 23.6), ("d7000", 23.6),
    ("dcs 760", 27.6), ("dcs760", 27.6),
    ("d1", 23.7), ("d3", 36.0), ("d4", 36.0), ("d5", 35.9), ("d6", 35.9),
    ("d800", 35.9), ("d850", 35.9), ("z 9", 35.9), ("z9", 35.9),
)


def sensor_width_mm(camera_model: str | None) -> float:
    """Sensor width for an EXIF camera model (full frame when unknown)."""
    if camera_model:
        m = camera_model.lower()
        for key, width in _SENSOR_WIDTH_MM:
            if key in m:
                return width
    return DEFAULT_SENSOR_WIDTH_MM


def tilt_range(tilt: float | str | None) -> tuple[float, float] | None:
    """A tilt in degrees, or NASA's code, as a (min, max) range in degrees; None if unknown."""
    if tilt is None:
        return None
    if isinstance(tilt, str):
        s = tilt.strip().upper()
        if s in TILT_CODE_RANGES:
            return TILT_CODE_RANGES[s]
        try:
            tilt = float(s)
        except ValueError:
            return None
    t = float(tilt)
    if not math.isfinite(t) or not 0.0 <= t <= MAX_TILT_DEG:
        return None
    return (t, t)


def slant_range_km(altitude_km: float, tilt_deg: float) -> float:
    """Distance from the camera to the ground along a ray `tilt_deg` off nadir (spherical
    Earth); raises ValueError when the ray misses the Earth."""
    r, c = EARTH_RADIUS_KM, EARTH_RADIUS_KM + altitude_km
    t = math.radians(tilt_deg)
    disc = r * r - (c * math.sin(t)) ** 2
    if disc < 0:
        raise ValueError(f"a ray {tilt_deg:.0f} deg off nadir from {altitude_km:.0f} km misses "
                         "the Earth")
    return c * math.cos(t) - math.sqrt(disc)


@dataclass(frozen=True)
class ViewingHints:
    """What is known of how a photo was taken. Every field is optional except the altitude
    (the ISS's usual 420 km when not known)."""

    focal_mm: float | None = None
    tilt_deg: tuple[float, float] | None = None  # (min, max) degrees off nadir
    altitude_km: float = DEFAULT_ALTITUDE_KM
    sensor_width_mm: float = DEFAULT_SENSOR_WIDTH_MM

    def __post_init__(self) -> None:
        if self.focal_mm is not None and not (math.isfinite(self.focal_mm) and self.focal_mm > 0):
            raise ValueError(f"focal length must be > 0 mm, got {self.focal_mm}")
        if self.tilt_deg is not None:
            lo, hi = self.tilt_deg
            if not (0.0 <= lo <= hi <= MAX_TILT_DEG):
                raise ValueError(f"tilt must be between 0 and {MAX_TILT_DEG:.0f} degrees off "
                                 f"nadir, got {lo:g}-{hi:g}")
        if not (math.isfinite(self.altitude_km) and 100.0 <= self.altitude_km <= 2000.0):
            raise ValueError(f"altitude must be between 100 and 2000 km, got {self.altitude_km}")
        if not (math.isfinite(self.sensor_width_mm) and self.sensor_width_mm > 0):
            raise ValueError(f"sensor width must be > 0 mm, got {self.sensor_width_mm}")

    @classmethod
    def create(cls, focal_mm: float | None = None, tilt: float | str | None = None,
               altitude_km: float | None = None, camera_model: str | None = None) -> ViewingHints:
        """Hints from loose values (a tilt in degrees or NASA's code); raises ValueError with a
        clear message for values out of range."""
        if tilt is not None and not isinstance(tilt, str):
            t = float(tilt)
            if not (math.isfinite(t) and 0.0 <= t <= MAX_TILT_DEG):
                raise ValueError(f"tilt must be between 0 and {MAX_TILT_DEG:.0f} degrees off "
                                 f"nadir, got {tilt}")
        return cls(
            focal_mm=None if focal_mm is None else float(focal_mm),
            tilt_deg=tilt_range(tilt),
            altitude_km=float(altitude_km) if altitude_km else DEFAULT_ALTITUDE_KM,
            sensor_width_mm=sensor_width_mm(camera_model),
        )

    @property
    def known(self) -> bool:
        """True when the footprint's size can be estimated (the focal length is known)."""
        return self.focal_mm is not None

    def ground_width_km(self) -> tuple[float, float] | None:
        """(min, max) ground width of the frame's long side across the line of sight, in km,
        over the tilt range (0-50 deg when the tilt is unknown); None without a focal length.

        The along-sight extent of an oblique frame is longer (foreshortening); this is the
        scale at which the frame's centre is seen, which is what matching needs."""
        if self.focal_mm is None:
            return None
        lo, hi = self.tilt_deg if self.tilt_deg is not None else (0.0, 50.0)
        widths = []
        for t in (lo, hi):
            try:
                d = slant_range_km(self.altitude_km, t)
            except ValueError:
                d = slant_range_km(self.altitude_km, 65.0)
            widths.append(d * self.sensor_width_mm / self.focal_mm)
        return (min(widths), max(widths))


def hints_from_metadata(nasa: object | None = None, photo: object | None = None) -> ViewingHints:
    """Hints from what the catalogue holds for a photo: NASA's focal length, tilt (degrees or
    code, `tilt_deg` / `tilt_code`) and altitude first, the photo's EXIF focal length and camera
    model otherwise. Values out of range are dropped, not raised: catalogue data is advisory."""

    def get(obj: object | None, name: str) -> object | None:
        return getattr(obj, name, None) if obj is not None else None

    focal = get(nasa, "focal_length_mm") or get(photo, "focal_length_mm")
    focal_f = float(focal) if isinstance(focal, int | float) and focal > 0 else None
    tilt = get(nasa, "tilt_deg")
    if tilt is None:
        tilt = get(nasa, "tilt_code")
    if tilt_range(tilt) is None:
        tilt = None
    alt = get(nasa, "altitude_km")
    alt_f = float(alt) if isinstance(alt, int | float) and 100.0 <= alt <= 2000.0 else None
    model = get(photo, "camera_model")
    return ViewingHints.create(focal_f, tilt, alt_f, model if isinstance(model, str) else None)
