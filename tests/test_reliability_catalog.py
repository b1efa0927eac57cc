"""Reliability of the catalogue commands (issue 15): odd file names, symlink loops, two
importers at once, a write-protected catalogue, a missing --catalog, bad --from/--to.
Each case: a clear message or the right result, no traceback, nothing lost."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from astroapp.catalog import Catalog, CatalogReadOnlyError
from astroapp.catalog.importer import import_paths

REPO = Path(__file__).resolve().parents[1]


def jpeg(seed: int, size: tuple[int, int] = (48, 32)) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "astroapp", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONIOENCODING": "utf-8"})


def no_traceback(proc: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stdout, proc.stdout


def test_non_utf8_file_name_is_recorded_and_the_rest_imported(tmp_path):
    folder = tmp_path / "roll"
    folder.mkdir()
    bad = os.path.join(os.fsencode(folder), b"caf\xe9_001.jpg")  # Latin-1 byte: not UTF-8
    with open(bad, "wb") as fh:
        fh.write(jpeg(1))
    for i in range(3):  # sorted after the bad name: must still be imported
        (folder / f"z_{i}.jpg").write_bytes(jpeg(10 + i))
    db = tmp_path / "cat.sqlite"
    for run in range(2):  # a re-run finishes without error and adds nothing
        proc = cli("--catalog", str(db), "import", str(folder))
        no_traceback(proc)
        assert proc.returncode == 0, proc.stderr
        if run == 0:
            assert "3 added" in proc.stdout and "1 failed" in proc.stdout
            assert "not valid UTF-8" in proc.stderr and "caf\\xe9_001.jpg" in proc.stderr
        else:
            assert "0 added" in proc.stdout and "4 already" in proc.stdout
    with Catalog(db) as cat:
        failed = cat.photos(status=["failed"])
        assert len(failed) == 1 and "caf\\xe9_001.jpg" in failed[0].path
        assert cat.counts_by_status()["new"] == 3


def test_symlink_loop_is_recorded_as_failed_and_the_folder_goes_on(tmp_path):
    folder = tmp_path / "roll"
    folder.mkdir()
    (folder / "a.jpg").symlink_to("b.jpg")
    (folder / "b.jpg").symlink_to("a.jpg")
    (folder / "dangling.jpg").symlink_to("nowhere.jpg")
    (folder / "c.jpg").write_bytes(jpeg(2))
    with Catalog(tmp_path / "cat.sqlite") as cat:
        report = import_paths(cat, [folder], workers=1)
        assert (report.added, report.failed) == (1, 3)
        reasons = dict(report.failures)
        assert "symbolic link loop" in reasons[str(folder / "a.jpg")]
        assert "symbolic link loop" in reasons[str(folder / "b.jpg")]
        assert "broken symbolic link" in reasons[str(folder / "dangling.jpg")]
    proc = cli("--catalog", str(tmp_path / "cat2.sqlite"), "import", str(folder))
    no_traceback(proc)
    assert proc.returncode == 0 and "1 added" in proc.stdout and "3 failed" in proc.stdout
    proc = cli("--catalog", str(tmp_path / "cat3.sqlite"), "import", str(folder / "a.jpg"),
               str(folder / "c.jpg"))  # a loop named on the command line: recorded too
    no_traceback(proc)
    assert proc.returncode == 0 and "1 added" in proc.stdout and "1 failed" in proc.stdout
    assert "symbolic link loop" in proc.stderr


def test_two_processes_importing_the_same_roll(tmp_path):
    folder = tmp_path / "roll"
    folder.mkdir()
    n = 400  # enough files that the two runs overlap for a while (the race needs it)
    for i in range(n):
        (folder / f"ISS064-E-{i:05d}.jpg").write_bytes(jpeg(100 + i, (48, 32)))
    db = tmp_path / "cat.sqlite"
    Catalog(db).close()
    cmd = [sys.executable, "-m", "astroapp", "--catalog", str(db), "import", "-q", str(folder)]
    procs = [subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert "Traceback" not in err and "IntegrityError" not in err
    with Catalog(db) as cat:
        assert cat.count() == n
        assert cat.counts_by_status()["new"] == n
        runs = cat.imports()
        assert sum(r.added for r in runs) == n
        assert sum(r.added + r.already for r in runs) == 2 * n  # each run accounts for all


@pytest.fixture
def read_only_catalog(tmp_path):
    """A catalogue with one photo that this process cannot write: immutable for root (chmod
    does not stop root), mode 0444 otherwise."""
    folder = tmp_path / "ro"
    folder.mkdir()
    db = folder / "cat.sqlite"
    (tmp_path / "one.jpg").write_bytes(jpeg(3))
    with Catalog(db) as cat:
        import_paths(cat, [tmp_path / "one.jpg"], workers=1)
    before = db.read_bytes()
    if os.geteuid() == 0:
        if shutil.which("chattr") is None or subprocess.run(
                ["chattr", "+i", str(db)], capture_output=True).returncode:
            pytest.skip("running as root on a filesystem without chattr +i")
        try:
            yield db
        finally:
            subprocess.run(["chattr", "-i", str(db)], check=True)
    else:
        db.chmod(0o444)
        try:
            yield db
        finally:
            db.chmod(0o644)
    assert db.read_bytes() == before


def test_write_protected_catalogue_is_a_clear_error(read_only_catalog, tmp_path):
    db = read_only_catalog
    (tmp_path / "two.jpg").write_bytes(jpeg(4))
    csv = tmp_path / "nasa.csv"
    csv.write_text("MRF,LAT,LON\nISS064-E-1,10,20\n")
    for args in (["import", str(tmp_path / "two.jpg")], ["import-nasa", str(csv)],
                 ["localize", "--all"]):
        proc = cli("--catalog", str(db), *args)
        no_traceback(proc)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert "read-only" in proc.stderr, proc.stderr
    proc = cli("--catalog", str(db), "photos")  # reading still works
    assert proc.returncode == 0 and "one.jpg" in proc.stdout
    with Catalog(db) as cat, pytest.raises(CatalogReadOnlyError, match="read-only"):
        cat.set_status(1, "rejected")


def test_missing_catalogue_path_is_said_or_refused(tmp_path):
    proc = cli("--catalog", str(tmp_path / "no" / "such" / "cat.sqlite"), "photos")
    no_traceback(proc)
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    assert not (tmp_path / "no").exists()
    proc = cli("--catalog", str(tmp_path / "fresh.sqlite"), "status")
    assert proc.returncode == 0
    assert "created a new, empty catalogue" in proc.stderr
    proc = cli("--catalog", str(tmp_path / "fresh.sqlite"), "status")
    assert "created" not in proc.stderr


@pytest.mark.parametrize("flag,value", [("--from", "2021-13-01"), ("--to", "yesterday"),
                                        ("--from", "2021-02-30"), ("--to", "2021-03-04T25:00")])
def test_bad_from_to_dates_are_usage_errors(tmp_path, flag, value):
    proc = cli("--catalog", str(tmp_path / "c.sqlite"), "photos", flag, value)
    no_traceback(proc)
    assert proc.returncode == 2 and "not an ISO date" in proc.stderr


def test_from_to_dates_filter(tmp_path):
    from astroapp.cli.catalog_cmds import iso_date

    with Catalog(tmp_path / "c.sqlite") as cat:
        for i, when in enumerate(["2021-03-03T23:59:59.000Z", "2021-03-04T10:00:00.000Z",
                                  "2021-03-05T00:00:00.000Z"]):
            cat.add_photo(path=f"/p/{i}.jpg", sha256=f"{i:064d}", captured_at=when)
        got = cat.photos(date_from=iso_date("2021-03-04"), date_to=iso_date("2021-03-04"))
        assert [p.path for p in got] == ["/p/1.jpg"]
        got = cat.photos(date_from=iso_date("2021-03-04 09:00+00:00"),
                         date_to=iso_date("2021-03-05T00:00:00Z"))
        assert [p.path for p in got] == ["/p/1.jpg", "/p/2.jpg"]
