"""Background work for the GUI: core generators and callback functions, run off the UI thread.

Every core stage reports `astroapp.progress.Progress` events, either yielded from a generator
(`iter_import`, `iter_localize`, which superqt's `thread_worker` drives directly) or passed to
a `progress` callback (`drive` turns such a call into a generator). Either way the worker
delivers each event unchanged to the UI thread as a `yielded` signal. Widgets are never
touched from the worker: only signals cross over. Each worker opens its own catalogue
connection (SQLite connections are per thread).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Generator
from typing import Any

from PySide6.QtCore import QObject, Signal
from superqt.utils import GeneratorWorker, thread_worker

from astroapp.progress import Progress

__all__ = ["Job", "Progress", "callback_job", "drive", "format_eta", "run_in_thread"]

_DONE = object()


# Worker threads keep the default priority. A lowered one (nice 10, as they had) does not let
# the UI thread win anything it needs: both run Python under one GIL, and on a busy machine a
# low-priority worker descheduled while holding the GIL blocked the UI thread for 100-170 ms
# (benchmarks.ui_responsiveness with UIBENCH_DEBUG: the UI thread neither ran nor waited for a
# CPU while the worker waited for one). At the default priority no such gap was seen (two runs
# each way, machine load 10-15 on 2 cores).


def drive(
    func: Callable[..., Any], cancel: threading.Event, poll_s: float = 0.05
) -> Generator[Progress, None, Any]:
    """Run `func(progress=..., cancel=cancel)` in a helper thread, yielding its Progress events.

    The generator returns func's return value (or raises its exception). Setting `cancel`
    asks the core to stop; the generator keeps draining reports until the core returns, so
    whatever finished before the cancel is kept and reported.
    """
    reports: queue.Queue = queue.Queue()
    outcome: dict[str, Any] = {}

    def progress(event: Progress) -> None:
        reports.put(event)

    def target() -> None:
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
        self.last: Progress = Progress("", 0)

    def start(self) -> None:
        self.started_at = time.monotonic()
        self.worker.start()

    def request_cancel(self) -> None:
        self.cancel.set()

    def eta_seconds(self, progress: Progress) -> float | None:
        """Remaining time from the mean pace so far; None until something finished."""
        if not progress.total or progress.done <= 0:
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


class _Delivery(QObject):
    """Carries one result from a reading thread to the UI thread (queued signals)."""

    done = Signal(object)
    failed = Signal(object)


def _emit(signal, value) -> None:
    try:
        signal.emit(value)
    except RuntimeError:  # the receiver was deleted meanwhile (its window closed)
        pass


def run_in_thread(func: Callable[..., Any], *args: Any, parent: QObject,
                  on_done: Callable[[Any], None], on_failed: Callable[[BaseException], None],
                  name: str = "astroapp-read") -> None:
    """`func(*args)` in a plain daemon thread; its return value (or exception) reaches
    `on_done` (or `on_failed`) on the UI thread by a queued signal, and nothing arrives once
    `parent` is deleted. For short reads (imagery); long jobs are `Job`s. A plain thread, not
    a thread-pool runnable: its signals still arrive after an earlier event loop has quit."""
    carrier = _Delivery(parent)
    carrier.done.connect(on_done)
    carrier.failed.connect(on_failed)
    carrier.done.connect(carrier.deleteLater)
    carrier.failed.connect(carrier.deleteLater)

    def work() -> None:
        try:
            result = func(*args)
        except Exception as exc:  # noqa: BLE001 - handed to on_failed on the UI thread
            _emit(carrier.failed, exc)
        else:
            _emit(carrier.done, result)

    threading.Thread(target=work, name=name, daemon=True).start()
