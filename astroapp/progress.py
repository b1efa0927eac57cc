"""The one progress event every core stage emits (import, index build, localize, export, train).

Core stages report through a `ProgressFn` (or yield `Progress` from a generator); the CLI
renders events with tqdm, the GUI in its status bar. Nobody guesses at argument shapes: a
stage that has a photo or tile in hand names it in `item`, and a stage that finished an item
can hand its result along in `result` (the GUI refreshes that photo's row from it).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a stage stands: `done` of `total` items (total None when unknown)."""

    stage: str
    done: int
    total: int | None = None
    item: str = ""  # what is being worked on, as a user reads it (photo name, tile id, file)
    message: str = ""
    photo_id: int | None = None  # catalogue id of the photo concerned, when there is one
    result: Any = None  # the finished item's outcome, when this event reports one

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return min(1.0, max(0.0, self.done / self.total))

    def text(self) -> str:
        """One line for a status bar or a log: 'localize 3/24 ISS050-E-70536: accepted'."""
        count = f"{self.done}/{self.total}" if self.total else str(self.done)
        head = f"{self.stage} {count}"
        tail = ": ".join(t for t in (self.item, self.message) if t)
        return f"{head} {tail}" if tail else head


ProgressFn = Callable[[Progress], None]


def ignore(_: Progress) -> None:
    """The default sink: a stage called without a progress callback reports to nobody."""


def drain(events: Generator[Progress, None, R], progress: ProgressFn | None = None) -> R:
    """Run a stage's event generator to its end, handing each event to `progress`; the
    generator's return value (the callback form of a generator stage, e.g. `localize_photos`
    over `iter_localize`)."""
    sink = progress or ignore
    while True:
        try:
            event = next(events)
        except StopIteration as stop:
            return stop.value
        sink(event)
