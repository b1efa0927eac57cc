"""Atomic file writes: a reader (or a crash) never sees a half-written file.

Used for everything the app writes that someone else reads: exports, index chunks, the faiss
index and its manifest, calibrations.

Writers get a temporary path in the target's own directory (same filesystem, so the final
`os.replace` is an atomic rename); the temporary file is removed when the writer fails or is
interrupted, and an existing file under the target name is left untouched until then. A
writer killed outright leaves its temporary file: it is named with the writer's pid, and the
next write of the same target deletes it once that process is gone.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

STRAY_GLOB = ".*.part*"  # what `atomic_path` names its temporary files


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `target`; on success it replaces `target`.

    The temporary name keeps the target's suffix so that format drivers that look at the
    extension (GDAL, folium) behave as for the real name.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_temporaries(target.parent, target)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.stem}.{os.getpid()}-", suffix=f".part{target.suffix}",
        dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; exports get normal permissions
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(target.parent)


@contextlib.contextmanager
def atomic_dir(target: str | Path,
               keep_existing: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Yield a new temporary folder next to `target`; when the writer succeeds it takes the
    name `target` (a folder already there is moved aside, then deleted), so a reader finds
    the old folder or the complete new one, never a half-written one. When
    `keep_existing(target)` is true at that moment (another process finished first), the
    folder already there stays. The temporary folder is removed in every case."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}-", suffix=".dirpart",
                                dir=target.parent))
    try:
        yield tmp
        if keep_existing is not None and keep_existing(target):
            return
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}-",
                                        suffix=".dirold", dir=target.parent))
            os.replace(target, old / target.name)
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:  # another writer's folder took the name meanwhile
            if keep_existing is None or not keep_existing(target):
                raise
        fsync_dir(target.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_TEMP_NAME = re.compile(r"^\.(?P<stem>.*)\.(?P<pid>\d+)-[a-z0-9_]+\.part(?P<suffix>.*)$")


def remove_dead_temporaries(folder: str | Path, target: str | Path | None = None) -> list[Path]:
    """Delete the temporary files that killed writers (kill -9, power loss: no cleanup ran)
    left in `folder` (only those for `target`, when given): the ones named with the pid of a
    process that is no longer running. A live writer's file is kept (two processes may
    write at once). Returns what was deleted."""
    removed = []
    for p in Path(folder).glob(".*.part*"):
        m = _TEMP_NAME.match(p.name)
        if m is None or _pid_running(int(m["pid"])):
            continue
        if target is not None and (m["stem"], m["suffix"]) != (Path(target).stem,
                                                                Path(target).suffix):
            continue
        p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def _pid_running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def remove_stray_temporaries(folder: Path) -> None:
    """Delete the temporary files that a killed writer left in `folder`."""
    for p in Path(folder).glob(STRAY_GLOB):
        p.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_text(target: str | Path, newline: str | None = None) -> Iterator:
    """A text file handle (UTF-8) whose content appears under `target` only when complete."""
    with atomic_path(target) as tmp, open(tmp, "w", encoding="utf-8", newline=newline) as fh:
        yield fh


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def fsync_dir(path: Path) -> None:
    """Persist the rename itself (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
