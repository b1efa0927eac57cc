"""Errors of the tile index: each says what is wrong and what to do about it."""

from __future__ import annotations


class TileIndexError(Exception):
    """Base class for tile-index errors."""


class IndexNotFoundError(TileIndexError, FileNotFoundError):
    """The folder holds no (complete) index."""


class IndexCorruptError(TileIndexError):
    """A file of the index is missing, truncated or inconsistent with the manifest."""


class IndexMismatchError(TileIndexError):
    """The index was built with another model (name, weights or descriptor size)."""
