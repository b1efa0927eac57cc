"""The CLI's one renderer of `astroapp.progress.Progress`: a tqdm bar per stage on stderr.

Every command hands a `ProgressBars` instance to the core as its `progress` callback (or feeds
it the events a generator yields). A stage's first event opens its bar, a new stage closes the
previous one; bars are disabled when stderr is not a terminal (tqdm's `disable=None`) or the
user asked for quiet, so scripts and pipes see only the lines a command writes on purpose.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from tqdm import tqdm

from astroapp.progress import Progress

UNITS = {"import": "photo", "index": "tile", "localize": "photo", "retrieve": "photo",
         "export": "file", "train": "step", "download": "B"}
BYTES = {"download"}  # stages that count bytes: shown in KiB/MiB


class ProgressBars:
    """A `ProgressFn` that owns one tqdm bar per stage (use as a context manager).

    `stage_lines`: when a stage ends, its last event stays as a line (`Progress.text()`),
    also when no bar is drawn (the demo's steps in a log)."""

    def __init__(self, quiet: bool = False, file: TextIO | None = None,
                 desc: dict[str, str] | None = None, stage_lines: bool = False) -> None:
        self.quiet = quiet
        self.file = file if file is not None else sys.stderr
        self.desc = dict(desc or {})
        self.stage_lines = stage_lines
        self.bar: Any = None
        self.stage: str | None = None
        self.last: Progress | None = None

    def __call__(self, p: Progress) -> None:
        if p.stage != self.stage or self.bar is None:
            self.close()
            self.stage = p.stage
            scale = {"unit_scale": True, "unit_divisor": 1024} if p.stage in BYTES else {}
            self.bar = tqdm(total=p.total, unit=UNITS.get(p.stage, "item"),
                            desc=self.desc.get(p.stage, p.stage), file=self.file,
                            disable=True if self.quiet else None, dynamic_ncols=True, **scale)
        self.last = p
        bar = self.bar
        if p.total is not None and bar.total != p.total:
            bar.total = p.total
        tail = ": ".join(t for t in (p.item, p.message) if t)
        bar.set_postfix_str(tail[-50:], refresh=False)
        if p.done > bar.n:  # events carry absolute counts: a repeated count adds nothing
            bar.update(p.done - bar.n)  # tqdm limits the redraw rate
        elif p.done < bar.n:
            bar.reset(total=p.total)
            bar.update(p.done)

    def write(self, line: str) -> None:
        """A line above the bar (a failure, a per-photo result); printed also when no bar is
        drawn, unless quiet."""
        if self.quiet:
            return
        if self.bar is not None and not self.bar.disable:
            self.bar.write(line, file=self.file)
        else:
            print(line, file=self.file, flush=True)

    def close(self) -> None:
        bar, last = self.bar, self.last
        self.bar, self.stage, self.last = None, None, None
        if bar is not None:
            bar.close()
            if self.stage_lines and last is not None:
                self.write(last.text())

    def __enter__(self) -> ProgressBars:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
