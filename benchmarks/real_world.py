"""Real ISS photos among real satellite blocks: retrieval recall and the whole pipeline.

    .venv/bin/python -m benchmarks.real_world [--work DIR] [--distractors 1100]
        [--models sift-vote sift-bow astroapp-small] [--no-pipeline] [--local-voting]
        [--pairs DIR]

Built from the real pairs in ../shared/data/real_pairs (a real ISS photo and the 3x3
Sentinel-2 surroundings that EarthLoc/EarthMatch published for it; their georeference is not
given). Each pair's surroundings are cut 3x3 into EarthLoc-named blocks (4x4 tiles at the zoom
among EarthLoc's 9-11 whose block width is closest to the photo's expected width from NASA's
focal length and tilt), placed at a made-up place (>= 4,000 km apart; any number of pairs:
`--pairs DIR` takes another folder of pairs in the same layout, e.g. held-out photos).
Distractors (EarthLoc-named blocks at zooms 9-11 on free grid cells within 700 km of a place,
so inside the search circles):
  - 85 %: real Sentinel-2 texture, a crop of another pair's surroundings (side 20-70 % of it,
    random offset, rotated by a random angle), never placed near the pair it was cut from;
  - 15 %: Blue Marble blocks (the bundled world, zooms 6-8) resized to a block.
The photos (their NASA id as file name) are imported with a NASA CSV of their nadir point
moved by the same offset as in reality, focal length and tilt.

Printed: per model, index build time and size, then R@1/R@10 over the 5 photos of the
descriptor alone (no prior; the distractors cut from the photo's own surroundings show the
same ground, so they are left out of its ranking, as "junk" images are in Oxford/Paris),
with the metadata prior (nadir circle + zooms fitting the photo), and re-ranked (the
localize pipeline's SIFT verification at the photo's expected scale, every tile when the area
holds few). Then the pipeline through the CLI (index build -> import -> import-nasa ->
localize -> export): photos localized correctly (footprint centre inside the pair's 3x3
surroundings), confidently wrong, or left for review.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import mercantile
import numpy as np
from PIL import Image

REAL_PAIRS = Path(__file__).resolve().parents[2] / "shared" / "data" / "real_pairs"
PLACES = [(10.0, 46.0), (-100.0, 38.0), (135.0, -25.0), (-62.0, -12.0), (80.0, 55.0)]
MIN_PLACE_GAP_KM = 4000.0
ZOOMS = (9, 10, 11)
YEAR = 2021
DISTRACTOR_RADIUS_KM = 700.0
BLOCK_PX = 512


@dataclass
class Pair:
    photo_id: str
    folder: Path
    meta: dict
    place: tuple[float, float]
    zoom: int = 0
    surroundings_3857: tuple[float, float, float, float] = (0, 0, 0, 0)
    true_tiles: set[str] = field(default_factory=set)
    nadir: tuple[float, float] = (0.0, 0.0)


def _km_offset(lon: float, lat: float, dx_km: float, dy_km: float) -> tuple[float, float]:
    lat2 = lat + dy_km / 111.195
    lon2 = lon + dx_km / (111.195 * math.cos(math.radians((lat + lat2) / 2)))
    return lon2, max(-85.0, min(85.0, lat2))


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _save_block(folder: Path, zoom: int, row: int, col: int, image: np.ndarray) -> str:
    from astroapp.geo.sources.earthloc_folder import format_earthloc_name
    from astroapp.geo.tiles import block_footprint, block_id

    fp = block_footprint(zoom, row, col)
    lon, lat = fp.centroid()
    sub = folder / f"{YEAR}_{zoom:02d}" / f"{round(lat, -1):.0f}_{round(lon, -1):.0f}"
    sub.mkdir(parents=True, exist_ok=True)
    bid = block_id(zoom, row, col)
    Image.fromarray(image).save(sub / format_earthloc_name(fp, bid, YEAR), quality=92)
    return f"{bid}@{YEAR}"


def _expected_zoom(meta: dict, lat: float) -> int:
    from astroapp.geo.tiles import ground_resolution_m
    from astroapp.geo.viewing import ViewingHints

    width = ViewingHints.create(meta.get("focal_mm"), meta.get("tilt_deg")).ground_width_km()
    w = math.sqrt(width[0] * width[1]) if width else 100.0
    return min(ZOOMS, key=lambda z: abs(math.log(4 * 256 * ground_resolution_m(z, lat) / 1000 / w)))


def places(n: int) -> list[tuple[float, float]]:
    """`n` made-up places >= MIN_PLACE_GAP_KM apart: PLACES first, then points of a Fibonacci
    lattice (|lat| <= 60) taken greedily, the gap shrinking only if the globe runs out."""
    from astroapp.index.region import haversine_km

    out = list(PLACES[:n])
    golden = math.pi * (3 - math.sqrt(5))
    lattice = [(math.degrees((i * golden) % (2 * math.pi)) - 180.0,
                math.degrees(math.asin(-0.866 + 1.732 * (i + 0.5) / 400))) for i in range(400)]
    gap = MIN_PLACE_GAP_KM
    while len(out) < n:
        for lon, lat in lattice:
            if len(out) < n and abs(lon) <= 170 and all(  # off the antimeridian
                    haversine_km(lon, lat, a, b) >= gap for a, b in out):
                out.append((lon, lat))
        gap *= 0.8
    return out


def make_database(work: Path, n_distractors: int, seed: int = 0,
                  pairs_dir: Path = REAL_PAIRS) -> tuple[Path, list[Pair], dict]:
    """The EarthLoc folder, the pairs (with their truth) and, per distractor, its origin."""
    from astroapp.geo.tiles import block_bounds

    db = work / "db"
    folders = [p for p in sorted(pairs_dir.iterdir()) if (p / "meta.json").is_file()]
    pairs = [Pair(p.name, p, json.loads((p / "meta.json").read_text()), place)
             for p, place in zip(folders, places(len(folders)), strict=True)]
    origin: dict[str, int] = {}
    used: set[tuple[int, int, int]] = set()
    rng = np.random.default_rng(seed)
    if db.is_dir():
        shutil.rmtree(db)
    surr = {}
    for i, pair in enumerate(pairs):
        lon, lat = pair.place
        pair.zoom = z = _expected_zoom(pair.meta, lat)
        t = mercantile.tile(lon, lat, z)
        row0, col0 = (t.y - 6) & ~1, (t.x - 6) & ~1
        s = _rgb(pair.folder / "surroundings.jpg")
        surr[i] = s
        h, w = s.shape[:2]
        for a in range(3):
            for b in range(3):
                crop = s[a * h // 3:(a + 1) * h // 3, b * w // 3:(b + 1) * w // 3]
                pair.true_tiles.add(_save_block(db, z, row0 + 4 * a, col0 + 4 * b, crop))
                used.add((z, row0 + 4 * a, col0 + 4 * b))
        x0, _, _, y1 = block_bounds(z, row0, col0)
        _, y0, x1, _ = block_bounds(z, row0 + 8, col0 + 8)
        pair.surroundings_3857 = (x0, y0, x1, y1)
        m = pair.meta  # the nadir keeps its real offset from the photo's centre point
        dx = (m["nadir_lon"] - m["center_lon"]) * 111.195 * math.cos(math.radians(m["center_lat"]))
        dy = (m["nadir_lat"] - m["center_lat"]) * 111.195
        pair.nadir = _km_offset(lon, lat, dx, dy)

    def overlaps_truth(bounds: tuple[float, float, float, float]) -> bool:
        return any(bounds[0] < p.surroundings_3857[2] and bounds[2] > p.surroundings_3857[0]
                   and bounds[1] < p.surroundings_3857[3] and bounds[3] > p.surroundings_3857[1]
                   for p in pairs)

    from astroapp.geo.sources.bluemarble import BlueMarbleSource

    marble = BlueMarbleSource()
    marble_refs = list(marble.tiles())
    made = 0
    while made < n_distractors:
        at = made % len(pairs)
        lon, lat = _km_offset(*pairs[at].place, *rng.uniform(-1, 1, 2) * DISTRACTOR_RADIUS_KM)
        z = int(rng.choice(ZOOMS))
        t = mercantile.tile(lon, lat, z)
        key = (z, t.y & ~1, t.x & ~1)
        if key in used or overlaps_truth(block_bounds(*key)):
            continue
        if rng.random() < 0.15:
            ref = marble_refs[int(rng.integers(len(marble_refs)))]
            img, src = marble.load(ref, size=BLOCK_PX), -1
        else:
            src = int(rng.choice([j for j in range(len(pairs)) if j != at]))
            s = surr[src]
            side = int(rng.uniform(0.2, 0.7) * s.shape[0])
            rot = cv2.warpAffine(s, cv2.getRotationMatrix2D((s.shape[1] / 2, s.shape[0] / 2),
                                                            float(rng.uniform(0, 360)), 1.0),
                                 (s.shape[1], s.shape[0]), borderMode=cv2.BORDER_REFLECT)
            x, y = rng.integers(0, s.shape[0] - side, 2)
            img = cv2.resize(rot[y:y + side, x:x + side], (BLOCK_PX, BLOCK_PX),
                             interpolation=cv2.INTER_AREA)
        origin[_save_block(db, *key, np.ascontiguousarray(img))] = src
        used.add(key)
        made += 1
    return db, pairs, origin


def write_queries(work: Path, pairs: list[Pair]) -> tuple[Path, Path]:
    qdir = work / "photos"
    qdir.mkdir(parents=True, exist_ok=True)
    for p in pairs:
        shutil.copyfile(p.folder / "query.jpg", qdir / f"{p.photo_id}.jpg")
    nasa = work / "nasa.csv"
    with open(nasa, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["photo_id", "nadir_lat", "nadir_lon", "focal_length_mm", "tilt_deg",
                      "cloud_pct"])
        for p in pairs:
            out.writerow([p.photo_id, f"{p.nadir[1]:.3f}", f"{p.nadir[0]:.3f}",
                          p.meta["focal_mm"], p.meta["tilt_deg"], p.meta.get("cloud_pct", "")])
    return qdir, nasa


def _cli(*args: str, env: dict) -> str:
    cmd = [sys.executable, "-m", "astroapp", *args]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{res.stderr[-2000:]}")
    return res.stdout


def _folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def recall(index_dir: Path, model_name: str, pairs: list[Pair], origin: dict,
           photos: Path) -> dict[str, tuple[float, float]]:
    """R@1/R@10 of the descriptor alone, with the metadata prior, and re-ranked."""
    from astroapp.catalog.photo_reader import read_photo
    from astroapp.geo.viewing import ViewingHints
    from astroapp.index import Region, TileIndex, describe_queries
    from astroapp.pipeline.rerank import Reranker, tile_reader
    from astroapp.pipeline.retrieve import photo_region
    from astroapp.retrieval import load_model

    model = load_model(model_name, device="cpu")
    index = TileIndex.open(index_dir, model=model)
    images = [read_photo(photos / f"{p.photo_id}.jpg", min_side=1024).rgb for p in pairs]
    desc = describe_queries(model, images)
    reranker = Reranker()
    read = tile_reader(index, reranker.size)
    hits = {"descriptor": [], "prior": [], "reranked": []}
    for i, p in enumerate(pairs):
        width = ViewingHints.create(p.meta["focal_mm"], p.meta["tilt_deg"]).ground_width_km()

        class _Meta:  # the catalogue's view of this photo's NASA record
            nadir_lon, nadir_lat, altitude_km = p.nadir[0], p.nadir[1], None
            tilt_deg, tilt_code = p.meta["tilt_deg"], None

        class _Cat:
            def nasa_metadata(self, _pid: int) -> object:
                return _Meta()

        region = photo_region(_Cat(), 0)
        assert isinstance(region, Region)
        junk = {t for t, src in origin.items() if src == i}
        free = [c for c in index.search(desc[i], k=200)[0] if c.tile_id not in junk][:10]
        hits["descriptor"].append([c.tile_id in p.true_tiles for c in free])
        n_area = len(index.tiles_in_region(region, width))
        budget = reranker.budget(n_area)
        prior = index.search(desc[i], k=max(budget, 10), region=region, width_km=[width])[0]
        hits["prior"].append([c.tile_id in p.true_tiles for c in prior[:10]])
        rer = reranker.rerank(images[i], prior, read, photo_width_km=math.sqrt(width[0] * width[1]),
                              budget=budget)
        hits["reranked"].append([c.tile_id in p.true_tiles for c in rer[:10]])
        print(f"  {p.photo_id}: zoom {p.zoom}, {n_area} tiles in its area; first true rank: "
              + ", ".join(f"{k} {_first(v[-1])}" for k, v in hits.items()), flush=True)
    return {k: (float(np.mean([h[:1] and h[0] for h in v])), float(np.mean([any(h) for h in v])))
            for k, v in hits.items()}


def local_voting(db: Path, pairs: list[Pair], origin: dict, photos: Path, k: int = 20,
                 max_features: int = 1500) -> tuple[float, float]:
    """R@1/R@10 of nearest-neighbour voting on the blocks' RootSIFT features, no index and no
    prior: each photo feature finds its `k` nearest block features and votes for each block
    among them with the ratio-test weight 1 - d1/dk (Boiman et al. 2008's NBNN with Lowe's
    ratio as weight): sift-vote's scoring on the raw features instead of its IVF-PQ codes,
    i.e. what the codes' quantisation costs."""
    import faiss

    from astroapp.catalog.photo_reader import read_photo
    from astroapp.geo.sources.earthloc_folder import parse_earthloc_name
    from astroapp.index.local_votes import tally_votes
    from astroapp.matching.sift import SiftMatcher
    from astroapp.retrieval.base import resize_rgb

    sift = SiftMatcher(max_features=max_features, clahe=True)
    ids, owner, feats = [], [], []
    for path in sorted(db.rglob("*.jpg")):
        name = parse_earthloc_name(path.name)
        d = sift.features(resize_rgb(_rgb(path), (BLOCK_PX, BLOCK_PX))).descriptors
        owner.append(np.full(len(d), len(ids)))
        ids.append(f"{name.image_id}@{name.timestamp}")
        feats.append(d)
    index = faiss.IndexFlatL2(128)
    index.add(np.ascontiguousarray(np.concatenate(feats)))
    owner_all = np.concatenate(owner)
    hits = []
    for i, p in enumerate(pairs):
        photo = read_photo(photos / f"{p.photo_id}.jpg", min_side=2 * BLOCK_PX).rgb
        photo = resize_rgb(photo, (BLOCK_PX, BLOCK_PX))  # as the descriptors see it
        dist, nn = index.search(sift.features(photo).descriptors, k)
        score = tally_votes(dist, owner_all[nn], len(ids))  # sift-vote's tally, exact features
        junk = [j for j, t in enumerate(ids) if origin.get(t) == i]
        score[junk] = -np.inf
        top = [ids[j] in p.true_tiles for j in np.argsort(-score)[:10]]
        hits.append(top)
        print(f"  {p.photo_id}: first true rank {_first(top)}", flush=True)
    return float(np.mean([h[0] for h in hits])), float(np.mean([any(h) for h in hits]))


def _first(flags: list[bool]) -> str:
    return str(flags.index(True) + 1) if True in flags else ">10"


def pipeline(work: Path, index_dir: Path, pairs: list[Pair], photos: Path, nasa: Path,
             env: dict) -> dict[str, int]:
    from astroapp.catalog.db import Catalog
    from astroapp.geo.footprint import Footprint
    from astroapp.geo.tiles import lonlat_to_mercator

    cat = work / "catalog.sqlite"
    cat.unlink(missing_ok=True)
    _cli("--catalog", str(cat), "import", str(photos), env=env)
    _cli("--catalog", str(cat), "import-nasa", str(nasa), env=env)
    t0 = time.perf_counter()
    _cli("--catalog", str(cat), "localize", "--all", "--index", str(index_dir), env=env)
    seconds = time.perf_counter() - t0
    _cli("--catalog", str(cat), "export", "--format", "geojson", str(work / "footprints.geojson"),
         env=env)
    counts = {"correct": 0, "wrong": 0, "review": 0}
    catalog = Catalog(cat)
    try:
        by_id = {p.photo_id: p for p in pairs}
        for photo in catalog.photos():
            pair = by_id[photo.nasa_id]
            loc = catalog.latest_localization(photo.id)
            if loc is None or not loc.accepted_auto or not loc.footprint:
                counts["review"] += 1
                verdict = "review"
            else:
                lon, lat = Footprint.from_list(loc.footprint).centroid()
                mx, my = lonlat_to_mercator(np.array([lon]), np.array([lat]))
                b = pair.surroundings_3857
                inside = b[0] <= mx[0] <= b[2] and b[1] <= my[0] <= b[3]
                verdict = "correct" if inside else "wrong"
                counts[verdict] += 1
            stage = (loc.method or {}).get("coregistration_stage") if loc else None
            print(f"  {photo.nasa_id}: {verdict} (inliers {loc.inliers if loc else None}, "
                  f"{stage or 'no'} stage)")
    finally:
        catalog.close()
    counts["seconds_per_photo"] = round(seconds / max(len(pairs), 1), 1)
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/astroapp-real-world"))
    ap.add_argument("--distractors", type=int, default=1100)
    ap.add_argument("--models", nargs="*", default=["sift-vote", "sift-bow", "astroapp-small"])
    ap.add_argument("--local-voting", action="store_true",
                    help="also measure nearest-neighbour voting on the blocks' RootSIFT features "
                         "(the local features' own ceiling, no index)")
    ap.add_argument("--no-pipeline", action="store_true")
    ap.add_argument("--reuse-index", action="store_true",
                    help="keep an index already built in --work (same database and seed)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pairs", type=Path, default=REAL_PAIRS,
                    help="folder of pairs (query.jpg, surroundings.jpg, meta.json per photo)")
    args = ap.parse_args(argv)
    if not args.pairs.is_dir():
        print(f"no real pairs at {args.pairs}: nothing to measure")
        return 1
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, ASTROAPP_HOME=str(work / "home"))
    db, pairs, origin = make_database(work, args.distractors, args.seed, args.pairs)
    photos, nasa = write_queries(work, pairs)
    n_tiles = sum(1 for _ in db.rglob("*.jpg"))
    print(f"{len(pairs)} real photos, {n_tiles} blocks ({n_tiles - len(origin)} true, "
          f"{len(origin)} distractors) in {db}")
    rows = []
    for name in args.models:
        idx = work / f"index-{name}"
        if args.reuse_index and (idx / "manifest.json").is_file():
            build_s = float("nan")
            print(f"{name}: reusing {idx}, {_folder_mb(idx):.1f} MB")
        else:
            if idx.exists():
                shutil.rmtree(idx)
            t0 = time.perf_counter()
            _cli("index", "build", str(db), "--model", name, "--out", str(idx), "-q", env=env)
            build_s = time.perf_counter() - t0
            print(f"{name}: built in {build_s:.0f} s, {_folder_mb(idx):.1f} MB")
        rec = recall(idx, name, pairs, origin, photos)
        rows.append((name, build_s * 1000 / n_tiles, _folder_mb(idx) * 1000 / n_tiles, rec))
    print()
    print(f"{'model':<16} {'build s/1k':>10} {'MB/1k':>6} {'R@1 / R@10 desc':>16} "
          f"{'with prior':>12} {'re-ranked':>12}")
    for name, s1k, mb1k, rec in rows:
        cells = [f"{rec[k][0]:.1f} / {rec[k][1]:.1f}" for k in ("descriptor", "prior", "reranked")]
        print(f"{name:<16} {s1k:>10.0f} {mb1k:>6.1f} {cells[0]:>16} {cells[1]:>12} {cells[2]:>12}")
    if args.local_voting:
        print("\nlocal-feature voting (RootSIFT NBNN, ratio-weighted, no index, no prior):")
        r1, r10 = local_voting(db, pairs, origin, photos)
        print(f"R@1 / R@10 {r1:.1f} / {r10:.1f}")
    if not args.no_pipeline and args.models:
        name = args.models[0]
        print(f"\npipeline with {name} (index build -> import -> import-nasa -> localize -> export):")
        counts = pipeline(work, work / f"index-{name}", pairs, photos, nasa, env)
        print(f"{counts['correct']} of {len(pairs)} localized correctly, {counts['wrong']} "
              f"confidently wrong, {counts['review']} left for review "
              f"({counts['seconds_per_photo']} s/photo)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
