"""The bundled demo: the Blue Marble world and a roll of synthetic ISS photos over it.

`prepare_demo()` renders the roll once (at places of the "test" split, so a retrieval model
trained on "train" places never saw them) and caches it under the data dir. The roll folder
appears atomically, complete with `truth.json` (true footprint and camera of every photo), so
an interrupted or concurrent run never leaves a half-written roll behind.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import piexif
from PIL import Image

from astroapp import config
from astroapp.atomic import atomic_dir, atomic_path
from astroapp.geo.places import place_split  # noqa: F401  (re-exported for trainers)
from astroapp.geo.render import random_camera, render_photo
from astroapp.geo.sources.bluemarble import BlueMarbleSource

log = logging.getLogger(__name__)

DEMO_VERSION = 2
NASA_CSV = "nasa_metadata.csv"  # the catalogue fields NASA keeps for every photo
DEMO_SIZE = (1080, 720)  # 3:2, like the full-frame Nikons used on the ISS
CAMERA_MAKE = "NIKON CORPORATION"
CAMERA_MODEL = "NIKON D5"
MISSION = "ISS999"  # a mission number no real photo has: these are synthetic
FIRST_CAPTURE = datetime(2024, 3, 1, 9, 0, 0, tzinfo=UTC)


@dataclass(frozen=True)
class DemoPaths:
    root: Path  # the demo cache dir
    roll_dir: Path  # the photos (JPEG with EXIF) and truth.json
    truth_path: Path
    source: str = "bluemarble"  # `open_source` spec of the demo world

    @property
    def nasa_csv(self) -> Path:
        return self.roll_dir / NASA_CSV

    def photos(self) -> list[Path]:
        return sorted(self.roll_dir.glob(f"{MISSION}-E-*.jpg"))

    def truth(self) -> dict:
        return json.loads(self.truth_path.read_text())


def demo_photo_id(i: int) -> str:
    return f"{MISSION}-E-{1001 + 37 * i:06d}"


def _exif_bytes(taken: datetime, focal_mm: float, description: str) -> bytes:
    stamp = taken.strftime("%Y:%m:%d %H:%M:%S")
    exif = {
        "0th": {
            piexif.ImageIFD.Make: CAMERA_MAKE.encode(),
            piexif.ImageIFD.Model: CAMERA_MODEL.encode(),
            piexif.ImageIFD.Software: b"astroapp synthetic renderer",
            piexif.ImageIFD.ImageDescription: description.encode(),
            piexif.ImageIFD.DateTime: stamp.encode(),
        },
        "Exif": {
            piexif.ExifIFD.DateTimeOriginal: stamp.encode(),
            piexif.ExifIFD.SubSecTimeOriginal: f"{taken.microsecond // 1000:03d}".encode(),
            piexif.ExifIFD.OffsetTimeOriginal: b"+00:00",
            piexif.ExifIFD.FocalLength: (int(round(focal_mm * 10)), 10),
            piexif.ExifIFD.FocalLengthIn35mmFilm: int(round(focal_mm)),
        },
    }
    return piexif.dump(exif)


def save_photo(path: Path, image: np.ndarray, taken: datetime, focal_mm: float,
               description: str) -> None:
    """Write an RGB render as a JPEG with the EXIF an ISS camera writes (atomically)."""
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="JPEG", quality=92,
                                    exif=_exif_bytes(taken, focal_mm, description))


def iso_utc(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _is_complete(roll: Path, n_photos: int, seed: int) -> bool:
    truth = roll / "truth.json"
    if not truth.is_file():
        return False
    try:
        data = json.loads(truth.read_text())
    except (OSError, ValueError):
        return False
    if (data.get("version"), data.get("n_photos"), data.get("seed")) != (DEMO_VERSION, n_photos,
                                                                         seed):
        return False
    return (roll / NASA_CSV).is_file() and all(
        (roll / p["file"]).is_file() for p in data.get("photos", []))


def _render_roll(dest: Path, n_photos: int, seed: int) -> None:
    world = BlueMarbleSource()
    rng = np.random.default_rng(seed)
    photos = []
    taken = FIRST_CAPTURE
    for i in range(n_photos):
        cam = random_camera(rng, world, split="test")
        render = render_photo(world, cam, DEMO_SIZE, rng)
        pid = demo_photo_id(i)
        name = f"{pid}.jpg"
        taken = taken + timedelta(seconds=float(rng.uniform(20, 400)),
                                  milliseconds=int(rng.integers(0, 1000)))
        save_photo(dest / name, render.image, taken, cam.focal_mm,
                   f"astroapp demo photo {pid} (synthetic)")
        photos.append({
            "file": name,
            "photo_id": pid,
            "taken_at": iso_utc(taken),
            "footprint": render.footprint.to_list(),
            "center": list(render.footprint.centroid()),
            "area_km2": render.footprint.area_km2(),
            "camera": cam.to_dict(),
            "effects": render.effects,
            "size": list(DEMO_SIZE),
        })
        log.info("demo photo %d/%d rendered", i + 1, n_photos)
    _write_nasa_csv(dest / NASA_CSV, photos)
    truth = {"version": DEMO_VERSION, "n_photos": n_photos, "seed": seed,
             "source": world.source_id, "source_year": 2004,
             "corner_order": "TL,TR,BR,BL as [lon, lat]", "photos": photos}
    (dest / "truth.json").write_text(json.dumps(truth, indent=1))


def _write_nasa_csv(path: Path, photos: list[dict]) -> None:
    """What NASA's catalogue knows of each photo before anyone localizes it: the ISS nadir
    point and altitude (from the orbit at capture time), lens, tilt and cloud estimate. The
    centre point is left out: finding it is the app's job. Retrieval uses the nadir as a prior.
    """
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["photo_id", "nadir_lat", "nadir_lon", "altitude_km", "focal_length_mm",
                      "tilt_deg", "cloud_pct"])
        for p in photos:
            cam = p["camera"]
            out.writerow([p["photo_id"], round(cam["lat"], 2), round(cam["lon"], 2),
                          round(cam["altitude_km"], 1), round(cam["focal_mm"]),
                          round(cam["tilt_deg"]),
                          round(100 * p["effects"].get("cloud_fraction", 0.0))])


def demo_roll_dir(root: Path | None = None) -> Path:
    """Where the demo roll lives (or will, once `prepare_demo` ran); renders nothing."""
    root = Path(root) if root is not None else config.data_dir() / "demo"
    return root / "roll"


def prepare_demo(root: Path | None = None, n_photos: int = 24, seed: int = 0) -> DemoPaths:
    """The demo roll (rendered on first use, then cached); idempotent and safe to interrupt."""
    roll = demo_roll_dir(root)
    root = roll.parent
    root.mkdir(parents=True, exist_ok=True)
    paths = DemoPaths(root=root, roll_dir=roll, truth_path=roll / "truth.json")
    if _is_complete(roll, n_photos, seed):
        return paths
    # rendered aside, then swapped in whole; a roll another process finished first is kept
    with atomic_dir(roll, keep_existing=lambda r: _is_complete(r, n_photos, seed)) as tmp:
        _render_roll(tmp, n_photos, seed)
    return paths
