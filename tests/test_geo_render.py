import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from astroapp.geo.places import place_split
from astroapp.geo.render import (
    NO_AUGMENT,
    Camera,
    focal_scale_for,
    land_score,
    random_camera,
    render_photo,
)
from astroapp.geo.sources import open_source


@pytest.fixture(scope="module")
def ramp_source(tmp_path_factory):
    """EPSG:4326 raster, lon 0..20, lat 30..50 at 0.02 deg: R and G encode lon and lat."""
    path = tmp_path_factory.mktemp("ramp") / "ramp.tif"
    n = 1000
    lon = (np.arange(n) + 0.5) * 0.02
    lat = 50 - (np.arange(n) + 0.5) * 0.02
    lo, la = np.meshgrid(lon, lat)
    bands = np.stack([lo / 20 * 255, (la - 30) / 20 * 255, np.full_like(lo, 90)]).astype(np.uint8)
    with rasterio.open(path, "w", driver="GTiff", width=n, height=n, count=3, dtype="uint8",
                       crs="EPSG:4326", transform=from_origin(0, 50, 0.02, 0.02)) as dst:
        dst.write(bands)
    return open_source(path)


CAMERAS = [
    Camera(lon=10.0, lat=40.0, focal_mm=50.0, tilt_deg=0.0, heading_deg=0.0),
    Camera(lon=10.0, lat=40.0, focal_mm=80.0, tilt_deg=35.0, heading_deg=45.0),
    Camera(lon=12.0, lat=38.0, focal_mm=200.0, tilt_deg=50.0, heading_deg=250.0),
]


@pytest.mark.parametrize("cam", CAMERAS)
def test_footprint_is_the_projected_image_corners(cam):
    w, h = 300, 200
    fp = cam.footprint(w, h)
    lon = [c[0] for c in fp.corners]
    lat = [c[1] for c in fp.corners]
    x, y, visible = cam.lonlat_to_pixel(lon, lat, w, h)
    assert visible.all()
    assert np.allclose(x, [0, w, w, 0], atol=1e-6) and np.allclose(y, [0, 0, h, h], atol=1e-6)
    # The footprint does not depend on the pixel count.
    assert np.allclose(cam.footprint(512, 512).corners, fp.corners)
    # Any ground point seen in the image projects back to where it was seen.
    rng = np.random.default_rng(1)
    px, py = rng.uniform(0, w, 50), rng.uniform(0, h, 50)
    glon, glat, hit = cam.pixel_to_lonlat(px, py, w, h)
    assert hit.all()
    assert all(fp.contains(a, b) for a, b in zip(glon, glat, strict=True))
    x2, y2, _ = cam.lonlat_to_pixel(glon, glat, w, h)
    assert np.allclose(x2, px, atol=1e-6) and np.allclose(y2, py, atol=1e-6)


def test_orientation_of_the_frame():
    nadir = Camera(lon=10.0, lat=40.0, focal_mm=50.0)
    tl, tr, br, bl = nadir.footprint().corners
    assert tl[0] < 10 < tr[0] and tl[1] > 40 > bl[1]  # north up, east right
    assert nadir.footprint().centroid() == pytest.approx((10.0, 40.0), abs=0.05)
    # Heading 90: image top faces east, so the top-left corner is north-east of nadir.
    east = Camera(lon=10.0, lat=40.0, focal_mm=50.0, heading_deg=90.0)
    tl = east.footprint().corners[0]
    assert tl[0] > 10 and tl[1] > 40
    # Tilting towards the north moves the footprint north and makes its far edge wider.
    tilted = Camera(lon=10.0, lat=40.0, focal_mm=50.0, tilt_deg=40.0)
    tl, tr, br, bl = tilted.footprint().corners
    assert tilted.footprint().centroid()[1] > 41
    assert (tr[0] - tl[0]) > (br[0] - bl[0])
    # A 50 mm lens at 420 km sees ~302 x 202 km at nadir.
    assert nadir.footprint().area_km2() == pytest.approx(302 * 202, rel=0.03)
    with pytest.raises(ValueError, match="off nadir"):
        Camera(lon=0, lat=0, focal_mm=20.0, tilt_deg=50.0).check()


@pytest.mark.parametrize("cam", CAMERAS)
def test_rendered_pixels_show_the_ground_the_geometry_says(ramp_source, cam):
    w, h = 240, 160
    img = render_photo(ramp_source, cam, (w, h), augment=NO_AUGMENT).image
    assert img.shape == (h, w, 3) and img.dtype == np.uint8
    rng = np.random.default_rng(2)
    px, py = rng.integers(2, w - 2, 60), rng.integers(2, h - 2, 60)
    lon, lat, _ = cam.pixel_to_lonlat(px + 0.5, py + 0.5, w, h)
    expected_r = lon / 20 * 255
    expected_g = (lat - 30) / 20 * 255
    assert np.abs(img[py, px, 0] - expected_r).max() < 3.0
    assert np.abs(img[py, px, 1] - expected_g).max() < 3.0


def test_bluemarble_renders_are_seeded_fast_and_over_land():
    world = open_source("bluemarble")
    scale = focal_scale_for(world)
    assert 45 < scale < 52
    cam = random_camera(np.random.default_rng(5), world)
    assert cam.focal_scale == scale and 50 <= cam.focal_mm <= 1150 and cam.tilt_deg <= 50
    a = render_photo(world, cam, 256, np.random.default_rng(7))
    b = render_photo(world, cam, 256, np.random.default_rng(7))
    c = render_photo(world, cam, 256, np.random.default_rng(8))
    assert np.array_equal(a.image, b.image) and not np.array_equal(a.image, c.image)
    clean = render_photo(world, cam, 256, augment=NO_AUGMENT)
    land, std = land_score(clean.image)
    assert land >= 0.35 and std >= 12
    assert a.footprint == cam.footprint() and a.camera == cam
    assert set(a.effects) >= {"cloud_fraction"}
    # Split-aware sampling keeps the whole footprint in that split's places.
    rng = np.random.default_rng(11)
    for split in ("train", "test"):
        cam = random_camera(rng, world, split=split)
        fp = cam.footprint()
        assert all(place_split(x, y) == split for x, y in [*fp.corners, fp.centroid()])


def test_render_across_the_antimeridian_has_no_seam():
    world = open_source("bluemarble")
    cam = Camera(lon=179.8, lat=-17.0, focal_mm=900.0, tilt_deg=10.0, heading_deg=80.0,
                 focal_scale=focal_scale_for(world))
    r = render_photo(world, cam, 128, augment=NO_AUGMENT)
    assert r.footprint.crosses_antimeridian()
    assert r.image.max(axis=2).min() > 5  # no black (unread) columns anywhere


def test_augmentations_do_what_they_say(ramp_source):
    from astroapp.geo.render import Augment

    cam = CAMERAS[1]
    clean = render_photo(ramp_source, cam, 128, augment=NO_AUGMENT).image.astype(float)
    only = dict(color=0.0, haze=(0, 0), cloud_cover=(0, 0), cloud_probability=0.0,
                blur_sigma=(0, 0), noise_sigma=(0, 0))
    cloudy = render_photo(ramp_source, cam, 128, np.random.default_rng(0),
                          Augment(**{**only, "cloud_probability": 1.0,
                                     "cloud_cover": (0.3, 0.3)}))
    white = (cloudy.image.min(axis=2) > 200).mean()
    assert cloudy.effects["cloud_fraction"] == pytest.approx(0.3, abs=0.08)
    assert white == pytest.approx(cloudy.effects["cloud_fraction"], abs=0.08)
    hazy = render_photo(ramp_source, cam, 128, np.random.default_rng(0),
                        Augment(**{**only, "haze": (0.3, 0.3)})).image.astype(float)
    assert hazy.std() < clean.std() and hazy.mean() > clean.mean()
    blurred = render_photo(ramp_source, cam, 128, np.random.default_rng(0),
                           Augment(**{**only, "blur_sigma": (1.5, 1.5)}))
    assert blurred.effects["blur_sigma"] == 1.5
    shifted = render_photo(ramp_source, cam, 128, np.random.default_rng(0),
                           Augment(**{**only, "color": 1.0}))
    assert {"gain", "gamma", "saturation"} <= set(shifted.effects)
    assert not np.array_equal(shifted.image, clean.astype(np.uint8))
