"""Background work for the GUI: core functions with a progress callback, run off the UI thread.

The core APIs (`import_paths`, `localize_photos`) report through a `progress` callback and stop
when a `threading.Event` is set. `drive` turns such a call into a generator so that superqt's
`thread_worker` runs it in the thread pool and delivers each progress report to the UI thread
as a `yielded` signal. Widgets are never touched from the worker: only signals cross over.
Each worker opens its own catalogue connection (SQLite connections are per thread).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from superqt.utils import GeneratorWorker, thread_worker

_DONE = object()


@dataclass
class Progress:
    """One progress report, as the UI sees it."""

    done: int = 0
    total: int = 0
    message: str = ""
    item: Any = None  # whatever the core passed along (photo id, path, result)
    extra: dict = field(default_factory=dict)


def _to_progress(args: tuple, kwargs: dict) -> Progress:
    """Normalise the core's callback arguments: (done, total, ...) or a single event object."""
    if len(args) == 1 and not kwargs and isinstance(args[0], Progress):
        return args[0]
    p = Progress(extra=dict(kwargs))
    if len(args) == 1 and not isinstance(args[0], int | float):
        obj = args[0]
        p.item = obj
        for name in ("done", "total", "message"):
            value = getattr(obj, name, None) if not isinstance(obj, dict) else obj.get(name)
            if value is not None:
                setattr(p, name, value)
        return p
    def is_count(a) -> bool:
        return isinstance(a, int) and not isinstance(a, bool)

    nums = [a for a in args if is_count(a)]
    texts = [a for a in args if isinstance(a, str)]
    objects = [a for a in args if not is_count(a) and not isinstance(a, str)]
    if len(nums) >= 2:
        p.done, p.total = nums[0], nums[1]
    elif nums:
        p.done = nums[0]
    p.done = int(kwargs.get("done", p.done))
    p.total = int(kwargs.get("total", p.total))
    if texts:
        p.message = texts[0]
    if objects:
        p.item = objects[-1]
    elif texts and p.item is None:
        p.item = texts[-1]
    if "message" in kwargs:
        p.message = str(kwargs["message"])
    return p


def lower_thread_priority(nice: int = 10) -> None:
    """Let the UI thread win the CPU: background work runs at a lower priority.

    On Linux the nice value is per thread (and inherited by the threads it starts, such as
    compute pools created from it); elsewhere this is a no-op.
    """
    if hasattr(os, "setpriority") and hasattr(threading, "get_native_id"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
        except OSError:
            pass


def drive(
    func: Callable[..., Any], cancel: threading.Event, poll_s: float = 0.05
) -> Generator[Progress, None, Any]:
    """Run `func(progress=..., cancel=cancel)` in a helper thread, yielding its reports.

    The generator returns func's return value (or raises its exception). Setting `cancel`
    asks the core to stop; the generator keeps draining reports until the core returns, so
    whatever finished before the cancel is kept and reported.
    """
    reports: queue.Queue = queue.Queue()
    outcome: dict[str, Any] = {}

    def progress(*args, **kwargs) -> None:
        reports.put(_to_progress(args, kwargs))

    def target() -> None:
        lower_thread_priority()
        try:
            outcome["value"] = func(progress=progress, cancel=cancel)
        except BaseException as exc:  # noqa: BLE001 - handed over to the worker's errored signal
            outcome["error"] = exc
        finally:
            reports.put(_DONE)

    thread = threading.Thread(target=target, name="astroapp-core", daemon=True)
    thread.start()
    while True:
        try:
            item = reports.get(timeout=poll_s)
        except queue.Empty:
            continue
        if item is _DONE:
            break
        yield item
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


@thread_worker(start_thread=False)
def _run_generator(make: Callable[[threading.Event], Generator], cancel: threading.Event):
    return (yield from make(cancel))


def callback_job(func: Callable[..., Any]) -> Callable[[threading.Event], Generator]:
    """A generator factory for a core function taking `progress=` and `cancel=`."""
    return lambda cancel: drive(func, cancel)


class Job:
    """A background job: the superqt generator worker, its cancel event and an ETA estimate.

    `make(cancel)` returns the generator that runs in the worker thread; it yields
    `Progress` reports and returns a summary. Cancelling sets the event the generator (or the
    core function under it) polls, so it ends cleanly and keeps what finished.
    """

    def __init__(self, make: Callable[[threading.Event], Generator], title: str) -> None:
        self.title = title
        self.cancel = threading.Event()
        self.worker: GeneratorWorker = _run_generator(make, self.cancel)
        self.started_at = time.monotonic()
        self.last: Progress = Progress()

    def start(self) -> None:
        self.started_at = time.monotonic()
        self.worker.start()

    def request_cancel(self) -> None:
        self.cancel.set()

    def eta_seconds(self, progress: Progress) -> float | None:
        """Remaining time from the mean pace so far; None until something finished."""
        if progress.total <= 0 or progress.done <= 0:
            return None
        elapsed = time.monotonic() - self.started_at
        return elapsed / progress.done * max(progress.total - progress.done, 0)


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "ETA --"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"ETA {seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"ETA {seconds // 60}m{seconds % 60:02d}s"
    return f"ETA {seconds}s"
