"""Synthetic astronaut photographs rendered from any tile source, with their true footprint.

Geometry: a pinhole camera above a spherical Earth (R = 6371 km; the ellipsoid's flattening
moves ground points by < 0.2 % of the altitude, far below what the imagery resolves), at ISS
altitude (~420 km). The camera tilts off-nadir by `tilt_deg` towards the azimuth `heading_deg`
(clockwise from north); the top of the image faces that azimuth (for a nadir shot, the
heading is simply the direction of the image's "up"). The sensor is full frame, 36 x 24 mm;
the image always shows the whole frame (a square `size` squashes it, as EarthLoc does with
real queries).

Focal scaling: real ISS photos are matched against Sentinel-2 tiles at ~150 m/px (zoom 10).
Imagery of coarser resolution would show nothing at real footprints, so the effective focal
length is `focal_mm / focal_scale` with `focal_scale = source_gsd / 152.9 m` (at least 1).
The bundled Blue Marble world (~7.4 km/px) gets ~48.5: a nominal 1150 mm lens then sees
~650 km across, like a ~24 mm lens (the bundled world's database blocks are cut at zooms
6-8, 2500-625 km wide, around these footprints, as EarthLoc's are around real photos').
Nominal focal lengths whose frame would reach past the horizon are rejected (`Camera.check`),
so with the bundled world `random_camera` draws long lenses (~550 mm and up) and tilts up
to ~21 deg (the longer the lens, the more tilt).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import cv2
import numpy as np

from astroapp.geo.footprint import Footprint, wrap_lon
from astroapp.geo.places import Split, place_split
from astroapp.geo.tiles import WORLD, lonlat_to_mercator

EARTH_RADIUS_KM = 6371.0
ISS_ALTITUDE_KM = 420.0
ISS_INCLINATION_DEG = 51.64
SENSOR_MM = (36.0, 24.0)
REFERENCE_GSD_M = 2 * WORLD / (256 * 2**10)  # zoom-10 tiles at the equator, ~152.9 m/px
MAX_OFF_NADIR_DEG = 64.0  # corner rays beyond this graze the horizon (69.8 deg at 420 km)
MAP_STEP = 8  # geometry is computed every MAP_STEP px and interpolated (smooth below horizon)


@dataclass(frozen=True)
class Camera:
    """Where the camera is and how it looks. Angles in degrees, lengths as named."""

    lon: float  # nadir point
    lat: float
    altitude_km: float = ISS_ALTITUDE_KM
    focal_mm: float = 400.0  # nominal (what the EXIF says)
    tilt_deg: float = 0.0  # off-nadir angle of the optical axis
    heading_deg: float = 0.0  # azimuth the camera tilts towards / image top faces
    focal_scale: float = 1.0  # effective focal = focal_mm / focal_scale (see module doc)
    sensor_mm: tuple[float, float] = SENSOR_MM

    @property
    def effective_focal_mm(self) -> float:
        return self.focal_mm / self.focal_scale

    def to_dict(self) -> dict:
        d = asdict(self)
        d["sensor_mm"] = list(self.sensor_mm)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Camera:
        d = dict(d)
        if "sensor_mm" in d:
            d["sensor_mm"] = tuple(d["sensor_mm"])
        return cls(**d)

    # geometry ---------------------------------------------------------------------------
    def _frame(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Camera centre (km, Earth-centred) and its forward, right, up unit vectors."""
        lon, lat = math.radians(self.lon), math.radians(self.lat)
        u = np.array([math.cos(lat) * math.cos(lon), math.cos(lat) * math.sin(lon), math.sin(lat)])
        e = np.array([-math.sin(lon), math.cos(lon), 0.0])
        n = np.cross(u, e)
        h, t = math.radians(self.heading_deg), math.radians(self.tilt_deg)
        d = math.cos(h) * n + math.sin(h) * e
        forward = -math.cos(t) * u + math.sin(t) * d
        up = math.cos(t) * d + math.sin(t) * u
        right = np.cross(forward, up)
        centre = (EARTH_RADIUS_KM + self.altitude_km) * u
        return centre, forward, right, up

    def rays(self, x: np.ndarray, y: np.ndarray, width: int, height: int) -> np.ndarray:
        """Unit ray directions (..., 3) for continuous pixel coords ((0,0) = top-left corner)."""
        _, f, r, u = self._frame()
        sw, sh = self.sensor_mm
        sx = (np.asarray(x, np.float64) / width - 0.5) * sw
        sy = (0.5 - np.asarray(y, np.float64) / height) * sh
        d = (self.effective_focal_mm * f + sx[..., None] * r + sy[..., None] * u)
        return d / np.linalg.norm(d, axis=-1, keepdims=True)

    def pixel_to_lonlat(self, x, y, width: int, height: int
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ground (lon, lat) seen at pixels, and a mask of rays that hit the Earth."""
        c = self._frame()[0]
        d = self.rays(x, y, width, height)
        b = d @ c
        disc = b * b - (c @ c - EARTH_RADIUS_KM**2)
        hit = (disc >= 0) & (b < 0)
        t = -b - np.sqrt(np.maximum(disc, 0.0))
        p = c + t[..., None] * d
        lat = np.degrees(np.arcsin(np.clip(p[..., 2] / EARTH_RADIUS_KM, -1, 1)))
        lon = np.degrees(np.arctan2(p[..., 1], p[..., 0]))
        return lon, lat, hit

    def lonlat_to_pixel(self, lon, lat, width: int, height: int
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Project ground points into the image; mask of points in front of and seen by it."""
        lon, lat = np.radians(np.asarray(lon, np.float64)), np.radians(np.asarray(lat, np.float64))
        p = EARTH_RADIUS_KM * np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon),
                                        np.sin(lat)], axis=-1)
        c, f, r, u = self._frame()
        v = p - c
        zc = v @ f
        with np.errstate(divide="ignore", invalid="ignore"):
            sx = self.effective_focal_mm * (v @ r) / zc
            sy = self.effective_focal_mm * (v @ u) / zc
        sw, sh = self.sensor_mm
        x = (sx / sw + 0.5) * width
        y = (0.5 - sy / sh) * height
        visible = (zc > 0) & (np.einsum("...i,...i->...", v, p) < 0)
        return x, y, visible

    def footprint(self, width: int = 3, height: int = 2) -> Footprint:
        """Ground points of the image corners, TL, TR, BR, BL (independent of pixel count)."""
        xs = np.array([0.0, width, width, 0.0])
        ys = np.array([0.0, 0.0, height, height])
        lon, lat, hit = self.pixel_to_lonlat(xs, ys, width, height)
        if not hit.all():
            raise ValueError("the frame's corners miss the Earth: lower the tilt or use a "
                             "longer focal length")
        return Footprint(tuple(zip(lon.tolist(), lat.tolist(), strict=True)))  # type: ignore[arg-type]

    def max_off_nadir_deg(self) -> float:
        """Largest angle between the nadir and a corner ray."""
        c = self._frame()[0]
        d = self.rays(np.array([0.0, 1.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0, 1.0]), 1, 1)
        return float(np.degrees(np.arccos(np.clip(-(d @ c) / np.linalg.norm(c), -1, 1))).max())

    def check(self) -> None:
        """ValueError unless the whole frame sees the ground well below the horizon."""
        if not -90 <= self.lat <= 90 or self.altitude_km <= 0 or self.focal_mm <= 0:
            raise ValueError(f"invalid camera {self}")
        if self.max_off_nadir_deg() > MAX_OFF_NADIR_DEG:
            raise ValueError(
                f"frame reaches {self.max_off_nadir_deg():.0f} deg off nadir (max "
                f"{MAX_OFF_NADIR_DEG:.0f}): lower the tilt or use a longer focal length "
                f"(effective {self.effective_focal_mm:.1f} mm)")


@dataclass(frozen=True)
class Augment:
    """Ranges of the photographic effects; a render draws each from its rng."""

    color: float = 1.0  # strength of colour/gamma/saturation shifts (0: none)
    haze: tuple[float, float] = (0.0, 0.3)
    cloud_cover: tuple[float, float] = (0.0, 0.35)
    cloud_probability: float = 0.6
    blur_sigma: tuple[float, float] = (0.0, 1.2)
    noise_sigma: tuple[float, float] = (0.0, 3.0)


NO_AUGMENT = Augment(color=0.0, haze=(0, 0), cloud_cover=(0, 0), cloud_probability=0.0,
                     blur_sigma=(0, 0), noise_sigma=(0, 0))


@dataclass(frozen=True, eq=False)
class Render:
    image: np.ndarray  # (H, W, 3) RGB uint8
    footprint: Footprint  # TL, TR, BR, BL ground points of the image corners
    camera: Camera
    effects: dict = field(default_factory=dict)  # what augmentation drew (haze, clouds...)


def focal_scale_for(source) -> float:
    """Effective-focal divisor for a source's imagery resolution (see module doc)."""
    gsd = getattr(source, "gsd_m", None)
    if not gsd:
        return 1.0
    return max(1.0, float(gsd) / REFERENCE_GSD_M)


def _size(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    w, h = size
    return int(w), int(h)


def render_photo(source, camera: Camera, size: int | tuple[int, int] = 512,
                 rng: np.random.Generator | None = None,
                 augment: Augment | None = None) -> Render:
    """Render what `camera` sees of `source`; `size` is (width, height) or a square side.

    `augment=None` applies the default `Augment()` ranges when an rng is given and none
    without one; pass `NO_AUGMENT` for the clean geometry.
    """
    camera.check()
    width, height = _size(size)
    if augment is None:
        augment = Augment() if rng is not None else NO_AUGMENT
    rng = rng if rng is not None else np.random.default_rng(0)
    # Geometry on a coarse grid of continuous pixel positions (edges included).
    gx = np.linspace(0, width, math.ceil(width / MAP_STEP) + 1)
    gy = np.linspace(0, height, math.ceil(height / MAP_STEP) + 1)
    xx, yy = np.meshgrid(gx, gy)
    lon, lat, hit = camera.pixel_to_lonlat(xx, yy, width, height)
    mx, my = lonlat_to_mercator(lon, lat)
    nx, _ = lonlat_to_mercator(np.array([camera.lon]), np.array([camera.lat]))
    mx = mx + np.round((nx[0] - mx) / (2 * WORLD)) * 2 * WORLD  # continuous across 180 deg
    # Read the covering mercator box at the resolution of the photo's finest part.
    xmin, xmax, ymin, ymax = mx.min(), mx.max(), my.min(), my.max()
    step_x = np.hypot(np.diff(mx, axis=1), np.diff(my, axis=1)) / np.diff(gx)[None, :]
    res = float(np.percentile(step_x, 10))
    side_cap = 4 * max(width, height)
    bw = int(np.clip(math.ceil((xmax - xmin) / res), 16, side_cap))
    bh = int(np.clip(math.ceil((ymax - ymin) / res), 16, side_cap))
    pad_x, pad_y = 2 * (xmax - xmin) / bw, 2 * (ymax - ymin) / bh
    box = (xmin - pad_x, ymin - pad_y, xmax + pad_x, ymax + pad_y)
    bw, bh = bw + 4, bh + 4
    imagery = source.read_mercator(box, bw, bh)
    # Coarse maps into box pixels (OpenCV centres at integers), then interpolate per pixel.
    map_x = ((mx - box[0]) / (box[2] - box[0]) * bw - 0.5).astype(np.float32)
    map_y = ((box[3] - my) / (box[3] - box[1]) * bh - 0.5).astype(np.float32)
    map_x[~hit] = -1e4
    map_y[~hit] = -1e4
    u = ((np.arange(width) + 0.5) / width * (len(gx) - 1)).astype(np.float32)
    v = ((np.arange(height) + 0.5) / height * (len(gy) - 1)).astype(np.float32)
    uu = np.ascontiguousarray(np.broadcast_to(u[None, :], (height, width)))
    vv = np.ascontiguousarray(np.broadcast_to(v[:, None], (height, width)))
    coarse = np.ascontiguousarray(np.dstack([map_x, map_y]))
    full = cv2.remap(coarse, uu, vv, interpolation=cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)
    image = cv2.remap(imagery, full[..., 0], full[..., 1], interpolation=cv2.INTER_LINEAR,
                      borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    # Path length through the atmosphere relative to straight down, for haze.
    view = np.degrees(np.arccos(np.clip(
        -(camera.rays(xx, yy, width, height) @ camera._frame()[0]) /
        (EARTH_RADIUS_KM + camera.altitude_km), -1, 1)))
    airmass = cv2.resize((1.0 / np.cos(np.radians(view))).astype(np.float32), (width, height),
                         interpolation=cv2.INTER_LINEAR)
    image, effects = _augment(image, airmass, augment, rng)
    return Render(image=image, footprint=camera.footprint(), camera=camera, effects=effects)


def _fractal_noise(rng: np.random.Generator, h: int, w: int, octaves: int = 5) -> np.ndarray:
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        n = 2 ** (o + 2)
        small = rng.random((n, n)).astype(np.float32)
        out += amp * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.55
    out /= total
    return (out - out.min()) / max(float(out.max() - out.min()), 1e-6)


def _augment(image: np.ndarray, airmass: np.ndarray, aug: Augment,
             rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    img = image
    h, w = img.shape[:2]
    effects: dict = {}
    if aug.color > 0:
        gain = 1.0 + aug.color * rng.uniform(-0.12, 0.12, size=3)
        gamma = float(np.exp(aug.color * rng.uniform(-0.25, 0.25)))
        sat = float(1.0 + aug.color * rng.uniform(-0.3, 0.3))
        gray = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
        img = cv2.addWeighted(img, sat, gray, 1.0 - sat, 0.0)
        levels = np.arange(256, dtype=np.float64)[:, None] / 255.0
        lut = np.clip(((levels * gain[None, :]).clip(0, 1) ** gamma) * 255.0 + 0.5, 0, 255)
        img = cv2.LUT(img, lut.astype(np.uint8).reshape(256, 1, 3))
        effects.update(gain=gain.round(3).tolist(), gamma=round(gamma, 3), saturation=round(sat, 3))
    out = img.astype(np.float32)
    haze = float(rng.uniform(*aug.haze)) if aug.haze[1] > 0 else 0.0
    if haze > 0:
        color = (np.array([0.75, 0.82, 0.95]) * rng.uniform(0.85, 1.1) * 255).astype(np.float32)
        alpha = np.clip(haze * airmass, 0, 0.6).astype(np.float32)[..., None]
        out = out * (1.0 - alpha) + color[None, None, :] * alpha
        effects["haze"] = round(haze, 3)
    cover = 0.0
    if aug.cloud_probability > 0 and rng.random() < aug.cloud_probability:
        cover = float(rng.uniform(*aug.cloud_cover))
        if cover > 0:
            noise = _fractal_noise(rng, h, w)
            thr = float(np.quantile(noise[::4, ::4], 1.0 - cover)) - 0.04  # mask 0.5 there
            mask = np.clip((noise - thr) / 0.08, 0, 1)
            mask = cv2.GaussianBlur(mask, (0, 0), 1.5)[..., None]
            white = np.float32(255.0 * rng.uniform(0.85, 1.0))
            out = out * (1.0 - mask) + white * mask
            cover = float((mask > 0.5).mean())
    effects["cloud_fraction"] = round(cover, 3)
    sigma = float(rng.uniform(*aug.blur_sigma)) if aug.blur_sigma[1] > 0 else 0.0
    if sigma > 0.05:
        out = cv2.GaussianBlur(out, (0, 0), sigma)
        effects["blur_sigma"] = round(sigma, 3)
    noise_sigma = float(rng.uniform(*aug.noise_sigma)) if aug.noise_sigma[1] > 0 else 0.0
    if noise_sigma > 0:
        out += rng.standard_normal(size=out.shape, dtype=np.float32) * np.float32(noise_sigma)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), effects


def water_mask(image: np.ndarray) -> np.ndarray:
    """True where an RGB image shows water or empty space.

    Water in true-colour imagery is dark and blue-dominant; this is a heuristic good enough
    to keep renders and database blocks off the open ocean and empty space.
    """
    img = image.astype(np.int16)
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    return (b > r + 12) & (b >= g) | (img.max(axis=2) < 25)


def land_score(image: np.ndarray) -> tuple[float, float]:
    """(fraction of non-water, non-black pixels, grey-level std) of an RGB image."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return float(1.0 - water_mask(image).mean()), float(gray.std())


def max_visible_lat_deg() -> float:
    """The highest latitude an ISS photo can show: orbit inclination plus the ground range
    of the steepest usable off-nadir ray (a frame corner at MAX_OFF_NADIR_DEG)."""
    ratio = (EARTH_RADIUS_KM + ISS_ALTITUDE_KM) / EARTH_RADIUS_KM
    theta = math.radians(MAX_OFF_NADIR_DEG)
    ground = math.asin(min(1.0, ratio * math.sin(theta))) - theta
    return ISS_INCLINATION_DEG + math.degrees(ground)


def random_camera(rng: np.random.Generator, source, *,
                  focal_mm: tuple[float, float] = (50.0, 1150.0),
                  tilt_deg: tuple[float, float] = (0.0, 50.0),
                  altitude_km: tuple[float, float] = (400.0, 435.0),
                  max_lat: float = ISS_INCLINATION_DEG,
                  bbox: tuple[float, float, float, float] | None = None,
                  split: Split | None = None,
                  min_land: float = 0.35, min_std: float = 12.0,
                  max_tries: int = 2000) -> Camera:
    """A plausible ISS camera over land (not open ocean, not featureless ice).

    The tilt is drawn uniform (up to what the longest lens allows: ~21 deg with the bundled
    world's focal scale), then the focal length log-uniform among the lenses whose frame
    stays below the horizon at that tilt. With `split`, every footprint corner and the
    centre must lie in places of that split
    (`astroapp.geo.places`); `bbox` (west, south, east, north) limits the nadir.
    """
    scale = focal_scale_for(source)
    half_diag = math.hypot(*SENSOR_MM) / 2
    # Shortest lens whose frame stays below the horizon at nadir (the rest is rejected below).
    f_min = max(focal_mm[0], scale * half_diag / math.tan(math.radians(MAX_OFF_NADIR_DEG)))
    if f_min > focal_mm[1]:
        raise ValueError(f"no focal length in {focal_mm} mm keeps the frame below the horizon "
                         f"with focal scale {scale:.1f} (need >= {f_min:.0f} mm)")
    hi = math.log(focal_mm[1])
    longest_half_angle = math.degrees(math.atan(half_diag * scale / focal_mm[1]))
    tilt_top = min(tilt_deg[1], max(tilt_deg[0], MAX_OFF_NADIR_DEG - longest_half_angle))
    cells = _split_cells(split, max_lat) if split is not None else None
    for _ in range(max_tries):
        if bbox is not None:
            west, south, east, north = bbox
            span = (east - west) % 360 or 360.0
            lon = wrap_lon(west + rng.uniform(0, span))
            lat = float(rng.uniform(max(south, -max_lat), min(north, max_lat)))
        elif cells is not None:
            west, south, east, north = cells[0][rng.choice(len(cells[0]), p=cells[1])]
            lon = float(rng.uniform(west, east))
            s0, s1 = math.sin(math.radians(south)), math.sin(math.radians(north))
            lat = math.degrees(math.asin(rng.uniform(s0, s1)))
        else:
            lon = float(rng.uniform(-180, 180))
            # Uniform on the sphere within the ISS's latitude band.
            s = math.sin(math.radians(max_lat))
            lat = math.degrees(math.asin(rng.uniform(-s, s)))
        # Tilt first (uniform over what the longest lens allows), then a lens that fits it.
        tilt = float(rng.uniform(tilt_deg[0], tilt_top))
        f_lo = max(f_min, scale * half_diag / math.tan(math.radians(MAX_OFF_NADIR_DEG - tilt)))
        focal = float(math.exp(rng.uniform(math.log(min(f_lo, focal_mm[1])), hi)))
        cam = Camera(lon=float(lon), lat=lat, altitude_km=float(rng.uniform(*altitude_km)),
                     focal_mm=focal, tilt_deg=tilt,
                     heading_deg=float(rng.uniform(0, 360)), focal_scale=scale)
        if cam.max_off_nadir_deg() > MAX_OFF_NADIR_DEG:
            continue
        fp = cam.footprint()
        if split is not None:
            pts = [*fp.corners, fp.centroid()]
            if any(place_split(x, y) != split for x, y in pts):
                continue
        preview = render_photo(source, cam, 64, augment=NO_AUGMENT).image
        land, std = land_score(preview)
        if land >= min_land and std >= min_std:
            return cam
    raise RuntimeError(f"no camera over land found in {max_tries} tries (bbox={bbox}, "
                       f"split={split}, focal {focal_mm})")


def _split_cells(split: Split, max_lat: float) -> tuple[list[tuple[float, float, float, float]],
                                                     np.ndarray]:
    """Cells (west, south, east, north) of a split within the latitude band, area weights."""
    from astroapp.geo.places import CELL_DEG

    boxes, weights = [], []
    for i in range(int(360 / CELL_DEG)):
        for j in range(int(180 / CELL_DEG)):
            west, south = -180 + i * CELL_DEG, -90 + j * CELL_DEG
            north = south + CELL_DEG
            south, north = max(south, -max_lat), min(north, max_lat)
            if north <= south or place_split(west + CELL_DEG / 2, (south + north) / 2) != split:
                continue
            boxes.append((west, south, west + CELL_DEG, north))
            weights.append(math.sin(math.radians(north)) - math.sin(math.radians(south)))
    w = np.asarray(weights)
    return boxes, w / w.sum()


def with_camera(render: Render, **changes) -> Camera:
    """A copy of a render's camera with some fields changed (e.g. for a re-render)."""
    return replace(render.camera, **changes)
