"""Import a roll of photos (files, folders, .zip archives) into the catalogue.

Each file is hashed, checked (decoded fully enough to find truncation and corruption),
described (pixel size, NASA id, EXIF) and committed in its own transaction together with the
batch's counters, so an import killed at any moment leaves a consistent catalogue and
re-running it finishes the roll without adding anything twice. A bad file becomes a `failed`
record with its reason; the batch goes on.
"""

from __future__ import annotations

import errno
import hashlib
import io
import logging
import os
import sqlite3
import stat
import time
import zipfile
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Protocol

from PIL import Image, UnidentifiedImageError

from astroapp.atomic import atomic_path
from astroapp.catalog.db import Catalog
from astroapp.catalog.exif import read_exif
from astroapp.catalog.nasa_ids import parse_nasa_id
from astroapp.catalog.orientation import oriented_size
from astroapp.catalog.photo_reader import MAX_PHOTO_PIXELS
from astroapp.catalog.thumbnails import THUMBNAIL_SIZE, make_thumbnail
from astroapp.progress import Progress, ProgressFn

log = logging.getLogger(__name__)

SUPPORTED_FORMATS = ("JPEG", "PNG", "TIFF", "WEBP", "BMP", "MPO")
_IN_MEMORY_LIMIT = 256 * 2**20  # hash + decode from memory below this size, stream above
# Zip bomb guards: the whole archive, and any single entry.
MAX_ZIP_TOTAL = 64 * 2**30
MAX_ZIP_ENTRIES = 200_000
MAX_ZIP_RATIO = 200  # uncompressed / compressed, for entries above _RATIO_MIN_SIZE
_RATIO_MIN_SIZE = 16 * 2**20


class Cancel(Protocol):
    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class FileResult:
    """What happened to one input file."""

    path: str
    outcome: str  # added | duplicate | already | failed
    photo_id: int | None = None
    reason: str | None = None  # why it failed, or which photo it duplicates
    done: int = 0
    total: int = 0


@dataclass
class ImportReport:
    import_id: int
    total: int = 0
    added: int = 0
    duplicates: int = 0  # same content as a photo already catalogued under another path
    already: int = 0  # this very file was catalogued by an earlier run
    failed: int = 0
    cancelled: bool = False
    seconds: float = 0.0
    bytes: int = 0
    added_ids: list[int] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    duplicate_paths: list[tuple[str, int]] = field(default_factory=list)  # (path, existing id)

    @property
    def photos_per_second(self) -> float:
        return self.total / self.seconds if self.seconds > 0 else 0.0


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class _Item:
    """One file to import: on disk, an archive entry, or a refused archive entry."""

    path: Path  # where the file is (or will be, for archive entries)
    archive: Path | None = None
    entry: zipfile.ZipInfo | None = None
    refused: str | None = None  # reason the entry is not extracted

    @property
    def label(self) -> str:
        if self.archive is not None and self.refused:
            return printable_path(f"{self.archive}!{self.entry.filename if self.entry else '?'}")
        return printable_path(self.path)


def printable_path(path: str | Path) -> str:
    """The path as text that can be stored and printed: bytes of a file name that are not
    UTF-8 (Python keeps them as lone surrogates) become backslash escapes."""
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", "backslashreplace")
    return text


def _resolve(path: Path) -> Path:
    """The absolute, symlink-free path; a symlink loop (or an unreadable link) stays as given,
    made absolute, so that it is recorded as failed instead of stopping the batch."""
    try:
        return path.resolve()
    except (RuntimeError, OSError):
        return path.absolute()


def rolls_dir() -> Path:
    from astroapp.config import data_dir

    path = data_dir() / "rolls"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name in ("Thumbs.db", "desktop.ini")


def _file_sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _zip_target(archive: Path) -> Path:
    return rolls_dir() / f"{archive.stem}-{_file_sha256(archive)[:8]}"


def _safe_entry_path(target: Path, name: str) -> Path | None:
    """Where an archive entry goes under `target`; None if its name escapes it."""
    clean = name.replace("\\", "/")
    pure = PurePosixPath(clean)
    if clean.startswith("/") or pure.is_absolute() or ".." in pure.parts:
        return None
    if pure.parts and (":" in pure.parts[0]):  # C:... drive letters
        return None
    dest = (target / Path(*pure.parts)).resolve()
    root = target.resolve()
    if dest == root or not dest.is_relative_to(root):
        return None
    return dest


def _zip_items(archive: Path) -> list[_Item]:
    """The archive's entries as import items; refused ones carry their reason."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        return [_Item(archive, refused=f"not a readable zip archive: {exc}")]
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
    if len(infos) > MAX_ZIP_ENTRIES:
        return [_Item(archive, refused=f"zip archive has {len(infos)} entries (limit {MAX_ZIP_ENTRIES})")]
    total = sum(i.file_size for i in infos)
    if total > MAX_ZIP_TOTAL:
        return [_Item(archive, refused=f"zip archive would unpack to {total / 2**30:.1f} GiB "
                      f"(limit {MAX_ZIP_TOTAL / 2**30:.0f} GiB): refused as a possible zip bomb")]
    target = _zip_target(archive)
    items = []
    for info in sorted(infos, key=lambda i: i.filename):
        dest = _safe_entry_path(target, info.filename)
        parts = PurePosixPath(info.filename.replace("\\", "/")).parts
        hidden = any(_is_hidden(p) for p in parts if p not in ("..", "."))
        if dest is not None and (hidden or (parts and parts[0] == "__MACOSX")):
            continue
        refused = None
        if dest is None:
            refused = f"zip entry {info.filename!r} escapes the extraction folder: refused"
            dest = target
        elif stat.S_ISLNK(info.external_attr >> 16):
            refused = f"zip entry {info.filename!r} is a symbolic link: refused"
        elif info.file_size > _RATIO_MIN_SIZE and info.file_size > MAX_ZIP_RATIO * max(info.compress_size, 1):
            refused = (f"zip entry {info.filename!r} expands {info.file_size / max(info.compress_size, 1):.0f}x: "
                       "refused as a possible zip bomb")
        items.append(_Item(dest, archive=archive, entry=info, refused=refused))
    return items


def collect_items(paths: Iterable[str | Path]) -> list[_Item]:
    """Expand files, folders (recursively, hidden entries skipped) and .zip rolls."""
    items: list[_Item] = []
    seen: set[Path] = set()

    def add_file(path: Path) -> None:
        broken = path.is_symlink() and not path.exists()
        real = path.absolute() if broken else _resolve(path)
        if real in seen:
            return
        seen.add(real)
        if printable_path(real) != str(real):
            items.append(_Item(real, refused="the file name is not valid UTF-8: rename the file "
                                             "(or its folder) to import it"))
        elif broken:
            items.append(_Item(real, refused=_broken_link_reason(path)))
        elif path.suffix.lower() == ".zip":
            items.extend(_zip_items(real))
        else:
            items.append(_Item(real))

    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists() and not path.is_symlink():
            raise FileNotFoundError(f"no such file or folder: {path}")
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not _is_hidden(d))
                for name in sorted(files):
                    if not _is_hidden(name):
                        add_file(Path(root) / name)
        else:
            add_file(path)
    return items


def _broken_link_reason(path: Path) -> str:
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop (the link leads back to itself)"
        return f"broken symbolic link: {exc.strerror or exc}"
    return "broken symbolic link"


# --------------------------------------------------------------------------- one file


class _Rejected(Exception):
    """A file that cannot be catalogued as a photo; the message is the reason."""


def _extract(item: _Item) -> None:
    """Unpack one archive entry to its place (skipped if an intact copy is there)."""
    info = item.entry
    assert info is not None and item.archive is not None
    dest = item.path
    if dest.is_file() and dest.stat().st_size == info.file_size:
        crc = 0
        with open(dest, "rb") as fh:
            while block := fh.read(2**20):
                crc = zlib.crc32(block, crc)
        if crc == info.CRC:
            return
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with (atomic_path(dest) as tmp, zipfile.ZipFile(item.archive) as zf,
              zf.open(info) as src, open(tmp, "wb") as out):
            written = 0
            while block := src.read(2**20):
                written += len(block)
                if written > info.file_size:
                    raise _Rejected(f"zip entry {info.filename!r} is larger than declared")
                out.write(block)
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
        raise _Rejected(f"zip entry {info.filename!r} cannot be unpacked: {exc}") from exc


def _describe(path: Path, data: bytes | None) -> dict:
    """Photo fields of a valid image; raises _Rejected with a clear reason otherwise."""
    source = io.BytesIO(data) if data is not None else path
    # No warnings.catch_warnings() here: it is process-global and this runs in worker
    # threads. Pillow's bomb *warning* zone is refused by the explicit check below instead.
    try:
        image = Image.open(source)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _Rejected(f"decompression bomb refused: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise _Rejected("not an image (unrecognised file format)") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        kind = "truncated" if "truncated" in str(exc).lower() else "unreadable"
        raise _Rejected(f"{kind} image: {exc}") from exc
    with image:
        fmt = image.format or "?"
        if fmt not in SUPPORTED_FORMATS:
            raise _Rejected(
                f"unsupported image format {fmt} (supported: {', '.join(SUPPORTED_FORMATS[:-1])})"
            )
        width, height = image.size
        limit = MAX_PHOTO_PIXELS
        if width * height > limit:
            raise _Rejected(
                f"decompression bomb refused: {width}x{height} = {width * height} pixels "
                f"exceeds the limit of {limit}"
            )
        exif = read_exif(image)
        shown = oriented_size(image)  # the displayed frame: what every stored pixel refers to
        try:
            if fmt in ("JPEG", "MPO"):
                image.draft("RGB", (THUMBNAIL_SIZE, THUMBNAIL_SIZE))  # DCT-scaled decode
            image.load()  # decodes every byte: truncation and corruption surface here
            thumbnail = make_thumbnail(image)
        except (OSError, ValueError, SyntaxError, EOFError, zlib.error,
                Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            text = str(exc) or type(exc).__name__
            if "truncated" in text.lower():
                raise _Rejected(f"truncated image: {text}") from exc
            raise _Rejected(f"corrupt image: {text}") from exc
    return {
        "width": shown[0],
        "height": shown[1],
        "format": fmt,
        "captured_at": exif.captured_at,
        "focal_length_mm": exif.focal_length_mm,
        "camera_make": exif.camera_make,
        "camera_model": exif.camera_model,
        "thumbnail": thumbnail,
    }


@dataclass
class _Prepared:
    """The work done on one file outside the catalogue (in a worker thread)."""

    label: str
    base: dict  # path-derived and file fields: NASA id, size, sha256
    reason: str | None = None  # set when the file cannot be a photo
    described: dict | None = None  # image fields + thumbnail; None if skipped as known


def _lookup_hash(db_uri: str | None, sha: str) -> bool:
    """Whether the catalogue already holds this content (read-only, any thread)."""
    if db_uri is None:
        return False
    try:
        con = sqlite3.connect(db_uri, uri=True, timeout=30)
        try:
            return con.execute("SELECT 1 FROM photos WHERE sha256 = ?", (sha,)).fetchone() is not None
        finally:
            con.close()
    except sqlite3.Error:
        return False  # the committing thread checks again anyway


def _prepare(item: _Item, db_uri: str | None) -> _Prepared:
    """Unpack, hash and decode one file; never raises (a failure becomes the reason)."""
    base: dict = {}
    nasa = parse_nasa_id(item.path.name if item.entry is None else PurePosixPath(item.entry.filename).name)
    if nasa is not None:
        base.update(nasa_id=str(nasa), mission=nasa.mission, roll=nasa.roll, frame=nasa.frame)
    prep = _Prepared(item.label, base)
    if item.refused:
        prep.reason = item.refused
        return prep
    try:
        if item.entry is not None:
            _extract(item)
        st = item.path.stat()
        if not stat.S_ISREG(st.st_mode):
            prep.reason = "not a regular file"
            return prep
        base["size_bytes"] = st.st_size
        if st.st_size <= _IN_MEMORY_LIMIT:
            data: bytes | None = item.path.read_bytes()
            base["sha256"] = hashlib.sha256(data).hexdigest()
        else:
            data = None
            base["sha256"] = _file_sha256(item.path)
        if st.st_size == 0:
            prep.reason = "empty file"
        elif not _lookup_hash(db_uri, base["sha256"]):
            prep.described = _describe(item.path, data)
    except _Rejected as exc:
        prep.reason = str(exc)
    except OSError as exc:
        prep.reason = f"cannot read file: {exc.strerror or exc}"
    except MemoryError:
        prep.reason = "image too large to decode in memory"
    except Exception as exc:  # a bug or an exotic file must not stop the batch
        log.exception("unexpected error importing %s", item.label)
        prep.reason = f"unexpected error: {type(exc).__name__}: {exc}"
    return prep


class _Batch:
    """Commits prepared files in input order, each in its own transaction."""

    def __init__(self, catalog: Catalog, import_id: int) -> None:
        self.catalog = catalog
        self.report = ImportReport(import_id)

    def _counts(self) -> dict[str, int]:
        r = self.report
        return {"added": r.added, "duplicates": r.duplicates, "failed": r.failed, "already": r.already}

    def _commit(self, outcome: str, path: str, photo: dict | None) -> int | None:
        """Count the outcome and, for a new record, insert it: one transaction."""
        r = self.report
        setattr(r, outcome, getattr(r, outcome) + 1)
        photo_id = None
        try:
            with self.catalog.transaction():
                if photo is not None:
                    photo_id = self.catalog.add_photo(
                        path=path, import_id=r.import_id, **photo
                    )
                self.catalog.update_import(r.import_id, **self._counts())
        except BaseException:
            setattr(r, outcome, getattr(r, outcome) - 1)
            raise
        return photo_id

    def _known(self, path: str, sha: str | None) -> FileResult | None:
        if sha is not None:
            existing = self.catalog.photo_by_hash(sha)
        else:
            existing = next((p for p in self.catalog.photos_by_path(path) if p.sha256 is None), None)
        if existing is None:
            return None
        if existing.path == path:
            self._commit("already", path, None)
            return FileResult(path, "already", existing.id)
        self._commit("duplicates", path, None)
        self.report.duplicate_paths.append((path, existing.id))
        return FileResult(path, "duplicate", existing.id, f"same content as photo {existing.id} ({existing.path})")

    def commit(self, prep: _Prepared, item: _Item) -> FileResult:
        """Record one file. The check for a known file and the insert are one write
        transaction, so that two processes importing the same roll at once never both insert
        it (the second one sees the first one's record: a duplicate, not an error)."""
        r = self.report
        before = (self._counts(), r.bytes, len(r.added_ids), len(r.failures),
                  len(r.duplicate_paths))
        try:
            with self.catalog.transaction():
                return self._commit_file(prep, item)
        except BaseException:
            counts, r.bytes, n_added, n_failed, n_dup = before
            for key, value in counts.items():
                setattr(r, key, value)
            del r.added_ids[n_added:], r.failures[n_failed:], r.duplicate_paths[n_dup:]
            raise

    def _commit_file(self, prep: _Prepared, item: _Item) -> FileResult:
        path, base = prep.label, prep.base
        self.report.bytes += base.get("size_bytes") or 0
        known = self._known(path, base.get("sha256"))
        if known is not None:
            return known
        if prep.reason is None and prep.described is None:
            # judged known in the worker but gone since (deleted meanwhile): decode here
            prep = _prepare(item, None)
            if prep.reason is None and prep.described is None:
                prep.reason = "file changed while importing"
        if prep.reason is not None:
            photo_id = self._commit(
                "failed", path, {**prep.base, "status": "failed", "status_reason": prep.reason}
            )
            self.report.failures.append((path, prep.reason))
            log.debug("%s: %s", path, prep.reason)
            return FileResult(path, "failed", photo_id, prep.reason)
        photo_id = self._commit("added", path, {**prep.base, **prep.described, "status": "new"})
        self.report.added_ids.append(photo_id)
        return FileResult(path, "added", photo_id)


# --------------------------------------------------------------------------- API


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def iter_import(
    catalog: Catalog,
    paths: Iterable[str | Path],
    cancel: Cancel | None = None,
    report: list[ImportReport] | None = None,
    workers: int | None = None,
) -> Iterator[Progress]:
    """Import lazily, yielding one `Progress` per input file (GUI worker threads drive this):
    stage "import", `item` the file name, `message` its outcome (and why, when it failed or
    duplicates a photo), `photo_id` its photo, `result` its FileResult.

    Files are hashed and decoded by `workers` threads (default: up to 4 CPUs) and committed
    in input order by the calling thread, one transaction each. Stops between files once
    `cancel.is_set()`; the batch is then marked cancelled and everything imported so far
    stays. Pass a list as `report` to receive the ImportReport.
    """
    paths = [_resolve(Path(p).expanduser()) for p in paths]
    items = collect_items(paths)
    import_id = catalog.start_import(paths)
    batch = _Batch(catalog, import_id)
    if report is not None:
        report.append(batch.report)
    r = batch.report
    r.total = len(items)
    workers = default_workers() if workers is None else max(1, int(workers))
    db_uri = catalog.path.resolve().as_uri() + "?mode=ro"
    pool = ThreadPoolExecutor(workers, thread_name_prefix="astroapp-import") if workers > 1 else None
    pending: deque[tuple[_Item, Future[_Prepared]]] = deque()
    queued = iter(items)

    def fill() -> None:
        while pool is not None and len(pending) < 2 * workers:
            item = next(queued, None)
            if item is None:
                return
            pending.append((item, pool.submit(_prepare, item, db_uri)))

    start = time.perf_counter()
    state = "cancelled"
    try:
        fill()
        for done, item in enumerate(items, 1):
            if cancel is not None and cancel.is_set():
                break
            if pool is not None:
                queued_item, future = pending.popleft()
                assert queued_item is item
                prep = future.result()
                fill()
            else:
                prep = _prepare(item, db_uri)
            res = batch.commit(prep, item)
            r.seconds = time.perf_counter() - start
            fr = FileResult(res.path, res.outcome, res.photo_id, res.reason, done, r.total)
            yield Progress("import", done, r.total, item=Path(res.path).name,
                           message=f"{res.outcome}: {res.reason}" if res.reason else res.outcome,
                           photo_id=res.photo_id, result=fr)
        else:
            state = "done"
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        r.seconds = time.perf_counter() - start
        r.cancelled = state != "done"
        try:
            catalog.update_import(import_id, state=state, **batch._counts())
        except Exception:  # the catalogue itself failing: report the original error
            log.exception("could not finish import record %s", import_id)


def import_paths(
    catalog: Catalog,
    paths: Iterable[str | Path],
    progress: ProgressFn | None = None,
    cancel: Cancel | None = None,
    workers: int | None = None,
) -> ImportReport:
    """Import files, folders and .zip rolls; `progress` gets iter_import's event per file."""
    holder: list[ImportReport] = []
    for event in iter_import(catalog, paths, cancel=cancel, report=holder, workers=workers):
        if progress is not None:
            progress(event)
    return holder[0]
