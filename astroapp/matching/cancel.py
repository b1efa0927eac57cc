"""Cancellation of a running coregistration, shared by the loop and the window search.

Its own module so that `coregister` (which runs the search) and `window_search` (which
polls the same event) do not import each other.
"""

from __future__ import annotations

from typing import Any


class CoregCancelled(Exception):
    """Raised between iterations when the caller's cancel event is set."""


def check_cancel(cancel: Any) -> None:
    """Raise CoregCancelled when `cancel` (a threading.Event or None) is set."""
    if cancel is not None and cancel.is_set():
        raise CoregCancelled()
