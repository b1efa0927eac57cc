"""Importing a real roll on disk: counts, statuses, duplicates, bad files, zips, kill -9."""

from __future__ import annotations

import io
import os
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import zipfile
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import piexif
import pytest
from PIL import Image

from astroapp.catalog import Catalog
from astroapp.catalog.importer import collect_items, import_paths, iter_import
from astroapp.config import data_dir
from astroapp.progress import Progress

REPO = Path(__file__).resolve().parents[1]
# The roll holds decompression bombs on purpose; Pillow warns about them before refusal.
pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")


def jpeg_bytes(rng: np.random.Generator, when: str | None = None, size=(64, 48),
               focal=(1150, 1), model=b"NIKON D5") -> bytes:
    """A small JPEG with unique noise content and NASA-like EXIF."""
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    exif: dict = {"0th": {piexif.ImageIFD.Make: b"NIKON CORPORATION", piexif.ImageIFD.Model: model},
                  "Exif": {piexif.ExifIFD.FocalLength: focal}}
    if when:
        exif["Exif"][piexif.ExifIFD.DateTimeOriginal] = when.encode()
        exif["Exif"][piexif.ExifIFD.SubSecTimeOriginal] = b"25"
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=80, exif=piexif.dump(exif))
    return buf.getvalue()


def png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height 1-bit pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" * (1 + (width + 7) // 8)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(row * 16)) + chunk(b"IEND", b""))


# Expected outcome of importing ROLL (the folder) plus ROLL_ZIP.
N_DAY1, N_DAY2, N_DSC, N_ZIP = 150, 100, 50, 20
N_DUPES = 6  # 5 copies in the folder + 1 inside the zip
FAILED = {
    "trunc_a.jpg": "truncated image",
    "trunc_b.jpg": "truncated",
    "header_only.jpg": "truncated image",
    "random.jpg": "not an image",
    "notes.txt": "not an image",
    "anim.gif": "unsupported image format GIF",
    "bomb_warn.png": "decompression bomb",
    "bomb_error.png": "decompression bomb",
    "empty.jpg": "empty file",
}
N_REFUSED_ZIP = 2  # ../escape.jpg, /abs/escape.jpg
N_ADDED = N_DAY1 + N_DAY2 + N_DSC + N_ZIP
N_FAILED = len(FAILED) + N_REFUSED_ZIP
N_TOTAL = N_ADDED + N_DUPES + N_FAILED


@pytest.fixture(scope="session")
def roll(tmp_path_factory) -> tuple[Path, Path]:
    """(folder, zip): hundreds of small JPEGs with EXIF, nested folders and bad files."""
    root = tmp_path_factory.mktemp("roll")
    folder = root / "ISS064_roll"
    rng = np.random.default_rng(7)
    day1 = folder / "2020-11-23"
    day2 = folder / "2020-11-24" / "nested" / "deeper"
    for d in (day1, day2, folder / "dupes", folder / ".hidden"):
        d.mkdir(parents=True)
    for i in range(N_DAY1):
        (day1 / f"iss064e{1000 + i:06d}.jpg").write_bytes(
            jpeg_bytes(rng, f"2020:11:23 10:{i // 60:02d}:{i % 60:02d}"))
    for i in range(N_DAY2):
        (day2 / f"ISS064-E-{2000 + i}.JPG").write_bytes(
            jpeg_bytes(rng, f"2020:11:24 03:{i // 60:02d}:{i % 60:02d}"))
    for i in range(N_DSC):
        (folder / f"DSC_{i:04d}.jpg").write_bytes(jpeg_bytes(rng, None, focal=(50, 1), model=b"NIKON D4"))
    for i in range(5):
        shutil.copy(day1 / f"iss064e{1000 + i:06d}.jpg", folder / "dupes" / f"copy_{i}.jpg")
    (folder / ".hidden" / "ignored.jpg").write_bytes(jpeg_bytes(rng))
    (folder / ".DS_Store").write_bytes(b"\x00\x01junk")
    good = jpeg_bytes(rng, "2020:11:25 00:00:00")
    (folder / "trunc_a.jpg").write_bytes(good[: len(good) // 2])
    (folder / "trunc_b.jpg").write_bytes(good[:-200])
    (folder / "header_only.jpg").write_bytes(good[:300])
    (folder / "random.jpg").write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    (folder / "notes.txt").write_text("crew notes, not a photo\n")
    buf = io.BytesIO()
    Image.new("P", (16, 16)).save(buf, "GIF")
    (folder / "anim.gif").write_bytes(buf.getvalue())
    (folder / "bomb_warn.png").write_bytes(png_bomb(10_000, 10_000))  # > MAX_IMAGE_PIXELS
    (folder / "bomb_error.png").write_bytes(png_bomb(30_000, 30_000))  # > 2 x MAX_IMAGE_PIXELS
    (folder / "empty.jpg").write_bytes(b"")

    zpath = root / "ISS065_roll.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for i in range(N_ZIP):
            zf.writestr(f"ISS065_roll/iss065e{i:06d}.jpg", jpeg_bytes(rng, f"2021:06:01 12:00:{i:02d}"))
        zf.writestr("ISS065_roll/dup.jpg", (day1 / "iss064e001010.jpg").read_bytes())
        zf.writestr("../escape.jpg", jpeg_bytes(rng))
        zf.writestr("/abs/escape.jpg", jpeg_bytes(rng))
        zf.writestr("__MACOSX/._iss065e000000.jpg", b"resource fork")
    return folder, zpath


def _check_full_import(cat: Catalog, folder: Path) -> None:
    counts = cat.counts_by_status()
    assert counts["new"] == N_ADDED
    assert counts["failed"] == N_FAILED
    assert cat.count() == N_ADDED + N_FAILED
    photos = cat.photos()
    paths = Counter(p.path for p in photos)
    assert max(paths.values()) == 1
    hashes = Counter(p.sha256 for p in photos if p.sha256)
    assert max(hashes.values()) == 1
    assert not any(".hidden" in p.path or "__MACOSX" in p.path for p in photos)


def test_import_roll_counts_and_statuses(roll):
    folder, zpath = roll
    seen: list[Progress] = []
    with Catalog() as cat:
        report = import_paths(cat, [folder, zpath], progress=seen.append)
        assert (report.total, report.added, report.duplicates, report.failed) == (
            N_TOTAL, N_ADDED, N_DUPES, N_FAILED)
        assert report.already == 0 and not report.cancelled
        assert [e.done for e in seen] == list(range(1, N_TOTAL + 1)) and seen[-1].total == N_TOTAL
        assert {e.stage for e in seen} == {"import"}
        # each event names its file as a user reads it and carries the file's result
        assert all(e.item == Path(e.result.path).name for e in seen)
        assert all(e.photo_id == e.result.photo_id for e in seen)
        assert sum(e.result.outcome == "added" for e in seen) == N_ADDED
        assert all(e.message.startswith(e.result.outcome) for e in seen)
        _check_full_import(cat, folder)

        by_name = {Path(p.path).name: p for p in cat.photos()}
        for name, reason in FAILED.items():
            photo = by_name[name]
            assert photo.status == "failed", name
            assert photo.status_reason and reason in photo.status_reason, (name, photo.status_reason)
        refused = [p for p in cat.photos(status="failed") if "escapes the extraction folder" in (p.status_reason or "")]
        assert len(refused) == N_REFUSED_ZIP
        assert not (data_dir() / "escape.jpg").exists() and not (data_dir() / "rolls" / "escape.jpg").exists()
        assert not Path("/abs/escape.jpg").exists()

        p = by_name["iss064e001003.jpg"]
        assert (p.nasa_id, p.mission, p.roll, p.frame) == ("ISS064-E-1003", "ISS064", "E", 1003)
        assert (p.width, p.height, p.format) == (64, 48, "JPEG")
        assert p.captured_at == "2020-11-23T10:00:03.250Z"
        assert p.focal_length_mm == 1150.0 and p.camera_model == "NIKON D5"
        assert p.size_bytes == (folder / "2020-11-23" / "iss064e001003.jpg").stat().st_size
        assert p.imported_at.endswith("Z") and p.import_id == report.import_id
        thumb = Image.open(io.BytesIO(cat.thumbnail(p.id)))
        assert thumb.format == "JPEG" and thumb.size == (64, 48)
        assert by_name["ISS064-E-2099.JPG"].nasa_id == "ISS064-E-2099"
        assert by_name["DSC_0001.jpg"].nasa_id is None and by_name["DSC_0001.jpg"].captured_at is None
        assert len(cat.photos(mission="ISS064")) == N_DAY1 + N_DAY2
        assert len(cat.photos(date_from="2020-11-24", date_to="2020-11-24")) == N_DAY2

        zipped = cat.photos(mission="ISS065")
        assert len(zipped) == N_ZIP
        rolls = data_dir() / "rolls"
        assert all(Path(z.path).is_relative_to(rolls) and Path(z.path).is_file() for z in zipped)
        assert Path(zipped[0].path).parent.parent.name.startswith("ISS065_roll-")

        rec = cat.imports()[-1]
        assert (rec.state, rec.added, rec.duplicates, rec.failed) == ("done", N_ADDED, N_DUPES, N_FAILED)
        assert rec.finished_at is not None

        again = import_paths(cat, [folder, zpath])
        assert again.added == 0 and again.failed == 0
        assert again.already == N_ADDED + N_FAILED and again.duplicates == N_DUPES
        _check_full_import(cat, folder)
        assert cat.integrity_check() == "ok"


def test_cancel_then_resume(roll):
    folder, _ = roll
    cancel = threading.Event()

    def progress(event: Progress) -> None:
        if event.done == 25:
            cancel.set()

    with Catalog() as cat:
        report = import_paths(cat, [folder], progress=progress, cancel=cancel)
        assert report.cancelled and report.added + report.failed + report.duplicates == 25
        assert cat.imports()[-1].state == "cancelled"
        rest = import_paths(cat, [folder])
        assert rest.already == 25 and not rest.cancelled
        assert cat.counts_by_status()["new"] == N_DAY1 + N_DAY2 + N_DSC


def test_generator_api_from_worker_thread(roll):
    """The GUI drives imports from a worker thread with its own Catalog."""
    folder, _ = roll
    outcomes: Counter = Counter()

    def work():
        with Catalog() as cat:
            for event in iter_import(cat, [folder / "2020-11-24", folder / "dupes"]):
                outcomes[event.result.outcome] += 1

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert outcomes == Counter(added=N_DAY2 + 5)
    with Catalog() as cat:
        assert cat.count() == N_DAY2 + 5


def test_single_files_and_missing_paths(roll, tmp_path):
    folder, _ = roll
    one = folder / "DSC_0003.jpg"
    with Catalog() as cat:
        report = import_paths(cat, [one, one, folder / "notes.txt"])
        assert (report.total, report.added, report.failed) == (2, 1, 1)
        with pytest.raises(FileNotFoundError):
            import_paths(cat, [tmp_path / "nope"])
    assert len(collect_items([folder])) == N_TOTAL - N_ZIP - 1 - N_REFUSED_ZIP


def test_zip_bomb_and_bad_zip_refused(tmp_path):
    rng = np.random.default_rng(1)
    zpath = tmp_path / "bomb.zip"
    with zipfile.ZipFile(zpath, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.jpg", b"\x00" * (40 * 2**20))
        zf.writestr("ok.jpg", jpeg_bytes(rng))
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04 this is not really a zip")
    with Catalog() as cat:
        report = import_paths(cat, [zpath, broken])
        assert (report.added, report.failed) == (1, 2)
        reasons = sorted(r for _, r in report.failures)
        assert "zip bomb" in reasons[1] and "not a readable zip archive" in reasons[0]
    extracted = list((data_dir() / "rolls").rglob("*"))
    assert not any(p.name == "zeros.jpg" for p in extracted)


def _count_photos(db: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT count(*) FROM photos").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def _run_import(db: Path, folder: Path, kill_after: int | None) -> int | None:
    """Run `astroapp import` in a subprocess; SIGKILL it once `kill_after` photos exist."""
    cmd = [sys.executable, "-m", "astroapp", "--catalog", str(db), "import", "-q", str(folder)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=os.environ.copy(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if kill_after is None:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
        return None
    deadline = time.monotonic() + 180  # generous: the CLI's start-up is slow on a loaded box
    try:
        while proc.poll() is None and _count_photos(db) < kill_after:
            assert time.monotonic() < deadline, "import made no progress"
            time.sleep(0.005)
        assert proc.poll() is None, "import finished before it could be killed"
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return _count_photos(db)


def test_sigkill_mid_import_then_rerun(roll, tmp_path):
    folder, _ = roll
    db = tmp_path / "killed.sqlite"
    killed_at = _run_import(db, folder, kill_after=40)
    assert 40 <= killed_at < N_TOTAL
    _run_import(db, folder, kill_after=None)
    with Catalog(db) as cat:
        assert cat.integrity_check() == "ok"
        assert cat.connection.execute("PRAGMA foreign_key_check").fetchall() == []
        n_folder_added = N_DAY1 + N_DAY2 + N_DSC
        n_folder_failed = len(FAILED)
        assert cat.counts_by_status() == {**dict.fromkeys(cat.counts_by_status(), 0),
                                          "new": n_folder_added, "failed": n_folder_failed}
        photos = cat.photos()
        assert len({p.path for p in photos}) == len(photos) == n_folder_added + n_folder_failed
        on_disk = {str(p) for p in folder.rglob("*") if p.is_file() and not any(
            part.startswith(".") for part in p.relative_to(folder).parts)}
        dupes = {str(p) for p in (folder / "dupes").iterdir()}
        assert {p.path for p in photos} == on_disk - dupes
        assert [r.state for r in cat.imports()] == ["interrupted", "done"]
        for p in cat.photos(status="new"):
            assert p.sha256 and p.width == 64 and cat.thumbnail(p.id)[:2] == b"\xff\xd8"
