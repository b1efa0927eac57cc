"""AstroLoc's training data from the catalogue: photo/satellite-block pairs, split by place.

Every photo an analyst accepted (and, when asked, every confident auto-accepted one) has a
footprint; the blocks of a tile source whose footprint overlaps it by IoU >= `min_iou` (any
zoom the source has) are its positives, as AstroLoc builds its pairs from NASA photos with
full footprints. Hard negatives are blocks inside the photo's search circle (the ground an
ISS camera could see from the photo's nadir) that do not touch the photo: same region,
similar landscape, wrong place.

Train and validation never share an area: the world is cut into cells of `cell_deg`
degrees, a hash sends about `val_fraction` of the cells to validation, and a photo or a block
belongs to a split only when its corners and centre all lie in cells of that split (those on a
border are left out and counted).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import shapely

from astroapp.catalog.db import Catalog
from astroapp.geo.footprint import Footprint
from astroapp.geo.places import place_cell
from astroapp.geo.sources.base import TileRef, TileSource
from astroapp.index.region import Region
from astroapp.progress import Progress, ProgressFn, ignore

TRAIN, VAL = "train", "val"
CLUSTER_IOU = 0.25  # blocks this alike are one place for the cluster loss (a zoom+1 child: 0.25)


class PairError(ValueError):
    """No usable training data (the message says why and what to do)."""


@dataclass(frozen=True)
class PhotoPairs:
    """One catalogued photo, its footprint and its blocks (indices into `PairSet.blocks`)."""

    photo_id: int
    name: str
    path: str
    footprint: Footprint
    split: str
    cell: str
    positives: tuple[tuple[int, float], ...]  # (block, IoU), best first
    intersecting: frozenset[int]  # every block touching the footprint (EarthLoc's "correct")
    negatives: tuple[int, ...]  # blocks of the search circle that do not touch the photo


@dataclass
class PairSet:
    source_id: str
    blocks: list[TileRef]
    photos: list[PhotoPairs]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (photo name, why)
    settings: dict = field(default_factory=dict)
    val_database: tuple[int, ...] = ()  # validation blocks in the validation photos' search circles

    def split(self, name: str) -> list[PhotoPairs]:
        return [p for p in self.photos if p.split == name]

    def summary(self) -> dict[str, dict[str, int]]:
        out = {}
        for name in (TRAIN, VAL):
            photos = self.split(name)
            out[name] = {
                "photos": len(photos),
                "pairs": sum(len(p.positives) for p in photos),
                "negatives": sum(len(p.negatives) for p in photos),
                "places": len({p.cell for p in photos}),
                "blocks": len({b for p in photos for b, _ in p.positives} | {b for p in photos for b in p.negatives}
                              | (set(self.val_database) if name == VAL else set())),
            }
        return out

    def report_lines(self) -> list[str]:
        """What a dry run prints: photos, pairs and places per split, and what was left out."""
        s = self.settings
        lines = [f"tile source {self.source_id}: {len(self.blocks)} blocks used; positives at IoU >= "
                 f"{s.get('min_iou')}, places = {s.get('cell_deg'):g}-degree cells"]
        for name, row in self.summary().items():
            lines.append(f"{name:<5} {row['photos']} photos, {row['pairs']} pairs, {row['negatives']} hard negatives, "
                         f"{row['places']} places, {row['blocks']} blocks")
        if not self.split(VAL):
            lines.append("no validation photos: the trained model cannot be compared with the current default "
                         "(more accepted photos in more places, or another --cell-deg / --val-fraction)")
        if self.skipped:
            lines.append(f"left out: {len(self.skipped)} photos")
            lines += [f"  {name}: {why}" for name, why in self.skipped[:20]]
            if len(self.skipped) > 20:
                lines.append(f"  ... and {len(self.skipped) - 20} more")
        return lines

    def fingerprint(self) -> str:
        """Identifies the data (which photos, footprints and blocks): a resumed run must see the same."""
        h = hashlib.sha256(self.source_id.encode())
        for p in self.photos:
            h.update(f"{p.photo_id}:{p.split}:{p.footprint.to_list()}:{p.positives}:{p.negatives}".encode())
        for b in self.blocks:
            h.update(b.tile_id.encode())
        h.update(str(self.val_database).encode())
        return h.hexdigest()[:16]


def _cell_hash(cell: tuple[int, int], cell_deg: float) -> float:
    digest = hashlib.sha1(f"astroapp-train-place:{cell_deg:g}:{cell[0]}:{cell[1]}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32


def _cells(fp: Footprint, cell_deg: float) -> set[tuple[int, int]]:
    return {place_cell(lon, lat, cell_deg) for lon, lat in (*fp.corners, fp.centroid())}


class PlaceSplit:
    """Cell -> split by a stable hash; among the photos' cells (two or more), at least one of each."""

    def __init__(self, photo_cells: Iterable[tuple[int, int]], cell_deg: float, val_fraction: float):
        self.cell_deg, self.val_fraction = cell_deg, val_fraction
        cells = sorted(set(photo_cells))
        score = {c: _cell_hash(c, cell_deg) for c in cells}
        self.forced: dict[tuple[int, int], str] = {}
        hashed = {c: self._hashed(c) for c in cells}
        if len(cells) >= 2 and VAL not in hashed.values():
            self.forced[min(cells, key=score.__getitem__)] = VAL
        if len(cells) >= 2 and TRAIN not in hashed.values():
            self.forced[max(cells, key=score.__getitem__)] = TRAIN

    def _hashed(self, cell: tuple[int, int]) -> str:
        return VAL if _cell_hash(cell, self.cell_deg) < self.val_fraction else TRAIN

    def __getitem__(self, cell: tuple[int, int]) -> str:
        return self.forced.get(cell) or self._hashed(cell)

    def of(self, fp: Footprint) -> str | None:
        """The split of every corner and the centre of `fp`, None when they straddle both."""
        splits = {self[c] for c in _cells(fp, self.cell_deg)}
        return splits.pop() if len(splits) == 1 else None


def training_photos(catalog: Catalog, include_auto: bool = False, min_confidence: float = 0.9
                    ) -> tuple[list[tuple[int, str, str, Footprint, tuple[float, float] | None]], list[tuple[str, str]]]:
    """(id, name, path, footprint, NASA nadir or None) of the photos to learn from, and those left out."""
    statuses = ["accepted"] + (["localized"] if include_auto else [])
    out, skipped = [], []
    for photo in catalog.photos(status=statuses):
        loc = catalog.latest_localization(photo.id)
        if loc is None or not loc.footprint:
            skipped.append((photo.name, "no footprint in its current localization"))
            continue
        if photo.status == "localized" and not (loc.accepted_auto and (loc.confidence or 0.0) >= min_confidence):
            skipped.append((photo.name, f"auto-localized below confidence {min_confidence:g}"))
            continue
        meta = catalog.nasa_metadata(photo.id)
        nadir = (meta.nadir_lon, meta.nadir_lat) if meta and meta.nadir_lon is not None and meta.nadir_lat is not None else None
        out.append((photo.id, photo.name, photo.path, Footprint.from_list(loc.footprint), nadir))
    return out, skipped


def build_pairs(
    catalog: Catalog,
    source: TileSource,
    *,
    min_iou: float = 0.1,
    zooms: Iterable[int] | None = None,
    include_auto: bool = False,
    min_confidence: float = 0.9,
    cell_deg: float = 10.0,
    val_fraction: float = 0.2,
    negatives: int = 8,
    max_tilt_deg: float = 50.0,
    seed: int = 0,
    progress: ProgressFn = ignore,
    cancel: threading.Event | None = None,
) -> PairSet:
    """The pairs, hard negatives and place split of the catalogue's accepted photos over `source`."""
    if not 0.0 < min_iou <= 1.0:
        raise PairError(f"--min-iou must be in (0, 1], got {min_iou}")
    if cell_deg <= 0 or cell_deg > 180:
        raise PairError(f"the place cell size must be in (0, 180] degrees, got {cell_deg}")
    photos, skipped = training_photos(catalog, include_auto, min_confidence)
    if not photos:
        what = "accepted" + (" or confident auto-accepted" if include_auto else "")
        raise PairError(f"the catalogue {catalog.path} has no {what} photos with a footprint to train on: "
                        "accept localized photos in the review first" + ("" if include_auto else
                        " (or add --include-auto for confident automatic localizations)"))
    wanted = set(zooms) if zooms else None
    refs = [r for r in source.tiles() if wanted is None or r.zoom in wanted]
    if not refs:
        raise PairError(f"the tile source {source.source_id} has no blocks" + (f" at zooms {sorted(wanted)}" if wanted else ""))
    polys = [r.footprint.polygon() for r in refs]
    tree = shapely.STRtree(polys)
    centres = np.array([r.footprint.centroid() for r in refs])
    place = PlaceSplit({place_cell(*fp.centroid(), cell_deg) for _, _, _, fp, _ in photos}, cell_deg, val_fraction)
    rng = np.random.default_rng(seed)
    used: dict[int, int] = {}  # source block index -> PairSet block index
    block_split: dict[int, str | None] = {}

    def split_of_block(i: int) -> str | None:
        if i not in block_split:
            block_split[i] = place.of(refs[i].footprint)
        return block_split[i]

    def use(i: int) -> int:
        return used.setdefault(i, len(used))

    out: list[PhotoPairs] = []
    val_db: set[int] = set()
    for n, (pid, name, path, fp, nadir) in enumerate(photos):
        if cancel is not None and cancel.is_set():
            break
        progress(Progress("pairs", n, len(photos), item=name))
        split = place.of(fp)
        if split is None:
            skipped.append((name, "straddles a train/validation border"))
            continue
        hits = tree.query(fp.polygon(), predicate="intersects").tolist()
        ious = [(i, fp.iou(refs[i].footprint)) for i in hits]
        pos = sorted(((i, v) for i, v in ious if v >= min_iou and split_of_block(i) == split), key=lambda t: -t[1])
        if not pos:
            best = max((v for _, v in ious), default=0.0)
            skipped.append((name, f"no block of {source.source_id} inside its split overlaps it by IoU >= {min_iou:g}"
                                  f" (best {best:.2f})"))
            continue
        lon, lat = nadir if nadir is not None else fp.centroid()
        region = Region.around_nadir(lon, lat, max_tilt_deg=max_tilt_deg)
        dist = region.distances_km(centres[:, 0], centres[:, 1])
        touching = set(hits)
        order = [int(i) for i in np.argsort(dist, kind="stable") if int(i) not in touching]
        inside = [i for i in order if dist[i] <= region.radius_km and split_of_block(i) == split]
        if split == VAL:
            val_db.update(inside)
        if len(inside) >= negatives:
            picked = rng.choice(inside, size=negatives, replace=False).tolist()
        else:  # blocks as large as the circle (coarse zooms): the nearest ones beyond it
            picked = inside + [i for i in order[: 20 * negatives + 50]
                               if dist[i] > region.radius_km and split_of_block(i) == split][: negatives - len(inside)]
        out.append(PhotoPairs(
            pid, name, path, fp, split, "{}_{}".format(*place_cell(*fp.centroid(), cell_deg)),
            tuple((use(i), round(float(v), 4)) for i, v in pos),
            frozenset(use(i) for i in hits if split_of_block(i) == split),
            tuple(use(i) for i in picked),
        ))
    progress(Progress("pairs", len(photos), len(photos), message=f"{len(out)} photos with pairs"))
    val_database = tuple(sorted({use(i) for i in val_db} | {b for p in out if p.split == VAL for b in p.intersecting}))
    blocks = [refs[i] for i in sorted(used, key=used.__getitem__)]
    return PairSet(source.source_id, blocks, out, skipped, {
        "min_iou": min_iou, "zooms": sorted(wanted) if wanted else None, "include_auto": include_auto,
        "min_confidence": min_confidence, "cell_deg": cell_deg, "val_fraction": val_fraction,
        "negatives": negatives, "max_tilt_deg": max_tilt_deg, "seed": seed}, val_database)


def block_neighbours(blocks: list[TileRef], min_iou: float = CLUSTER_IOU) -> tuple[list[set[int]], list[set[int]]]:
    """Per block: the blocks alike enough to count as the same place (IoU >= min_iou, itself
    included), and every block it touches (never a negative of it)."""
    polys = [b.footprint.polygon() for b in blocks]
    tree = shapely.STRtree(polys)
    alike, touching = [], []
    for i, b in enumerate(blocks):
        hits = tree.query(polys[i], predicate="intersects").tolist()
        touching.append(set(hits))
        alike.append({j for j in hits if j == i or b.footprint.iou(blocks[j].footprint) >= min_iou})
    return alike, touching
