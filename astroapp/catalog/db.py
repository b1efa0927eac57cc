"""The photo catalogue: one SQLite file shared by the CLI, the GUI and the pipeline.

A `Catalog` wraps one connection and must be used from the thread that opened it; threads
open their own (opening an up-to-date catalogue costs a few pragmas). WAL mode lets readers
run beside one writer, and `busy_timeout` makes concurrent writers wait instead of failing.
Every public write is its own transaction (or part of an explicit `transaction()`), so a
process killed at any point leaves a consistent file.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

# localized: confident, accepted automatically (calibrated threshold); review: localized but not
# confident, waiting for a person; accepted / rejected: a person's decision.
STATUSES = ("new", "localizing", "localized", "review", "accepted", "rejected", "failed")
REVIEW_ACTIONS = ("accept", "reject", "undo", "note")
BUSY_TIMEOUT_MS = 30_000


class CatalogError(Exception):
    """The catalogue file cannot be used (newer schema, not a catalogue, ...)."""


class CatalogReadOnlyError(CatalogError):
    """The catalogue can be read but not written (file or folder write-protected)."""


def _is_readonly(exc: sqlite3.Error) -> bool:
    name = getattr(exc, "sqlite_errorname", "")
    return name.startswith("SQLITE_READONLY") or "readonly database" in str(exc)


def utc_now() -> str:
    """Current time as the catalogue stores it: ISO 8601 UTC with milliseconds and `Z`."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# --------------------------------------------------------------------------- schema

_V1 = """
CREATE TABLE imports (
    id            INTEGER PRIMARY KEY,
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    paths         TEXT NOT NULL,              -- json list of the paths given
    state         TEXT NOT NULL DEFAULT 'running'
                  CHECK (state IN ('running', 'done', 'cancelled')),
    added         INTEGER NOT NULL DEFAULT 0,
    duplicates    INTEGER NOT NULL DEFAULT 0,
    failed        INTEGER NOT NULL DEFAULT 0,
    already       INTEGER NOT NULL DEFAULT 0,  -- files already in the catalogue (re-runs)
    pid           INTEGER,                     -- the importing process, to spot dead runs
    host          TEXT
);

CREATE TABLE photos (
    id              INTEGER PRIMARY KEY,
    path            TEXT NOT NULL,
    sha256          TEXT UNIQUE,               -- NULL only when the file could not be read
    size_bytes      INTEGER,
    width           INTEGER,
    height          INTEGER,
    format          TEXT,
    nasa_id         TEXT,                      -- normalised, e.g. ISS064-E-358
    mission         TEXT,
    roll            TEXT,
    frame           INTEGER,
    captured_at     TEXT,                      -- EXIF DateTimeOriginal (+SubSec), GMT
    focal_length_mm REAL,
    camera_make     TEXT,
    camera_model    TEXT,
    imported_at     TEXT NOT NULL,
    import_id       INTEGER REFERENCES imports(id) ON DELETE SET NULL,
    status          TEXT NOT NULL DEFAULT 'new' CHECK (status IN
                    ('new', 'localizing', 'localized', 'accepted', 'rejected', 'failed')),
    status_reason   TEXT,
    updated_at      TEXT NOT NULL
);
CREATE INDEX photos_status ON photos(status);
CREATE INDEX photos_nasa_id ON photos(nasa_id);
CREATE INDEX photos_path ON photos(path);
CREATE INDEX photos_captured_at ON photos(captured_at);

-- JPEG previews apart from photos, so that scanning photo rows never walks blob pages.
CREATE TABLE thumbnails (
    photo_id        INTEGER PRIMARY KEY REFERENCES photos(id) ON DELETE CASCADE,
    jpeg            BLOB NOT NULL
);

CREATE TABLE nasa_metadata (
    nasa_id         TEXT PRIMARY KEY,          -- attached to photos by their nasa_id
    center_lon      REAL,
    center_lat      REAL,
    nadir_lon       REAL,
    nadir_lat       REAL,
    altitude_km     REAL,
    focal_length_mm REAL,
    tilt_deg        REAL,
    cloud_pct       REAL,
    source          TEXT,                      -- the CSV it came from
    imported_at     TEXT NOT NULL
);

CREATE TABLE localizations (
    id              INTEGER PRIMARY KEY,
    photo_id        INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
    created_at      TEXT NOT NULL,
    method          TEXT,                      -- json: model, index, matcher
    tile_id         TEXT,
    source_id       TEXT,
    angle           INTEGER,
    rank            INTEGER,
    footprint       TEXT,                      -- json 4 x [lon, lat], TL, TR, BR, BL
    center_lon      REAL,
    center_lat      REAL,
    area_km2        REAL,
    confidence      REAL,
    inliers         INTEGER,
    homography      TEXT,                      -- json 3x3
    gcps            TEXT,                      -- json
    correspondences TEXT,                      -- json
    timings         TEXT,                      -- json
    accepted_auto   INTEGER
);
CREATE INDEX localizations_photo ON localizations(photo_id, id);

CREATE TABLE candidates (
    id              INTEGER PRIMARY KEY,
    localization_id INTEGER NOT NULL REFERENCES localizations(id) ON DELETE CASCADE,
    rank            INTEGER NOT NULL,
    tile_id         TEXT NOT NULL,
    source_id       TEXT,
    angle           INTEGER,
    score           REAL,
    footprint       TEXT
);
CREATE INDEX candidates_localization ON candidates(localization_id, rank);

CREATE TABLE review_events (
    id              INTEGER PRIMARY KEY,
    photo_id        INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
    who             TEXT NOT NULL,
    at              TEXT NOT NULL,
    action          TEXT NOT NULL CHECK (action IN ('accept', 'reject', 'undo', 'note')),
    note            TEXT,
    previous_status TEXT
);
CREATE INDEX review_events_photo ON review_events(photo_id, id);
"""

_V2 = """
-- NASA sun geometry and feature text; which review event an undo reverted.
ALTER TABLE nasa_metadata ADD COLUMN sun_elevation_deg REAL;
ALTER TABLE nasa_metadata ADD COLUMN sun_azimuth_deg REAL;
ALTER TABLE nasa_metadata ADD COLUMN features TEXT;
ALTER TABLE review_events ADD COLUMN undoes INTEGER REFERENCES review_events(id);
"""

_V3 = """
-- NASA's tilt as a code where it is not given in degrees (NV, LO, HO: near vertical, low
-- oblique, high oblique); astroapp.geo.viewing turns it into a range of degrees.
ALTER TABLE nasa_metadata ADD COLUMN tilt_code TEXT;
"""

_V3_STATUSES = "('new', 'localizing', 'localized', 'accepted', 'rejected', 'failed')"
_V4_STATUSES = "('new', 'localizing', 'localized', 'review', 'accepted', 'rejected', 'failed')"
_V3_REVIEW_PREFIX = "needs review"


def _v4_review_status(con: sqlite3.Connection) -> None:
    """'review' becomes a status of its own (it was 'localized' with a status reason starting
    'needs review', so filters ran in Python and exports took such photos as localized).

    SQLite cannot alter a CHECK constraint: the photos table is rebuilt the documented way
    (new table, copy, drop, rename; foreign keys are off during migrations, so rows keep
    their ids and nothing cascades), then the old 'needs review' rows are converted.
    """
    sql = con.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'photos'"
    ).fetchone()[0]
    if _V3_STATUSES not in sql:
        raise CatalogError("unexpected photos table: cannot add the 'review' status")
    indexes = [r[0] for r in con.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'photos' "
        "AND sql IS NOT NULL")]
    cols = ", ".join(r[1] for r in con.execute("PRAGMA table_info(photos)"))
    con.execute(sql.replace(_V3_STATUSES, _V4_STATUSES)
                .replace("CREATE TABLE photos", "CREATE TABLE photos_v4", 1))
    con.execute(f"INSERT INTO photos_v4 ({cols}) SELECT {cols} FROM photos")
    con.execute("DROP TABLE photos")
    con.execute("ALTER TABLE photos_v4 RENAME TO photos")
    for statement in indexes:
        con.execute(statement)
    con.execute(
        "UPDATE photos SET status = 'review', status_reason = nullif(trim(ltrim("
        "substr(status_reason, ?), ':')), '') WHERE status = 'localized' "
        "AND status_reason LIKE ? || '%'",
        (len(_V3_REVIEW_PREFIX) + 1, _V3_REVIEW_PREFIX),
    )


GROUND_HOMOGRAPHY = "photo px (edge coordinates) -> EPSG:3857 m"  # method["homography"]


def _v5_ground_homography(con: sqlite3.Connection) -> None:
    """Stored homographies become photo px -> EPSG:3857 metres (they mapped to a surroundings
    grid that was never stored). Each is refitted from the row's own GCPs (photo px ->
    lon/lat, exact under that projective mapping); a row without usable GCPs keeps its
    matrix and has no `method.homography` note, which says what it is."""
    import math

    import numpy as np

    rows = con.execute("SELECT id, method, gcps FROM localizations "
                       "WHERE homography IS NOT NULL AND gcps IS NOT NULL").fetchall()
    for loc_id, method_text, gcps_text in rows:
        try:
            pts = np.asarray([list(g)[:4] for g in json.loads(gcps_text)], dtype=float)
            method = json.loads(method_text) if method_text else {}
        except (TypeError, ValueError):
            continue
        if (pts.ndim != 2 or pts.shape[1] != 4 or len(pts) < 4 or not np.isfinite(pts).all()
                or not isinstance(method, dict) or np.abs(pts[:, 3]).max() >= 85.06):
            continue
        from astroapp.geo.footprint import lons_near

        lon = lons_near(pts[:, 2], pts[0, 2])  # one run across the antimeridian
        radius = 6378137.0
        mx = radius * np.radians(lon)
        my = radius * np.log(np.tan(math.pi / 4 + np.radians(pts[:, 3]) / 2))
        hmat = _fit_projective(pts[:, :2], np.column_stack([mx, my]))
        if hmat is None:
            continue
        method["homography"] = GROUND_HOMOGRAPHY
        con.execute("UPDATE localizations SET homography = ?, method = ? WHERE id = ?",
                    (json.dumps(hmat.tolist()), json.dumps(method), loc_id))


def _fit_projective(src: Any, dst: Any) -> Any:
    """Least-squares homography src -> dst (normalised DLT); None when degenerate."""
    import numpy as np

    def norm(p: Any) -> Any:
        shift = p.mean(axis=0)
        scale = float(np.abs(p - shift).max()) or 1.0
        return np.array([[1 / scale, 0, -shift[0] / scale], [0, 1 / scale, -shift[1] / scale],
                         [0, 0, 1.0]])

    ts, td = norm(src), norm(dst)
    a = (ts @ np.column_stack([src, np.ones(len(src))]).T).T
    b = (td @ np.column_stack([dst, np.ones(len(dst))]).T).T
    rows = []
    for (x, y, _), (u, v, _) in zip(a, b, strict=True):
        rows.append([-x, -y, -1, 0, 0, 0, u * x, u * y, u])
        rows.append([0, 0, 0, -x, -y, -1, v * x, v * y, v])
    _, sing, vt = np.linalg.svd(np.asarray(rows))
    if sing[-2] < 1e-12:
        return None
    hmat = np.linalg.inv(td) @ vt[-1].reshape(3, 3) @ ts
    if abs(hmat[2, 2]) < 1e-15:
        return None
    return hmat / hmat[2, 2]


# MIGRATIONS[i] brings a catalogue from user_version i to i + 1. Append only; never edit.
MIGRATIONS: list[str | Callable[[sqlite3.Connection], None]] = [
    _V1, _V2, _V3, _v4_review_status, _v5_ground_homography]
SCHEMA_VERSION = len(MIGRATIONS)


# --------------------------------------------------------------------------- records


@dataclass
class Photo:
    id: int
    path: str
    sha256: str | None
    size_bytes: int | None
    width: int | None
    height: int | None
    format: str | None
    nasa_id: str | None
    mission: str | None
    roll: str | None
    frame: int | None
    captured_at: str | None
    focal_length_mm: float | None
    camera_make: str | None
    camera_model: str | None
    imported_at: str
    import_id: int | None
    status: str
    status_reason: str | None
    updated_at: str
    confidence: float | None = None  # of the latest localization, if any
    localization_id: int | None = None  # the latest localization, if any

    @property
    def name(self) -> str:
        return Path(self.path).name

    @property
    def label(self) -> str:
        """How a user names the photo (progress events, the UI): its NASA id, else its file."""
        return self.nasa_id or self.name


@dataclass
class Localization:
    id: int
    photo_id: int
    created_at: str
    method: dict | None
    tile_id: str | None
    source_id: str | None
    angle: int | None
    rank: int | None
    footprint: list[list[float]] | None  # 4 x [lon, lat]; Footprint.from_list() it
    center_lon: float | None
    center_lat: float | None
    area_km2: float | None
    confidence: float | None
    inliers: int | None
    homography: list[list[float]] | None
    gcps: Any
    correspondences: Any
    timings: dict | None
    accepted_auto: bool | None


@dataclass
class StoredCandidate:
    id: int
    localization_id: int
    rank: int
    tile_id: str
    source_id: str | None
    angle: int | None
    score: float | None
    footprint: list[list[float]] | None


@dataclass
class ReviewEvent:
    id: int
    photo_id: int
    who: str
    at: str
    action: str
    note: str | None
    previous_status: str | None
    undoes: int | None


@dataclass
class NasaMetadata:
    nasa_id: str
    center_lon: float | None
    center_lat: float | None
    nadir_lon: float | None
    nadir_lat: float | None
    altitude_km: float | None
    focal_length_mm: float | None
    tilt_deg: float | None
    cloud_pct: float | None
    sun_elevation_deg: float | None
    sun_azimuth_deg: float | None
    features: str | None
    source: str | None
    imported_at: str
    tilt_code: str | None = None  # NASA's NV / LO / HO where no tilt in degrees is given


@dataclass
class ImportRecord:
    id: int
    started_at: str
    finished_at: str | None
    paths: list[str]
    state: str  # running | done | cancelled | interrupted (process died mid-way)
    added: int
    duplicates: int
    failed: int
    already: int


_PHOTO_COLUMNS = [f.name for f in fields(Photo) if f.name not in ("confidence", "localization_id")]
_PHOTO_SELECT = (
    "SELECT "
    + ", ".join(f"p.{c}" for c in _PHOTO_COLUMNS)
    + ", l.confidence, l.id FROM photos p LEFT JOIN localizations l ON l.id = "
    "(SELECT MAX(id) FROM localizations WHERE photo_id = p.id)"
)
_LOC_JSON = ("method", "footprint", "homography", "gcps", "correspondences", "timings")
_LOC_FIELDS = [f.name for f in fields(Localization) if f.name not in ("id", "photo_id", "created_at")]
_PHOTO_WRITABLE = [
    c for c in _PHOTO_COLUMNS if c not in ("id", "imported_at", "updated_at", "status")
] + ["status", "thumbnail"]


def _jsonable(value: Any) -> Any:
    """numpy arrays/scalars, Footprints and tuples to plain JSON values."""
    if hasattr(value, "to_list"):
        return value.to_list()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(_jsonable(value), separators=(",", ":"))


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _date_bound(value: str | date | datetime | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    if isinstance(value, date):
        return value.isoformat()
    return str(value).strip()


# --------------------------------------------------------------------------- catalogue


class Catalog:
    """One connection to the catalogue file; use from one thread; closes on `with` exit."""

    def __init__(self, path: str | Path | None = None, *, timeout_ms: int = BUSY_TIMEOUT_MS):
        if path is None:
            from astroapp.config import default_catalog_path

            path = default_catalog_path()
        self.path = Path(path).expanduser()
        if self.path.is_dir():
            raise CatalogError(f"{self.path} is a folder, not a catalogue file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._thread = threading.get_ident()
        try:
            self._con = sqlite3.connect(
                self.path, timeout=timeout_ms / 1000, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise CatalogError(f"cannot open catalogue {self.path}: {exc}") from exc
        self._depth = 0
        try:
            self._con.execute(f"PRAGMA busy_timeout = {int(timeout_ms)}")
            self._con.execute("PRAGMA foreign_keys = ON")
            mode = self._con.execute("PRAGMA journal_mode").fetchone()[0]
            if mode.lower() != "wal":
                self._con.execute("PRAGMA journal_mode = WAL")
            self._con.execute("PRAGMA synchronous = NORMAL")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self._con.close()
            if _is_readonly(exc):
                raise self._readonly_error(exc) from exc
            raise CatalogError(f"{self.path} is not a usable catalogue: {exc}") from exc
        except BaseException:
            self._con.close()
            raise

    # ---- lifecycle

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Catalog({str(self.path)!r})"

    @property
    def connection(self) -> sqlite3.Connection:
        """The raw connection, for read-only queries other modules need (same thread only)."""
        return self._con

    @property
    def schema_version(self) -> int:
        return self._con.execute("PRAGMA user_version").fetchone()[0]

    def _migrate(self) -> None:
        version = self.schema_version
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise CatalogError(
                f"{self.path} has schema version {version}; this astroapp knows up to "
                f"{SCHEMA_VERSION}: upgrade astroapp"
            )
        # Off while migrating (SQLite's procedure for rebuilding a table: dropping the old
        # one must not cascade); checked before the commit instead.
        self._con.execute("PRAGMA foreign_keys = OFF")
        self._con.execute("BEGIN IMMEDIATE")
        try:
            version = self.schema_version  # another process may have migrated meanwhile
            if version == 0 and self._con.execute(
                "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
            ).fetchone()[0]:
                raise CatalogError(f"{self.path} is an SQLite file but not an astroapp catalogue")
            for step in range(version, SCHEMA_VERSION):
                migration = MIGRATIONS[step]
                if callable(migration):
                    migration(self._con)
                else:
                    for statement in _split_sql(migration):
                        self._con.execute(statement)
                self._con.execute(f"PRAGMA user_version = {step + 1}")
            fk = self._con.execute("PRAGMA foreign_key_check").fetchall()
            if fk:
                raise CatalogError(f"{self.path}: foreign key violations after migration: {fk[:3]}")
            self._con.execute("COMMIT")
        except BaseException:
            self._con.execute("ROLLBACK")
            raise
        finally:
            self._con.execute("PRAGMA foreign_keys = ON")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Group writes atomically; nests (inner blocks join the outer transaction)."""
        if self._depth:
            self._depth += 1
            try:
                yield self._con
            finally:
                self._depth -= 1
            return
        self._con.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield self._con
        except BaseException as exc:
            self._depth = 0
            self._con.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError) and _is_readonly(exc):
                raise self._readonly_error(exc) from exc
            raise
        self._depth = 0
        self._con.execute("COMMIT")

    def _readonly_error(self, exc: Exception) -> CatalogReadOnlyError:
        return CatalogReadOnlyError(
            f"catalogue {self.path} is read-only ({exc}): nothing was changed; make the file "
            "and its folder writable, or use another catalogue (--catalog)")

    def check_writable(self) -> None:
        """Raise CatalogReadOnlyError now, before any work, when writes would fail: tries a
        real write (the schema version, unchanged) and rolls it back."""
        if self._depth:
            return
        self._con.execute("BEGIN IMMEDIATE")
        try:
            self._con.execute(f"PRAGMA user_version = {int(self.schema_version)}")
        except sqlite3.OperationalError as exc:
            if _is_readonly(exc):
                raise self._readonly_error(exc) from exc
            raise
        finally:
            self._con.execute("ROLLBACK")

    def integrity_check(self) -> str:
        return self._con.execute("PRAGMA integrity_check").fetchone()[0]

    # ---- photos

    def add_photo(self, *, path: str | Path, import_id: int | None = None, **values: Any) -> int:
        """Insert one photo record (importer use); returns its id. Unknown keys are errors."""
        unknown = set(values) - set(_PHOTO_WRITABLE)
        if unknown:
            raise TypeError(f"unknown photo fields: {sorted(unknown)}")
        status = values.get("status", "new")
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        thumbnail = values.pop("thumbnail", None)
        now = utc_now()
        row = {"path": str(path), "import_id": import_id, **values,
               "imported_at": now, "updated_at": now}
        cols = ", ".join(row)
        marks = ", ".join(f":{c}" for c in row)
        with self.transaction():
            cur = self._con.execute(f"INSERT INTO photos ({cols}) VALUES ({marks})", row)
            photo_id = int(cur.lastrowid)
            if thumbnail is not None:
                self._con.execute(
                    "INSERT INTO thumbnails (photo_id, jpeg) VALUES (?, ?)", (photo_id, thumbnail)
                )
        return photo_id

    def photos(
        self,
        status: str | Iterable[str] | None = None,
        mission: str | None = None,
        search: str | None = None,
        min_conf: float | None = None,
        max_conf: float | None = None,
        date_from: str | date | datetime | None = None,
        date_to: str | date | datetime | None = None,
        limit: int | None = None,
        offset: int = 0,
        ids: Iterable[int] | None = None,
    ) -> list[Photo]:
        """Photos matching every given filter, in import order.

        `search` matches file path, NASA id and camera (case-insensitive substring);
        confidence filters use the latest localization; `date_to` is inclusive at its own
        precision (`2021-03-04` includes that whole day).
        """
        where: list[str] = []
        params: list[Any] = []
        if status is not None:
            wanted = [status] if isinstance(status, str) else list(status)
            bad = [s for s in wanted if s not in STATUSES]
            if bad:
                raise ValueError(f"unknown status {bad[0]!r}; one of {', '.join(STATUSES)}")
            where.append(f"p.status IN ({', '.join('?' * len(wanted))})")
            params += wanted
        if mission:
            where.append("upper(p.mission) = upper(?)")
            params.append(mission.strip())
        if search:
            like = "%" + search.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            where.append(
                "(p.path LIKE ? ESCAPE '\\' OR p.nasa_id LIKE ? ESCAPE '\\'"
                " OR p.camera_model LIKE ? ESCAPE '\\')"
            )
            params += [like, like, like]
        if min_conf is not None:
            where.append("l.confidence >= ?")
            params.append(float(min_conf))
        if max_conf is not None:
            where.append("l.confidence <= ?")
            params.append(float(max_conf))
        lo, hi = _date_bound(date_from), _date_bound(date_to)
        if lo:
            where.append("p.captured_at >= ?")
            params.append(lo)
        if hi:
            where.append("substr(p.captured_at, 1, ?) <= ?")
            params += [len(hi.rstrip("Z")), hi.rstrip("Z")]
        if ids is not None:
            id_list = [int(i) for i in ids]
            if not id_list:
                return []
            where.append(f"p.id IN ({', '.join('?' * len(id_list))})")
            params += id_list
        sql = _PHOTO_SELECT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY p.id"
        if limit is not None or offset:
            sql += " LIMIT ? OFFSET ?"
            params += [-1 if limit is None else int(limit), int(offset)]
        return [Photo(*row) for row in self._con.execute(sql, params)]

    def get_photo(self, photo_id: int) -> Photo | None:
        row = self._con.execute(_PHOTO_SELECT + " WHERE p.id = ?", (int(photo_id),)).fetchone()
        return Photo(*row) if row else None

    def _require_photo(self, photo_id: int) -> Photo:
        photo = self.get_photo(photo_id)
        if photo is None:
            raise KeyError(f"no photo with id {photo_id}")
        return photo

    def photo_by_hash(self, sha256: str) -> Photo | None:
        row = self._con.execute(_PHOTO_SELECT + " WHERE p.sha256 = ?", (sha256.lower(),)).fetchone()
        return Photo(*row) if row else None

    def photos_by_path(self, path: str | Path) -> list[Photo]:
        rows = self._con.execute(_PHOTO_SELECT + " WHERE p.path = ?", (str(path),)).fetchall()
        return [Photo(*row) for row in rows]

    def photos_by_nasa_id(self, nasa_id: str) -> list[Photo]:
        rows = self._con.execute(_PHOTO_SELECT + " WHERE p.nasa_id = ?", (nasa_id,)).fetchall()
        return [Photo(*row) for row in rows]

    def count(self) -> int:
        return self._con.execute("SELECT count(*) FROM photos").fetchone()[0]

    def set_status(self, photo_id: int, status: str, reason: str | None = None) -> None:
        """Set a photo's status; `reason` (why it failed, ...) replaces the previous one."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; one of {', '.join(STATUSES)}")
        with self.transaction():
            cur = self._con.execute(
                "UPDATE photos SET status = ?, status_reason = ?, updated_at = ? WHERE id = ?",
                (status, reason, utc_now(), int(photo_id)),
            )
        if cur.rowcount == 0:
            raise KeyError(f"no photo with id {photo_id}")

    def counts_by_status(self) -> dict[str, int]:
        """Every status (zero included) -> number of photos."""
        counts = dict.fromkeys(STATUSES, 0)
        for status, n in self._con.execute("SELECT status, count(*) FROM photos GROUP BY status"):
            counts[status] = n
        return counts

    def thumbnail(self, photo_id: int) -> bytes | None:
        """The photo's JPEG thumbnail, None when it has none (failed imports)."""
        row = self._con.execute(
            "SELECT jpeg FROM thumbnails WHERE photo_id = ?", (int(photo_id),)
        ).fetchone()
        return bytes(row[0]) if row and row[0] is not None else None

    # ---- NASA metadata

    def upsert_nasa_metadata(self, nasa_id: str, source: str | None = None, **values: Any) -> None:
        allowed = {f.name for f in fields(NasaMetadata)} - {"nasa_id", "source", "imported_at"}
        unknown = set(values) - allowed
        if unknown:
            raise TypeError(f"unknown NASA metadata fields: {sorted(unknown)}")
        row = {"nasa_id": nasa_id, "source": source, "imported_at": utc_now(), **values}
        cols = ", ".join(row)
        marks = ", ".join(f":{c}" for c in row)
        updates = ", ".join(f"{c} = excluded.{c}" for c in row if c != "nasa_id")
        with self.transaction():
            self._con.execute(
                f"INSERT INTO nasa_metadata ({cols}) VALUES ({marks}) "
                f"ON CONFLICT(nasa_id) DO UPDATE SET {updates}",
                row,
            )

    def nasa_metadata(self, photo_id: int) -> NasaMetadata | None:
        """NASA's catalogue fields for this photo (joined by its NASA photo id)."""
        cols = ", ".join(f"n.{f.name}" for f in fields(NasaMetadata))
        row = self._con.execute(
            f"SELECT {cols} FROM photos p JOIN nasa_metadata n ON n.nasa_id = p.nasa_id "
            "WHERE p.id = ?",
            (int(photo_id),),
        ).fetchone()
        return NasaMetadata(*row) if row else None

    def nasa_metadata_by_id(self, nasa_id: str) -> NasaMetadata | None:
        cols = ", ".join(f.name for f in fields(NasaMetadata))
        row = self._con.execute(
            f"SELECT {cols} FROM nasa_metadata WHERE nasa_id = ?", (nasa_id,)
        ).fetchone()
        return NasaMetadata(*row) if row else None

    # ---- localizations

    def add_localization(self, photo_id: int, **values: Any) -> int:
        """Store one localization attempt (it becomes the photo's current one); returns its id.

        Keys are `Localization` fields. JSON columns accept numpy arrays / Footprints; a
        Footprint also fills centre and area when those are not given.
        """
        unknown = set(values) - set(_LOC_FIELDS)
        if unknown:
            raise TypeError(f"unknown localization fields: {sorted(unknown)}")
        fp = values.get("footprint")
        if fp is not None and hasattr(fp, "centroid"):
            if values.get("center_lon") is None or values.get("center_lat") is None:
                values["center_lon"], values["center_lat"] = (float(v) for v in fp.centroid())
            if values.get("area_km2") is None and hasattr(fp, "area_km2"):
                values["area_km2"] = float(fp.area_km2())
        row: dict[str, Any] = {"photo_id": int(photo_id), "created_at": utc_now()}
        for key, value in values.items():
            if key in _LOC_JSON:
                row[key] = _dumps(value)
            elif key == "accepted_auto":
                row[key] = None if value is None else int(bool(value))
            elif hasattr(value, "item"):  # numpy scalar
                row[key] = value.item()
            else:
                row[key] = value
        cols = ", ".join(row)
        marks = ", ".join(f":{c}" for c in row)
        with self.transaction():
            self._require_photo(photo_id)
            cur = self._con.execute(f"INSERT INTO localizations ({cols}) VALUES ({marks})", row)
        return int(cur.lastrowid)

    def add_candidates(self, localization_id: int, candidates: Iterable[Any]) -> None:
        """Store retrieval candidates (objects with or dicts of tile_id, source_id, angle,
        score, footprint, rank; rank defaults to the position)."""
        rows = []
        for pos, cand in enumerate(candidates):
            get = cand.get if isinstance(cand, Mapping) else lambda k, d=None, c=cand: getattr(c, k, d)
            score = get("score")
            rank = get("rank")
            angle = get("angle")
            rows.append((
                int(localization_id),
                pos if rank is None else int(rank),
                str(get("tile_id")),
                get("source_id"),
                None if angle is None else int(angle),
                None if score is None else float(score),
                _dumps(get("footprint")),
            ))
        with self.transaction():
            self._con.executemany(
                "INSERT INTO candidates (localization_id, rank, tile_id, source_id, angle, score,"
                " footprint) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def _localization(self, row: tuple) -> Localization:
        names = [f.name for f in fields(Localization)]
        data = dict(zip(names, row, strict=True))
        for key in _LOC_JSON:
            data[key] = _loads(data[key])
        if data["accepted_auto"] is not None:
            data["accepted_auto"] = bool(data["accepted_auto"])
        return Localization(**data)

    def latest_localization(self, photo_id: int) -> Localization | None:
        cols = ", ".join(f.name for f in fields(Localization))
        row = self._con.execute(
            f"SELECT {cols} FROM localizations WHERE photo_id = ? ORDER BY id DESC LIMIT 1",
            (int(photo_id),),
        ).fetchone()
        return self._localization(row) if row else None

    def localizations(self, photo_id: int) -> list[Localization]:
        """Every attempt for the photo, oldest first."""
        cols = ", ".join(f.name for f in fields(Localization))
        rows = self._con.execute(
            f"SELECT {cols} FROM localizations WHERE photo_id = ? ORDER BY id", (int(photo_id),)
        ).fetchall()
        return [self._localization(r) for r in rows]

    def get_localization(self, localization_id: int) -> Localization | None:
        cols = ", ".join(f.name for f in fields(Localization))
        row = self._con.execute(
            f"SELECT {cols} FROM localizations WHERE id = ?", (int(localization_id),)
        ).fetchone()
        return self._localization(row) if row else None

    def candidates(self, localization_id: int) -> list[StoredCandidate]:
        rows = self._con.execute(
            "SELECT id, localization_id, rank, tile_id, source_id, angle, score, footprint "
            "FROM candidates WHERE localization_id = ? ORDER BY rank, id",
            (int(localization_id),),
        ).fetchall()
        return [StoredCandidate(*r[:7], _loads(r[7])) for r in rows]

    # ---- review

    def record_review(self, photo_id: int, who: str, action: str, note: str | None = None) -> int:
        """Record a reviewer's accept/reject (sets the status) or note; returns the event id."""
        if action not in ("accept", "reject", "note"):
            raise ValueError(f"review action must be accept, reject or note, not {action!r}")
        if not who:
            raise ValueError("a review needs a reviewer name")
        with self.transaction():
            photo = self._require_photo(photo_id)
            cur = self._con.execute(
                "INSERT INTO review_events (photo_id, who, at, action, note, previous_status) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (photo.id, who, utc_now(), action, note, photo.status),
            )
            if action != "note":
                new = "accepted" if action == "accept" else "rejected"
                self._con.execute(
                    "UPDATE photos SET status = ?, status_reason = NULL, updated_at = ? WHERE id = ?",
                    (new, utc_now(), photo.id),
                )
        return int(cur.lastrowid)

    def review_many(self, photo_ids: Iterable[int], who: str, action: str,
                    note: str | None = None) -> list[int]:
        """Batch review: accept or reject many photos in one transaction (each gets its own
        undoable event). Accept skips photos without a footprint (nothing to accept) and
        those already in the target status; returns the ids whose status changed."""
        target = {"accept": "accepted", "reject": "rejected"}.get(action)
        if target is None:
            raise ValueError(f"batch review action must be accept or reject, not {action!r}")
        ids = [int(i) for i in photo_ids]
        changed = []
        with self.transaction():
            for pid in ids:
                photo = self.get_photo(pid)
                if photo is None or photo.status == target:
                    continue
                if action == "accept":
                    loc = self.latest_localization(pid)
                    if loc is None or not loc.footprint:
                        continue
                self.record_review(pid, who, action, note)
                changed.append(pid)
        return changed

    def missions(self) -> list[str]:
        """The distinct missions of the catalogued photos, sorted."""
        rows = self._con.execute(
            "SELECT DISTINCT mission FROM photos WHERE mission IS NOT NULL ORDER BY mission").fetchall()
        return [r[0] for r in rows]

    def current_footprints(self, near: tuple[float, float, float] | None = None,
                           exclude: int | None = None, limit: int | None = None
                           ) -> list[tuple[int, list, str]]:
        """(photo id, footprint corners, status) of every photo whose current localization has
        a footprint; `near` = (lon, lat, radius in degrees) keeps those centred within it
        (longitudes across the antimeridian too, at twice the radius)."""
        sql = ("SELECT l.photo_id, l.footprint, p.status FROM localizations l "
               "JOIN photos p ON p.id = l.photo_id "
               "WHERE l.id IN (SELECT MAX(id) FROM localizations GROUP BY photo_id) "
               "AND l.footprint IS NOT NULL")
        params: list[Any] = []
        if exclude is not None:
            sql += " AND l.photo_id != ?"
            params.append(int(exclude))
        if near is not None:
            lon, lat, radius = near
            sql += (" AND abs(l.center_lat - ?) < ? AND abs(((l.center_lon - ? + 540) % 360) - 180) < ?")
            params += [lat, radius, lon, 2 * radius]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return [(int(pid), _loads(fp), status) for pid, fp, status in self._con.execute(sql, params)]

    def remove_photos(self, photo_ids: Iterable[int]) -> int:
        """Delete photos from the catalogue with their localizations, candidates, thumbnails
        and review history (the files on disk are left alone); returns how many went."""
        ids = [int(i) for i in photo_ids]
        if not ids:
            return 0
        marks = ", ".join("?" * len(ids))
        with self.transaction():  # foreign keys cascade to the photo's other rows
            cur = self._con.execute(f"DELETE FROM photos WHERE id IN ({marks})", ids)
        return int(cur.rowcount)

    def undo_review(self, photo_id: int, who: str = "user") -> ReviewEvent | None:
        """Revert the latest accept/reject not yet undone: the photo gets back its previous
        status. Returns the event undone, None when there is nothing to undo."""
        with self.transaction():
            photo = self._require_photo(photo_id)
            row = self._con.execute(
                "SELECT id, photo_id, who, at, action, note, previous_status, undoes "
                "FROM review_events e WHERE photo_id = ? AND action IN ('accept', 'reject') "
                "AND NOT EXISTS (SELECT 1 FROM review_events u WHERE u.undoes = e.id) "
                "ORDER BY id DESC LIMIT 1",
                (photo.id,),
            ).fetchone()
            if row is None:
                return None
            event = ReviewEvent(*row)
            restored = event.previous_status or "new"
            self._con.execute(
                "INSERT INTO review_events (photo_id, who, at, action, note, previous_status,"
                " undoes) VALUES (?, ?, ?, 'undo', NULL, ?, ?)",
                (photo.id, who, utc_now(), photo.status, event.id),
            )
            self._con.execute(
                "UPDATE photos SET status = ?, updated_at = ? WHERE id = ?",
                (restored, utc_now(), photo.id),
            )
        return event

    def review_events(self, photo_id: int) -> list[ReviewEvent]:
        rows = self._con.execute(
            "SELECT id, photo_id, who, at, action, note, previous_status, undoes "
            "FROM review_events WHERE photo_id = ? ORDER BY id",
            (int(photo_id),),
        ).fetchall()
        return [ReviewEvent(*r) for r in rows]

    # ---- import batches

    def start_import(self, paths: Iterable[str | Path]) -> int:
        with self.transaction():
            cur = self._con.execute(
                "INSERT INTO imports (started_at, paths, pid, host) VALUES (?, ?, ?, ?)",
                (utc_now(), json.dumps([str(p) for p in paths]), os.getpid(), socket.gethostname()),
            )
        return int(cur.lastrowid)

    def update_import(self, import_id: int, *, state: str | None = None, **counts: int) -> None:
        allowed = {"added", "duplicates", "failed", "already"}
        if set(counts) - allowed:
            raise TypeError(f"unknown import counters: {sorted(set(counts) - allowed)}")
        sets = [f"{k} = :{k}" for k in counts]
        values: dict[str, Any] = {"id": int(import_id), **counts}
        if state is not None:
            sets += ["state = :state", "finished_at = :finished_at"]
            values.update(state=state, finished_at=utc_now())
        if not sets:
            return
        with self.transaction():
            self._con.execute(f"UPDATE imports SET {', '.join(sets)} WHERE id = :id", values)

    def imports(self) -> list[ImportRecord]:
        """Import batches, oldest first. A batch whose process died (kill -9, crash) without
        finishing reads as state `interrupted`."""
        rows = self._con.execute(
            "SELECT id, started_at, finished_at, paths, state, added, duplicates, failed, already,"
            " pid, host FROM imports ORDER BY id"
        ).fetchall()
        records = []
        for r in rows:
            state = r[4]
            if state == "running" and r[10] == socket.gethostname() and not _pid_alive(r[9]):
                state = "interrupted"
            records.append(ImportRecord(r[0], r[1], r[2], json.loads(r[3]), state, *r[5:9]))
        return records


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _split_sql(script: str) -> list[str]:
    """Statements of a migration script (no `;` inside literals in our scripts)."""
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
