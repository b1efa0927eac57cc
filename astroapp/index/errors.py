"""Errors of the tile index: each says what is wrong and what to do about it."""

from __future__ import annotations


class TileIndexError(Exception):
    """Base class for tile-index errors."""


class IndexNotFoundError(TileIndexError, FileNotFoundError):
    """The folder holds no (complete) index."""


class IndexCorruptError(TileIndexError):
    """A file of the index is missing, truncated or inconsistent with the manifest.

    `part` says which: "manifest" or "faiss" (rebuilt from the stored descriptors), "tiles"
    or "chunks" (the descriptors must be computed again), None when unknown."""

    def __init__(self, message: str, part: str | None = None) -> None:
        super().__init__(message)
        self.part = part


class IndexMismatchError(TileIndexError):
    """The index was built with another model (name, weights or descriptor size)."""


class IndexSourceError(TileIndexError, ValueError):
    """The sources cannot make this index (e.g. too little texture for a model that learns
    its vocabulary from them)."""
