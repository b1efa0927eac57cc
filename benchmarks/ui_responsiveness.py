"""UI responsiveness of the desktop app while it works in the background.

    .venv/bin/python -m benchmarks.ui_responsiveness [--photos 6] [--interval-ms 10]
        [--index DIR] [--weights FILE|random] [--full-index]

Drives the real main window (offscreen Qt): imports the demo roll, then localizes it in the
background while a QTimer ticks every `interval` ms on the UI thread. A tick that arrives late
means the event loop was blocked; the longest gap between ticks is what a user feels as a
freeze (target: <= 100 ms). Also times opening photos in the review view (UI thread work).

By default the bundled model and a regional index of the demo world around the roll are
used (built in a temp dir); `--full-index` uses the whole demo world's index instead
(built once into the data dir, minutes on a CPU). UIBENCH_DEBUG=1 prints every gap > 50 ms
with its time, the garbage collections (> 20 ms) within it and what every thread ran
meanwhile (a watchdog thread samples their stacks while a tick is late).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

TARGET_MS = 100.0


class TickRecorder:
    """Timestamps of a QTimer's ticks on the UI thread."""

    def __init__(self, interval_ms: int) -> None:
        from PySide6.QtCore import Qt, QTimer

        self.stamps: list[float] = []
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(lambda: self.stamps.append(time.perf_counter()))

    def start(self) -> None:
        self.stamps = [time.perf_counter()]
        self.timer.start()

    def stop(self) -> list[float]:
        self.timer.stop()
        self.stamps.append(time.perf_counter())
        return self.stamps

    @staticmethod
    def stats(stamps: list[float]) -> dict:
        gaps = [(b - a) * 1000 for a, b in zip(stamps, stamps[1:], strict=False)]
        if not gaps:
            return {"ticks": 0, "mean": 0.0, "p50": 0.0, "p99": 0.0, "max": 0.0, "over": 0}
        srt = sorted(gaps)
        return {
            "ticks": len(gaps),
            "mean": statistics.fmean(gaps),
            "p50": srt[len(srt) // 2],
            "p99": srt[min(len(srt) - 1, int(0.99 * len(srt)))],
            "max": srt[-1],
            "over": sum(g > TARGET_MS for g in gaps),
        }


class StallSampler:
    """A watchdog thread: while the UI thread's ticks are late (> `late_ms` since the last),
    it samples every thread's stack (`sys._current_frames`) every `every_ms`, so that a gap
    says WHAT ran: the UI thread's own code, or another thread holding the GIL (the watchdog
    itself only runs when the GIL lets it, so a gap with no sample was one C call or a GC)."""

    def __init__(self, rec: TickRecorder, late_ms: float = 50.0, every_ms: float = 10.0) -> None:
        import threading

        self.rec, self.late, self.every = rec, late_ms / 1000, every_ms / 1000
        self.ui = threading.get_ident()
        self.samples: dict[float, list[dict[str, str]]] = {}  # gap start (tick stamp) -> samples
        self.gcs: list[tuple[float, float, int, str]] = []  # (start, ms, generation, thread)
        self.cpu: dict[str, list[tuple[float, int, int]]] = {}  # thread -> (time, run ns, wait ns)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="uibench-watchdog", daemon=True)

    def start(self) -> None:
        import gc
        import threading

        gc.callbacks.append(self._on_gc)
        self._sched(threading.enumerate())  # counters before the first tick, for a gap there
        self._thread.start()

    def stop(self) -> None:
        import gc

        self._stop.set()
        self._thread.join()
        gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict) -> None:
        import threading

        if phase == "start":
            self._gc_t0 = time.perf_counter()
        elif (ms := (time.perf_counter() - getattr(self, "_gc_t0", time.perf_counter())) * 1000) > 20:
            self.gcs.append((self._gc_t0, ms, info["generation"], threading.current_thread().name))

    def _sched(self, threads) -> None:
        """Linux's per-thread scheduler counters (ns on a CPU, ns runnable but waiting for
        one): a gap in which the UI thread waited for a CPU is the machine's load; one in
        which it neither ran nor waited was the UI thread blocked (on the GIL)."""
        now = time.perf_counter()
        for t in threads:
            if t.native_id is None or t.name == "uibench-watchdog":
                continue
            try:
                with open(f"/proc/self/task/{t.native_id}/schedstat") as f:
                    run_ns, wait_ns = (int(v) for v in f.read().split()[:2])
            except (OSError, ValueError):
                continue
            name = "UI" if t.ident == self.ui else t.name
            self.cpu.setdefault(name, []).append((now, run_ns, wait_ns))

    def _cpu_during(self, a: float, b: float) -> list[str]:
        """Each busy thread's CPU time and run-queue wait between the counters read just
        before tick `a` and just after tick `b`."""
        out = []
        for name, rows in self.cpu.items():
            before = [r for r in rows if r[0] <= a]
            after = [r for r in rows if r[0] >= b]
            if before and after:
                window = (after[0][0] - before[-1][0]) * 1000
                run, wait = ((after[0][i] - before[-1][i]) / 1e6 for i in (1, 2))
                if name == "UI" or run + wait > 5:
                    out.append(f"{name} ran {run:.0f} ms, waited for a CPU {wait:.0f} ms (of {window:.0f} ms)")
        return ["      CPU: " + "; ".join(out)] if out else []

    def cause(self, a: float, b: float) -> str:
        """The UI thread during a gap: runnable but waiting for a CPU most of it (the
        machine's load), a garbage collection, or neither (blocked: its own work or the GIL)."""
        if any(a - 0.001 <= start <= b and ms > 0.5 * (b - a) * 1000 for start, ms, _, _ in self.gcs):
            return "garbage collection"
        rows = self.cpu.get("UI", [])
        before = [r for r in rows if r[0] <= a]
        after = [r for r in rows if r[0] >= b]
        if not before or not after:
            return "unknown"
        window, run, wait = after[0][0] - before[-1][0], after[0][1] - before[-1][1], after[0][2] - before[-1][2]
        if wait > 0.5 * window * 1e9:
            return "UI thread waiting for a CPU (machine load)"
        return "UI thread running" if run > 0.5 * window * 1e9 else "UI thread blocked (GIL)"

    @staticmethod
    def _where(frame, depth: int = 4) -> str:
        parts = []
        while frame is not None and len(parts) < depth:
            code = frame.f_code
            parts.append(f"{Path(code.co_filename).name}:{frame.f_lineno} {code.co_name}")
            frame = frame.f_back
        return " < ".join(parts)

    def _run(self) -> None:
        import threading

        while not self._stop.wait(self.every):
            stamps = self.rec.stamps
            if not stamps or time.perf_counter() - stamps[-1] < self.late:
                self._sched(threading.enumerate())
                continue
            self._sched(threading.enumerate())
            names = {t.ident: t.name for t in threading.enumerate()}
            frames = sys._current_frames()
            sample = {("UI" if ident == self.ui else names.get(ident, str(ident))): self._where(f)
                      for ident, f in frames.items() if ident != threading.get_ident()}
            self.samples.setdefault(stamps[-1], []).append(sample)

    def report(self, a: float, b: float, t0: float) -> list[str]:
        """What the samples and the GC saw during the gap from tick `a` to tick `b`."""
        lines = [f"      gc gen {g} in thread {name}: {ms:.0f} ms at t={start - t0:.2f} s"
                 for start, ms, g, name in self.gcs if a - 0.001 <= start <= b]
        seen: dict[str, int] = {}
        for sample in self.samples.get(a, []):
            for name, where in sample.items():
                if name == "UI" or not where.startswith(("threading.py", "queue.py")):  # not idle
                    seen[f"{name}: {where}"] = seen.get(f"{name}: {where}", 0) + 1
        lines += [f"      {n}x {text}" for text, n in sorted(seen.items(), key=lambda kv: -kv[1])[:6]]
        if not seen:
            lines.append("      (no stack sample: the watchdog never got the GIL during the gap)")
        return lines + self._cpu_during(a, b)


def regional_index(demo, model, out: Path) -> Path:
    from shapely.geometry import box

    from astroapp.geo.sources.bluemarble import BlueMarbleSource
    from astroapp.index import build_index

    corners = [c for p in demo.truth()["photos"] for c in p["footprint"]]
    lons, lats = [c[0] for c in corners], [c[1] for c in corners]
    area = box(min(lons) - 5, max(min(lats) - 5, -85), max(lons) + 5, min(max(lats) + 5, 85))

    class Regional(BlueMarbleSource):
        def __init__(self) -> None:
            super().__init__((5, 6))
            self._refs = [r for r in super().tiles() if r.footprint.polygon().intersects(area)]

        def tiles(self):
            return iter(self._refs)

        def __len__(self) -> int:
            return len(self._refs)

    build_index([Regional()], model, out, source_specs=["bluemarble"])
    return out


def prepare(work: Path, n_photos: int, weights: str, full_index: bool) -> dict:
    """Demo roll, weights and index, made in a child process (see `main`)."""
    import torch

    from astroapp.checkpoints import save_safetensors
    from astroapp.geo.demo import prepare_demo
    from astroapp.gui.backend import load_retrieval_model
    from astroapp.gui.settings import AppSettings

    demo = prepare_demo(n_photos=max(n_photos, 24))  # the cached bundled demo roll
    if weights == "random":  # one fixed file, so the index and the batch use the same model
        torch.manual_seed(0)
        rnd = load_retrieval_model(AppSettings(weights="random"))
        weights = str(work / "random.safetensors")
        save_safetensors(rnd, weights, {"architecture": rnd.name})
    model = load_retrieval_model(AppSettings(weights=weights))
    if full_index:
        from astroapp.index.demo import ensure_demo_index

        index = ensure_demo_index(model)
    else:
        index = regional_index(demo, model, work / "index")
    return {"photos": [str(p) for p in demo.photos()[:n_photos]], "weights": weights,
            "index": str(index)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=6, help="demo photos to localize")
    ap.add_argument("--interval-ms", type=int, default=10)
    ap.add_argument("--index", type=Path, default=None, help="tile index folder to use")
    ap.add_argument("--full-index", action="store_true", help="the whole demo world's index")
    ap.add_argument("--weights", default="", help="retrieval weights ('random': untrained)")
    ap.add_argument("--max-candidates", type=int, default=3)
    ap.add_argument("--prepare-into", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.prepare_into is not None:  # child process: the heavy set-up, result as JSON
        print("PREPARED " + json.dumps(prepare(args.prepare_into, args.photos, args.weights,
                                               args.full_index)))
        return 0

    work = Path(tempfile.mkdtemp(prefix="astroapp-uibench-"))
    # The set-up (rendering, embedding tiles) runs in a child process, so that this process
    # starts like the app: torch & co. are first imported by the app itself, not here.
    cmd = [sys.executable, "-m", "benchmarks.ui_responsiveness", "--prepare-into", str(work),
           "--photos", str(args.photos), "--weights", args.weights]
    if args.full_index:
        cmd.append("--full-index")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    prepared = json.loads(out.split("PREPARED ", 1)[1])

    from astroapp.gui.app import application, load_core

    app = application([])
    core_s = load_core()  # as the app does, behind its splash screen, before the window
    from astroapp.gui.main_window import MainWindow
    from astroapp.gui.settings import AppSettings

    weights = prepared["weights"]
    settings = AppSettings(weights=weights, index_dir=str(args.index or prepared["index"]),
                           localize_options={"max_candidates": args.max_candidates})
    photos = [Path(p) for p in prepared["photos"]]

    win = MainWindow(work / "catalog.sqlite", settings=settings)
    win.resize(1400, 900)
    win.show()
    rec = TickRecorder(args.interval_ms)
    rows = []
    debug = bool(os.environ.get("UIBENCH_DEBUG"))

    def run_job(label: str, start) -> None:
        done = []
        win.jobFinished.connect(lambda kind, summary: done.append(summary))
        if debug:
            import gc

            modules = set(sys.modules)
            print(f"  {label}: {len(gc.get_objects())} objects tracked by the GC "
                  f"({gc.get_freeze_count()} frozen) at the start")
        sampler = StallSampler(rec) if debug else None
        if sampler:
            sampler.start()  # first: its counters must predate the first tick
        rec.start()
        t0 = time.perf_counter()
        start()
        while not done:
            app.processEvents()
            time.sleep(0.001)
        seconds = time.perf_counter() - t0
        stamps = rec.stop()
        st = TickRecorder.stats(stamps)
        if sampler:
            sampler.stop()
            new = sorted({m.split(".")[0] for m in set(sys.modules) - modules})
            print(f"  {label}: {len(set(sys.modules) - modules)} modules first imported during it, "
                  f"from {', '.join(new)}")
            kinds: dict[str, int] = {}
            for a, b in zip(stamps, stamps[1:], strict=False):
                if (b - a) * 1000 > 50:
                    print(f"  {label}: gap {(b - a) * 1000:.0f} ms at t={a - t0:.2f} s")
                    print("\n".join(sampler.report(a, b, t0)))
                if (b - a) * 1000 > TARGET_MS:
                    kind = sampler.cause(a, b)
                    kinds[kind] = kinds.get(kind, 0) + 1
            if kinds:
                print(f"  {label}: gaps > {TARGET_MS:.0f} ms by cause: "
                      + ", ".join(f"{n} {kind}" for kind, n in kinds.items()))
        win.jobFinished.disconnect()
        rows.append((label, seconds, st))
        return done[0]

    def idle(seconds: float) -> None:
        rec.start()
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            app.processEvents()
            time.sleep(0.001)
        rows.append(("idle (baseline)", seconds, TickRecorder.stats(rec.stop())))

    idle(3.0)
    run_job(f"import {len(photos)} demo photos", lambda: win.start_import(photos))
    summary = run_job(f"localize {len(photos)} photos", win.localize_all)
    cancel_rows = []
    # cancel latency: start again on the same photos, cancel after the first one finishes
    for p in win.catalog.photos():
        win.catalog.set_status(p.id, "new")
    win.reload()
    seen = []
    win.localize_all()
    win.job.worker.yielded.connect(seen.append)
    while not seen:
        app.processEvents()
        time.sleep(0.001)
    t0 = time.perf_counter()
    win.cancel_job()
    while win.job is not None:
        app.processEvents()
        time.sleep(0.001)
    cancel_rows.append(time.perf_counter() - t0)

    # review view: opening each photo happens on the UI thread
    opens = []
    for pid in win.model.photo_ids():
        t0 = time.perf_counter()
        win.open_review(pid)
        app.processEvents()
        opens.append((time.perf_counter() - t0) * 1000)

    print(f"UI responsiveness ({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"QTimer every {args.interval_ms} ms, target: longest gap <= {TARGET_MS:.0f} ms)")
    print(f"start-up: the core loaded in {core_s:.1f} s behind the splash screen, before the window")
    print(f"index: {settings.index_dir}; weights: {weights or 'bundled'}; "
          f"{summary.describe() if hasattr(summary, 'describe') else summary}")
    head = f"{'phase':<28} {'seconds':>8} {'ticks':>6} {'mean ms':>8} {'p50 ms':>7} {'p99 ms':>7} {'max gap ms':>11} {'>100ms':>7}  result"
    print(head)
    print("-" * len(head))
    worst = 0.0
    for label, seconds, st in rows:
        ok = st["max"] <= TARGET_MS
        if not label.startswith("idle"):
            worst = max(worst, st["max"])
        print(f"{label:<28} {seconds:8.1f} {st['ticks']:6d} {st['mean']:8.1f} {st['p50']:7.1f} "
              f"{st['p99']:7.1f} {st['max']:11.1f} {st['over']:7d}  {'PASS' if ok else 'FAIL'}")
    print(f"{'cancel -> batch stopped':<28} {cancel_rows[0]:8.2f} s   (target <= 1 s: "
          f"{'PASS' if cancel_rows[0] <= 1.0 else 'FAIL'})")
    print(f"{'review: open a photo':<28} median {statistics.median(opens):.0f} ms, max {max(opens):.0f} ms "
          f"over {len(opens)} photos (UI thread)")
    win.close()
    return 0 if worst <= TARGET_MS else 1


if __name__ == "__main__":
    raise SystemExit(main())
