"""File digests: the one sha256 of a file that weights checks, index manifests and downloads
compare against what they recorded or were told."""

from __future__ import annotations

import hashlib
import os


def sha256_file(path: str | os.PathLike) -> str:
    """The file's sha256 as lowercase hex, read in blocks (files of any size)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
