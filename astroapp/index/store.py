"""On-disk state of an index folder: the SQLite tile table and the descriptor chunks.

Tile ids are dense integers in registration order; the vector of tile `i` at rotation `r`
(0..3, angle 90*r) has faiss label `4*i + r`. Chunks are `.npy` files of shape (n, 4, D)
covering tile ids [first, first+n); a chunk exists for the index only once its row is
committed in `chunks`, which happens after the file is fsynced and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from astroapp.atomic import atomic_path, remove_stray_temporaries
from astroapp.index.errors import IndexCorruptError
from astroapp.index.manifest import ModelFingerprint
from astroapp.index.region import EARTH_RADIUS_KM

TILES_DB = "tiles.sqlite"
CHUNKS_DIR = "chunks"
N_ROT = 4
LOCAL_SUFFIX = ".local.npz"  # a chunk's local-feature codes, beside it

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tiles (
    id INTEGER PRIMARY KEY,
    source_id TEXT NOT NULL,
    tile_id TEXT NOT NULL,
    footprint TEXT NOT NULL,
    zoom INTEGER,
    row INTEGER,
    col INTEGER,
    year INTEGER,
    center_lon REAL NOT NULL,
    center_lat REAL NOT NULL,
    radius_km REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    error TEXT,
    UNIQUE (source_id, tile_id)
);
CREATE TABLE IF NOT EXISTS chunks (
    first_id INTEGER PRIMARY KEY,
    count INTEGER NOT NULL,
    file TEXT NOT NULL,
    dtype TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sources (
    source_id TEXT PRIMARY KEY,
    spec TEXT,
    tiles INTEGER NOT NULL,
    errors TEXT NOT NULL DEFAULT '[]'
);
"""


def corners_of(footprint: Any) -> list[list[float]]:
    """4 x [lon, lat] from a Footprint (geo), or anything shaped like its corners."""
    if hasattr(footprint, "to_list"):
        corners = footprint.to_list()
    else:
        corners = getattr(footprint, "corners", footprint)
    out = [[float(c[0]), float(c[1])] for c in corners]
    if len(out) != 4:
        raise ValueError(f"a footprint has 4 corners, got {len(out)}")
    return out


def centres_and_radii(corners: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, 4, 2) lon/lat corners -> spherical centres (antimeridian-safe) and the distance
    from each centre to its farthest corner (km)."""
    c = np.radians(np.asarray(corners, dtype=np.float64).reshape(-1, 4, 2))
    lon, lat = c[..., 0], c[..., 1]
    x = (np.cos(lat) * np.cos(lon)).mean(axis=1)
    y = (np.cos(lat) * np.sin(lon)).mean(axis=1)
    z = np.sin(lat).mean(axis=1)
    clon = np.degrees(np.arctan2(y, x))
    clat = np.degrees(np.arctan2(z, np.hypot(x, y)))
    # haversine from each centre to its 4 corners
    dlat = lat - np.radians(clat)[:, None]
    dlon = lon - np.radians(clon)[:, None]
    a = np.sin(dlat / 2) ** 2 + np.cos(lat) * np.cos(np.radians(clat))[:, None] * np.sin(dlon / 2) ** 2
    d = 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))
    return clon, clat, d.max(axis=1)


def centre_and_radius(corners: Sequence[Sequence[float]]) -> tuple[float, float, float]:
    clon, clat, r = centres_and_radii(np.asarray(corners, dtype=np.float64)[None])
    return float(clon[0]), float(clat[0]), float(r[0])


@dataclass(frozen=True)
class ChunkInfo:
    first_id: int
    count: int
    file: str
    dtype: str


class TileStore:
    """The tile table and chunk list of one index folder (WAL SQLite, one writer)."""

    def __init__(self, folder: Path, *, create: bool = False, readonly: bool = False) -> None:
        self.folder = Path(folder)
        self.path = self.folder / TILES_DB
        if not create and not self.path.is_file():
            raise IndexCorruptError(f"{self.path} is missing: the index folder is incomplete",
                                    part="tiles")
        if create:
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / CHUNKS_DIR).mkdir(exist_ok=True)
        uri = f"file:{self.path}?mode=ro" if readonly else f"file:{self.path}"
        try:
            self.db = sqlite3.connect(uri, uri=True, timeout=30)
            if not readonly:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=FULL")
                self.db.executescript(SCHEMA)
            self.db.execute("SELECT count(*) FROM tiles").fetchone()
        except sqlite3.DatabaseError as exc:
            raise IndexCorruptError(f"{self.path} is not a readable tile table: {exc}",
                                    part="tiles") from exc

    def close(self) -> None:
        self.db.close()

    # --- model pinned to the folder -------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def pinned_model(self) -> ModelFingerprint | None:
        raw = self.get_meta("model")
        if raw is None:
            return None
        d = json.loads(raw)
        return ModelFingerprint(d["name"], d["weights_sha256"], int(d["descriptor_dim"]))

    # --- tiles --------------------------------------------------------------------------
    def tile_count(self) -> int:
        return int(self.db.execute("SELECT COALESCE(MAX(id) + 1, 0) FROM tiles").fetchone()[0])

    def known_tile_ids(self, source_id: str) -> set[str]:
        rows = self.db.execute("SELECT tile_id FROM tiles WHERE source_id=?", (source_id,))
        return {r[0] for r in rows}

    def register(self, refs: Iterable[Any], source_id: str, spec: str | None,
                 errors: Sequence[str]) -> list[tuple[int, Any]]:
        """Add the refs not yet in the table (one transaction); returns (id, ref) of new ones."""
        known = self.known_tile_ids(source_id)
        next_id = self.tile_count()
        new: list[tuple[int, Any]] = []
        corners: list[list[list[float]]] = []
        for ref in refs:
            if ref.tile_id in known:
                continue
            known.add(ref.tile_id)
            corners.append(corners_of(ref.footprint))
            new.append((next_id, ref))
            next_id += 1
        rows = []
        if new:
            clon, clat, rad = centres_and_radii(np.array(corners))
            for j, (tid, ref) in enumerate(new):
                rows.append((tid, source_id, ref.tile_id, json.dumps(corners[j]),
                             getattr(ref, "zoom", None), getattr(ref, "row", None),
                             getattr(ref, "col", None), getattr(ref, "year", None),
                             float(clon[j]), float(clat[j]), float(rad[j])))
        n_total = len(known)
        with self.db:
            self.db.executemany(
                "INSERT INTO tiles(id, source_id, tile_id, footprint, zoom, row, col, year,"
                " center_lon, center_lat, radius_km) VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
            self.db.execute(
                "INSERT OR REPLACE INTO sources(source_id, spec, tiles, errors) VALUES (?,?,?,?)",
                (source_id, spec, n_total, json.dumps(list(errors))))
        return new

    def tile_rows(self, n: int | None = None) -> list[tuple]:
        q = ("SELECT id, source_id, tile_id, footprint, zoom, year, center_lon, center_lat,"
             " radius_km, status FROM tiles")
        if n is not None:
            return self.db.execute(q + " WHERE id < ? ORDER BY id", (n,)).fetchall()
        return self.db.execute(q + " ORDER BY id").fetchall()

    def sources(self) -> list[tuple[str, str | None, int, list[str]]]:
        rows = self.db.execute("SELECT source_id, spec, tiles, errors FROM sources ORDER BY rowid")
        return [(r[0], r[1], r[2], json.loads(r[3])) for r in rows]

    def failed(self, n: int | None = None) -> list[tuple[int, str, str, str]]:
        rows = self.db.execute(
            "SELECT id, source_id, tile_id, error FROM tiles WHERE status='failed'"
            + (" AND id < ?" if n is not None else "") + " ORDER BY id",
            (n,) if n is not None else ())
        return rows.fetchall()

    # --- chunks -------------------------------------------------------------------------
    def chunks(self) -> list[ChunkInfo]:
        rows = self.db.execute("SELECT first_id, count, file, dtype FROM chunks ORDER BY first_id")
        return [ChunkInfo(*r) for r in rows]

    def embedded_upto(self) -> int:
        row = self.db.execute("SELECT COALESCE(MAX(first_id + count), 0) FROM chunks").fetchone()
        return int(row[0])

    def commit_chunk(self, first_id: int, desc: np.ndarray,
                     failures: Sequence[tuple[int, str]],
                     local: tuple[np.ndarray, np.ndarray] | None = None) -> ChunkInfo:
        """Write a chunk file (and, for a local-vote model, its tiles' feature codes `local`)
        durably, then record it and its tiles' status in one transaction."""
        name = f"chunk_{first_id:010d}.npy"
        path = self.folder / CHUNKS_DIR / name
        if local is not None:
            write_local_chunk(local_chunk_path(self.folder, f"{CHUNKS_DIR}/{name}"), *local)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, desc, allow_pickle=False)
        n = desc.shape[0]
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO chunks(first_id, count, file, dtype) VALUES (?,?,?,?)",
                (first_id, n, f"{CHUNKS_DIR}/{name}", str(desc.dtype)))
            self.db.execute("UPDATE tiles SET status='ok', error=NULL WHERE id >= ? AND id < ?",
                            (first_id, first_id + n))
            self.db.executemany("UPDATE tiles SET status='failed', error=? WHERE id=?",
                                [(err, tid) for tid, err in failures])
        return ChunkInfo(first_id, n, f"{CHUNKS_DIR}/{name}", str(desc.dtype))

    def remove_stray_files(self) -> None:
        """Temporary files of a killed build, and chunk files never committed."""
        committed = {c.file.split("/")[-1] for c in self.chunks()}
        committed |= {n.removesuffix(".npy") + LOCAL_SUFFIX for n in committed}
        for p in (self.folder / CHUNKS_DIR).glob("chunk_*"):
            if p.name not in committed:
                p.unlink(missing_ok=True)
        remove_stray_temporaries(self.folder)
        remove_stray_temporaries(self.folder / CHUNKS_DIR)


def local_chunk_path(folder: Path, chunk_file: str) -> Path:
    """Where a descriptor chunk's local-feature codes live (local-vote models)."""
    return Path(folder) / (chunk_file.removesuffix(".npy") + LOCAL_SUFFIX)


def write_local_chunk(path: Path, tiles: np.ndarray, codes: np.ndarray) -> None:
    """The feature codes of a chunk's tiles (the tile id of each feature and its code),
    durably: written before the chunk's row is committed."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, tile=np.asarray(tiles, dtype=np.int32), codes=np.asarray(codes, np.uint8))


def tiles_digest(rows: Sequence[tuple]) -> str:
    """A sha256 of the tile table's rows as `TileStore.tile_rows` returns them, column by
    column (1-2 s per million tiles): written to the manifest when the index is built and
    compared when it is opened, so that a changed or damaged row (a footprint that is not
    JSON any more, ...) is found before it is used."""
    h = hashlib.sha256()
    for j in range(len(rows[0]) if rows else 0):
        column = [r[j] for r in rows]
        if j in _TEXT_COLUMNS:
            h.update("\x1f".join(column).encode("utf-8", "surrogatepass"))
        else:
            h.update(np.array([np.nan if v is None else v for v in column],
                              dtype=np.float64).tobytes())
        h.update(b"\x1e")
    return h.hexdigest()


_TEXT_COLUMNS = (1, 2, 3, 9)  # source_id, tile_id, footprint, status (never NULL)


def load_chunk(folder: Path, info: ChunkInfo, dim: int, *, mmap: bool = True) -> np.ndarray:
    """A chunk's (n, 4, D) array, checked against its record; memory-mapped by default."""
    path = Path(folder) / info.file
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise IndexCorruptError(f"descriptor chunk {path} is unreadable ({exc}): "
                                "delete the index folder and rebuild", part="chunks") from exc
    if arr.shape != (info.count, N_ROT, dim) or str(arr.dtype) != info.dtype:
        raise IndexCorruptError(
            f"descriptor chunk {path} has shape {arr.shape} {arr.dtype}, expected "
            f"({info.count}, {N_ROT}, {dim}) {info.dtype}: rebuild the index", part="chunks")
    return arr
