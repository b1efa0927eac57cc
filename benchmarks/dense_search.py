"""Dense pose search (astroapp.matching.dense_search): speed and recall on the real pairs.

    .venv/bin/python -m benchmarks.dense_search [--pairs ISS064-E-358,...] [--no-full]
        [--no-synthetic] [--no-cross]

Each search's 5 best distinct poses are refined (`dense_refine.refine`, as `coregister_dense`
does); a pose counts as found when its refinement lines up FOUND patch inliers or more (a
true find gives 100+, a chance pose 10-20). Modes: `full` every pose at 256 px (the search
before the coarse level), `c2f` coarse to fine, `+tilt` with the NASA tilt's foreshortenings
along ASIFT's directions, `+azimuth` along the line of sight from the NASA nadir point to the
photo's centre. Tables:

1. each real pair: seconds of the search, its best peak-to-sidelobe ratio, the rank (0 =
   first) of the first found pose, the best refined inliers;
2. synthetic obliquity: the pairs c2f finds, foreshortened by a further SYNTH_FACTOR along
   two directions of the photo (hints: that tilt; the azimuth is that direction carried to
   the ground by the pair's own c2f result);
3. cross pairs (a photo over another pair's surroundings, with its own hints): the best
   refined inliers, which must stay at chance.
Searches are timed on whatever load the machine has: compare modes within one run.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import cv2
import numpy as np
from pyproj import Geod

from astroapp.geo.viewing import ViewingHints
from astroapp.matching import (
    PreparedPhoto,
    dense_refine,
    dense_search,
    get_matcher,
    tilt,
    window_search,
)
from astroapp.matching.coregister import resize_square
from astroapp.matching.geometry import apply_h
from astroapp.matching.imageio import read_rgb
from benchmarks.real_pairs import SHARED, _table

FOUND = 100
SIZE = 512
SYNTH_FACTOR = 1.7  # 54 deg off nadir
SYNTH_DIRECTIONS = (30.0, 120.0)


class Pair:
    """A real pair's photo, surroundings (3 x SIZE) and NASA metadata."""

    def __init__(self, folder: Path, photo: np.ndarray | None = None) -> None:
        self.name = folder.name
        self.meta = json.loads((folder / "meta.json").read_text())
        image = read_rgb(str(folder / "query.jpg")) if photo is None else photo
        self.photo = PreparedPhoto(image, get_matcher("sift"), SIZE)
        self.surr = resize_square(read_rgb(str(folder / "surroundings.jpg")), 3 * SIZE)
        self.hints = ViewingHints.create(self.meta.get("focal_mm"), self.meta.get("tilt_deg"))

    def azimuth(self) -> float | None:
        """Bearing of the line of sight on the ground: NASA nadir point -> photo centre."""
        m = self.meta
        if any(m.get(k) is None for k in ("nadir_lat", "nadir_lon", "center_lat", "center_lon")):
            return None
        az, _, _ = Geod(ellps="WGS84").inv(m["nadir_lon"], m["nadir_lat"], m["center_lon"], m["center_lat"])
        return float(az)


def _modes(hints: ViewingHints, azimuth: float | None, full: bool) -> dict[str, dict]:
    out = {"full": {"coarse_side": 0}} if full else {}
    out["c2f"] = {}
    if tilt.stretch_factors(hints.tilt_deg):  # else the tilt adds nothing
        out["+tilt"] = {"tilt_deg": hints.tilt_deg}
        if azimuth is not None:
            out["+azimuth"] = {"tilt_deg": hints.tilt_deg, "azimuth_deg": azimuth}
    return out


def _search(photo: PreparedPhoto, surr: np.ndarray, hints: ViewingHints, kwargs: dict) -> dict:
    """One search and the refinement of its poses, as coregister_dense runs them."""
    hinted = window_search.ratios_for(hints.ground_width_km(), None)
    ratios = dense_search.ratios_between(min(hinted), max(hinted))
    w, h = photo.original_size
    t0 = time.perf_counter()
    poses = dense_search.search_poses(photo.square, surr, ratios, dense_search.stretches(w / h),
                                      photo_mask=photo.mask, top=5, base_aspect=w / h, **kwargs)
    secs = time.perf_counter() - t0
    fits = [dense_refine.refine(photo.patches(), surr, p.affine) for p in poses]
    inliers = [f.inliers for f in fits]
    rank = next((i for i, n in enumerate(inliers) if n >= FOUND), None)
    best = int(np.argmax(inliers)) if inliers else None
    return {"secs": secs, "psr": poses[0].score if poses else 0.0, "rank": rank,
            "inliers": max(inliers, default=0),
            "h": fits[best].homography if best is not None and rank is not None else None}


def _row(name: str, mode: str, r: dict) -> list:
    return [name, mode, f"{r['secs']:.1f}", f"{r['psr']:.1f}", "-" if r["rank"] is None else r["rank"],
            r["inliers"]]


def _ground_bearing(h: np.ndarray, direction_deg: float) -> float:
    """Bearing (north up) of a direction at the photo square's centre carried to the
    surroundings by the homography `h`."""
    a = math.radians(direction_deg)
    c = (SIZE - 1) / 2.0
    ends = apply_h(h, np.array([[c, c], [c + math.cos(a), c - math.sin(a)]]))
    v = ends[1] - ends[0]
    return math.degrees(math.atan2(v[0], -v[1])) % 360.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", help="comma-separated pair folder names (default: all)")
    ap.add_argument("--no-full", action="store_true", help="skip the every-pose-at-256-px search")
    ap.add_argument("--no-synthetic", action="store_true")
    ap.add_argument("--no-cross", action="store_true")
    args = ap.parse_args(argv)
    root = SHARED / "data" / "real_pairs"
    if not root.is_dir():
        print(f"{root} is absent: nothing to measure")
        return 0
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if args.pairs:
        folders = [f for f in folders if f.name in args.pairs.split(",")]
    pairs = [Pair(f) for f in folders]
    rows, found = [], {}
    for pair in pairs:
        for mode, kwargs in _modes(pair.hints, pair.azimuth(), not args.no_full).items():
            r = _search(pair.photo, pair.surr, pair.hints, kwargs)
            rows.append(_row(pair.name, mode, r))
            print(*rows[-1], flush=True)
            if mode == "c2f" and r["h"] is not None:
                found[pair.name] = r["h"]
    print()
    _table(["pair", "mode", "search s", "best PSR", "rank found", "best inliers"], rows)

    if not args.no_synthetic:
        rows = []
        tilt_deg = math.degrees(math.acos(1.0 / SYNTH_FACTOR))
        for pair in pairs:
            if pair.name not in found:
                continue
            square = resize_square(read_rgb(str(root / pair.name / "query.jpg")), 2 * SIZE)
            for d in SYNTH_DIRECTIONS:
                squash = np.linalg.inv(tilt.stretch(2 * SIZE, d, SYNTH_FACTOR))
                image = cv2.warpAffine(square, squash[:2], (2 * SIZE, 2 * SIZE), flags=cv2.INTER_AREA)
                photo = PreparedPhoto(image, get_matcher("sift"), SIZE)
                hints = ViewingHints.create(pair.meta.get("focal_mm"), tilt_deg)
                azimuth = _ground_bearing(found[pair.name], d)
                for mode, kwargs in _modes(hints, azimuth, False).items():
                    r = _search(photo, pair.surr, hints, kwargs)
                    rows.append(_row(f"{pair.name} x{SYNTH_FACTOR:g} @{d:g}", mode, r))
                    print(*rows[-1], flush=True)
        print()
        _table(["synthetic oblique", "mode", "search s", "best PSR", "rank found", "best inliers"], rows)

    if not args.no_cross:
        rows = []
        for pair in pairs:
            for other in pairs:
                if other is pair:
                    continue
                for mode, kwargs in _modes(pair.hints, pair.azimuth(), False).items():
                    r = _search(pair.photo, other.surr, pair.hints, kwargs)
                    rows.append(_row(f"{pair.name} on {other.name}", mode, r))
                    print(*rows[-1], flush=True)
        print()
        _table(["cross pair", "mode", "search s", "best PSR", "rank found", "best inliers"], rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
