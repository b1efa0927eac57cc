"""Huge photos and decompression bombs (issue 15, item 1): `astroapp match` and the
pipeline's photo reader refuse an image over the import's pixel limit from its header (a
clear error, no multi-GB allocation), and decode large JPEGs at a reduced scale."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from astroapp.catalog.importer import MAX_PHOTO_PIXELS
from astroapp.catalog.photo_reader import read_photo
from astroapp.matching.imageio import ImageReadError, read_rgb

REPO = Path(__file__).resolve().parents[1]
MAX_RSS_KB = 1_500_000  # the CLI (torch, cv2) takes ~0.5 GB; a decoded bomb takes > 2.7 GB


def png_bomb(width: int, height: int) -> bytes:
    """A few KB of PNG whose header declares width x height 8-bit RGB pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    row = b"\x00" * (1 + 3 * width)
    body = zlib.compressobj(9)
    idat = body.compress(row * 64) + body.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                               0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def jpeg_bomb(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header (SOF0) is rewritten to declare width x height."""
    buf = io.BytesIO()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


# Started from a small launcher, not forked from pytest: Linux carries a forked process's
# peak RSS (pytest's, GBs late in a full run) over into the child's ru_maxrss across exec.
_LAUNCHER = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(proc.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss, file=sys.stdout)
"""


def run_measured(args: list[str]) -> tuple[int, str, int]:
    """(exit code, stderr, peak resident memory in KB) of a real `astroapp` process."""
    proc = subprocess.run([sys.executable, "-c", _LAUNCHER, sys.executable, "-m", "astroapp",
                           *args], cwd=REPO, capture_output=True, text=True, check=True)
    code, rss = (int(v) for v in proc.stdout.split())
    return code, proc.stderr, rss


@pytest.mark.parametrize("kind", ["png", "jpeg"])
def test_match_refuses_a_bomb_from_its_header(tmp_path, kind):
    bomb = tmp_path / f"bomb.{kind}"
    bomb.write_bytes(png_bomb(30_000, 30_000) if kind == "png" else jpeg_bomb(20_000, 20_000))
    assert bomb.stat().st_size < 100_000
    surroundings = tmp_path / "surr.jpg"
    Image.fromarray(np.full((256, 256, 3), 90, np.uint8)).save(surroundings)
    for args in ([str(bomb), str(surroundings)], [str(surroundings), str(bomb)]):
        code, err, rss = run_measured(["match", *args])
        assert code == 2, err
        assert "Traceback" not in err and "MemoryError" not in err
        assert "refused as a possible decompression bomb" in err and str(bomb) in err
        assert rss < MAX_RSS_KB, f"peak memory {rss / 1e6:.1f} GB"


def test_pipeline_reader_refuses_bombs_and_reduces_large_jpegs(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bomb(12_000, 12_000))
    with pytest.raises(ImageReadError, match="decompression bomb"):
        read_photo(bomb, min_side=1024)
    with pytest.raises(ValueError, match=str(MAX_PHOTO_PIXELS)):
        read_rgb(bomb)
    big = tmp_path / "big.jpg"
    Image.fromarray(np.zeros((4000, 6000, 3), np.uint8)).save(big, quality=50)
    small = read_photo(big, min_side=512)  # DCT-scaled to 1/4: the smallest both sides >= 512
    assert small.rgb.shape == (1000, 1500, 3) and small.scale_to_file == 4.0
    shown = read_photo(big, max_side=1600)  # a display size: DCT 1/2, then resampled
    assert shown.rgb.shape == (1067, 1600, 3) and shown.file_size == (6000, 4000)
    assert read_rgb(big).shape == (4000, 6000, 3)  # no target: full resolution
