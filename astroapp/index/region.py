"""Geographic prior: the circle of ground an ISS camera can see around its nadir point."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

EARTH_RADIUS_KM = 6371.0088
ISS_ALTITUDE_KM = 420.0


@dataclass(frozen=True)
class Region:
    """A circle on the sphere: (lon, lat) centre in degrees, radius in km."""

    lon: float
    lat: float
    radius_km: float

    def __post_init__(self) -> None:
        if not (-90.0 <= self.lat <= 90.0) or not math.isfinite(self.lon):
            raise ValueError(f"region centre ({self.lon}, {self.lat}) is not a valid lon/lat")
        if not self.radius_km > 0:
            raise ValueError(f"region radius must be > 0 km, got {self.radius_km}")

    @classmethod
    def around_nadir(
        cls,
        lon: float,
        lat: float,
        altitude_km: float = ISS_ALTITUDE_KM,
        max_tilt_deg: float = 50.0,
        margin_km: float = 0.0,
    ) -> Region:
        """The circle reachable by the optical axis of a camera tilted up to max_tilt_deg."""
        return cls(lon, lat, visible_radius_km(altitude_km, max_tilt_deg) + margin_km)

    def distances_km(self, lons: np.ndarray, lats: np.ndarray) -> np.ndarray:
        return haversine_km(self.lon, self.lat, lons, lats)


def visible_radius_km(altitude_km: float = ISS_ALTITUDE_KM, max_tilt_deg: float = 50.0) -> float:
    """Great-circle distance from nadir to where a ray tilted by max_tilt_deg meets the Earth.

    Spherical Earth: the ray from height h at off-nadir angle t hits the sphere at Earth-centre
    angle g = asin((R+h)/R * sin t) - t. Past the horizon the ray misses; the horizon distance
    is then returned.
    """
    if altitude_km <= 0:
        raise ValueError(f"altitude must be > 0 km, got {altitude_km}")
    if not 0 <= max_tilt_deg < 90:
        raise ValueError(f"max tilt must be in [0, 90) degrees, got {max_tilt_deg}")
    r = EARTH_RADIUS_KM
    t = math.radians(max_tilt_deg)
    s = (r + altitude_km) / r * math.sin(t)
    if s >= 1.0:  # beyond the horizon: the farthest visible ground
        return r * math.acos(r / (r + altitude_km))
    return r * (math.asin(s) - t)


def haversine_km(lon0: float, lat0: float, lons: np.ndarray, lats: np.ndarray) -> np.ndarray:
    lon0r, lat0r = math.radians(lon0), math.radians(lat0)
    lonr, latr = np.radians(lons), np.radians(lats)
    a = (
        np.sin((latr - lat0r) / 2) ** 2
        + math.cos(lat0r) * np.cos(latr) * np.sin((lonr - lon0r) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))
