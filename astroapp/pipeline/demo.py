"""The whole main job on the bundled demo, in one call: what `astroapp demo` runs.

    summary = run_demo()            # default catalogue, 24 demo photos
    print(summary.format_table())

One function per step, each over the run's `DemoRun` (its options, and what the steps hand on)
and through its layer's public function: the demo world and roll (`geo.demo.prepare_demo`),
the demo world's tile index for the retrieval model (`index.demo.ensure_demo_index`), import
of the roll (`catalog.importer.iter_import`) and of its NASA metadata CSV
(`catalog.nasa_csv.import_nasa_csv`: the nadir prior of retrieval), localization of the roll's
new photos (`pipeline.service.LocalizationService`), exports (`export.export_catalog`) into
`<data dir>/demo/exports/`. Everything is cached or idempotent, so a re-run only re-reads and
re-reports. A step that cannot run (no model weights, an earlier step it needs did not run)
is reported as "not available" with the reason, a failing step as "failed"; the steps after
it that need it are skipped, never faked. The score against the roll's `truth.json` is the
evaluation layer's (`astroapp.evaluation.demo_score.run_scored_demo`).

Qt-free: the GUI calls `run_demo` from a worker thread (it opens its own Catalog).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from astroapp import __version__, config
from astroapp.atomic import atomic_text
from astroapp.catalog import Catalog
from astroapp.catalog.importer import iter_import
from astroapp.catalog.nasa_csv import import_nasa_csv
from astroapp.export import export_catalog
from astroapp.geo.demo import demo_roll_dir, prepare_demo
from astroapp.index.demo import demo_index_dir, ensure_demo_index
from astroapp.index.manifest import MANIFEST_NAME
from astroapp.pipeline.service import LocalizationService, LocalizeSettings
from astroapp.progress import Progress, ProgressFn
from astroapp.retrieval import WeightsError, load_model

log = logging.getLogger(__name__)

# progress(Progress): stage = the step's name, total None = unknown; each step ends with one
# event done == total == 1 whose message starts with the step's status
DemoProgress = ProgressFn

STEP_NAMES = ("demo roll", "index", "import", "localize", "exports")
EXPORT_FILES = (("geojson", "demo_footprints.geojson"), ("html", "demo_map.html"),
                ("csv", "demo_footprints.csv"))
EXPORT_STAMP = ".demo_exports.json"  # what the exports were written from (re-run: cached)

DONE, CACHED, NOT_AVAILABLE, FAILED, SKIPPED, CANCELLED = (
    "done", "cached", "not available", "failed", "skipped", "cancelled")


class DemoCancelled(Exception):
    """Raised inside a step when the cancel event is set; the summary says `cancelled`."""


@dataclass
class StepReport:
    """One step: what it did (or why it could not), and how long it took."""

    name: str
    status: str = SKIPPED  # done | cached | not available | failed | skipped | cancelled
    seconds: float = 0.0
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status in (DONE, CACHED)


@dataclass
class DemoSummary:
    """What `run_demo` did; counts are the catalogue's state of the demo roll (so a re-run
    reports the same), the `*_this_run` fields what this very run added."""

    catalog_path: Path
    demo_root: Path | None = None
    roll_dir: Path | None = None
    exports_dir: Path | None = None
    steps: list[StepReport] = field(default_factory=list)
    photo_ids: list[int] = field(default_factory=list)  # the demo roll's catalogue ids
    roll_photos: int = 0
    imported: int = 0  # demo photos in the catalogue
    localized: int = 0  # with a localization (confident or not), reviewed ones included
    accepted_auto: int = 0
    for_review: int = 0  # localized, not confident, not yet reviewed
    reviewed: int = 0  # accepted or rejected by a person
    failed: int = 0
    pending: int = 0  # still new / localizing (e.g. localization not available)
    added_this_run: int = 0
    localized_this_run: int = 0
    truth_path: Path | None = None  # the roll's ground truth (truth.json)
    photo_files: dict[int, str] = field(default_factory=dict)  # catalogue id -> roll file name
    # the localizations against truth.json: filled by the evaluation layer
    # (`astroapp.evaluation.demo_score.run_scored_demo`), which gives it `rows()` for the table
    truth: Any = None
    files: list[Path] = field(default_factory=list)
    cancelled: bool = False
    seconds: float = 0.0

    def step(self, name: str) -> StepReport:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def ok(self) -> bool:
        """Every step ran (or was cached, or was not asked for): the whole product worked."""
        return not self.cancelled and all(s.ok or s.status == SKIPPED for s in self.steps)

    def format_table(self) -> str:
        """The summary as plain text (fixed-width tables), for a terminal or a dialog."""
        lines = [f"astroapp demo - catalogue {self.catalog_path}"]
        if self.roll_dir is not None:
            lines.append(f"demo roll: {self.roll_dir} (ground truth: truth.json)")
        lines.append("")
        lines.append(f"{'step':<11} {'status':<14} {'time':>8}  detail")
        for s in self.steps:
            lines.append(f"{s.name:<11} {s.status:<14} {_fmt_s(s.seconds):>8}  {s.detail}")
        lines.append(f"{'total':<11} {'':<14} {_fmt_s(self.seconds):>8}")
        lines.append("")
        rows = [
            ("photos in the demo roll", str(self.roll_photos)),
            ("imported (in the catalogue)", f"{self.imported}  (+{self.added_this_run} this run)"),
            ("localized", f"{self.localized}  (+{self.localized_this_run} this run)"),
            ("  accepted automatically", str(self.accepted_auto)),
            ("  for review", str(self.for_review)),
        ]
        if self.reviewed:
            rows.append(("  reviewed by a person", str(self.reviewed)))
        rows.append(("failed", str(self.failed)))
        if self.pending:
            rows.append(("not localized yet", str(self.pending)))
        if self.truth is not None:  # scored by astroapp.evaluation.demo_score
            rows += self.truth.rows()
        width = max(len(k) for k, _ in rows)
        lines += [f"{k:<{width}}  {v}" for k, v in rows]
        if self.files:
            lines.append("")
            lines.append("files written:")
            lines += [f"  {p}" for p in self.files]
        if self.cancelled:
            lines.append("")
            lines.append("cancelled: re-run to finish (everything done so far is kept)")
        return "\n".join(lines)


def _fmt_s(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


class _NotAvailable(Exception):
    """Something this step needs is missing (no model weights, an earlier step's result)."""


@dataclass
class DemoRun:
    """One run of the demo: its options, the summary the steps fill, and what each step hands
    to the next (the roll, the model, the index folder, the open catalogue)."""

    summary: DemoSummary
    progress: DemoProgress | None = None
    cancel: threading.Event | None = None
    n_photos: int = 24
    seed: int = 0
    root: Path | None = None  # the demo cache dir (None: `<data dir>/demo`)
    model: Any = None  # a retrieval model, its name, or None (the bundled one)
    index_dir: Path | None = None  # a given index (None: the demo world's)
    matcher: Any = None
    localize_options: dict[str, Any] = field(default_factory=dict)  # k, max_candidates
    paths: Any = None  # geo.demo.DemoPaths, once the roll is there
    index_folder: Path | None = None  # the index the roll is localized with
    catalog: Any = None  # the open Catalog (import, localize, exports)

    def report(self, step: str, done: int, total: int, message: str, item: str = "") -> None:
        if self.progress is not None:
            try:
                self.progress(Progress(step, done, total or None, item=item, message=message))
            except Exception:  # noqa: BLE001 - a broken progress display must not stop the job
                log.exception("demo progress callback failed")

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise DemoCancelled()


def _run_step(run: DemoRun, name: str, step: Callable[[DemoRun, StepReport], None]) -> None:
    """Run one step with timing; its failure becomes its report, never a crash. After a
    cancel the step is recorded as skipped and not called."""
    summary = run.summary
    if summary.cancelled:
        _skip(run, name, "cancelled")
        return
    rep = StepReport(name)
    summary.steps.append(rep)
    t0 = time.perf_counter()
    run.report(name, 0, 0, "starting…")
    try:
        run.check_cancel()
        step(run, rep)
        if rep.status == SKIPPED:
            rep.status = DONE
    except DemoCancelled:
        rep.status = CANCELLED
        summary.cancelled = True
    except _NotAvailable as exc:
        rep.status, rep.detail = NOT_AVAILABLE, str(exc)
    except Exception as exc:  # noqa: BLE001 - report the step as failed, go on
        if run.cancel is not None and run.cancel.is_set():  # e.g. an index build's
            rep.status = CANCELLED                            # InterruptedError
            summary.cancelled = True
        else:
            log.warning("demo step %s failed: %s", name, exc,
                        exc_info=log.isEnabledFor(logging.DEBUG))
            rep.status, rep.detail = FAILED, f"{type(exc).__name__}: {_first_line(exc)}"
    finally:
        rep.seconds = time.perf_counter() - t0
        # the step's last report: done == total == 1, its status (+ detail)
        run.report(name, 1, 1, rep.status + (f": {rep.detail}" if rep.detail else ""))


def _skip(run: DemoRun, name: str, why: str) -> None:
    run.summary.steps.append(StepReport(name, SKIPPED, 0.0, why))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def demo_exports_dir(root: Path | None = None) -> Path:
    """`<data dir>/demo/exports` (or under `root`, the demo cache dir)."""
    if root is None:
        root = config.data_dir() / "demo"
    return Path(root) / "exports"


# ---- the steps, in order ---------------------------------------------------------------
def _prepare_roll(run: DemoRun, rep: StepReport) -> None:
    """1. The demo world and roll (rendered once, then cached)."""
    truth = demo_roll_dir(run.root) / "truth.json"
    before = truth.stat().st_mtime_ns if truth.is_file() else None
    paths = prepare_demo(run.root, n_photos=run.n_photos, seed=run.seed)
    cached = before is not None and paths.truth_path.stat().st_mtime_ns == before
    n = len(paths.photos())
    rep.status = CACHED if cached else DONE
    rep.detail = f"{n} photos in {paths.roll_dir}"
    run.paths = paths
    s = run.summary
    s.demo_root, s.roll_dir, s.truth_path, s.roll_photos = (paths.root, paths.roll_dir,
                                                            paths.truth_path, n)


def _ensure_index(run: DemoRun, rep: StepReport) -> None:
    """2. The retrieval model and the demo world's index for it (built on first use)."""
    if run.index_dir is not None:
        folder = run.index_dir
        if not folder.is_dir():
            raise FileNotFoundError(f"index folder {folder} does not exist")
        rep.status, rep.detail = CACHED, f"given index {folder}"
        run.model = _resolve_model(run.model)
        run.index_folder = folder
        return
    run.model = _resolve_model(run.model)
    existed = (demo_index_dir(run.model) / MANIFEST_NAME).is_file()

    def on_build(event: Progress) -> None:
        run.report("index", event.done, event.total or 0,
                   f"embedding the demo world: {event.done}/{event.total} tiles")

    folder = ensure_demo_index(run.model, progress=on_build, cancel=run.cancel)
    rep.status = CACHED if existed else DONE
    rep.detail = f"{getattr(run.model, 'name', 'model')} index in {folder}"
    run.index_folder = folder


def _import_roll(run: DemoRun, rep: StepReport) -> None:
    """3. Import the roll's photos, and NASA's metadata of the roll (nadir point, altitude,
    lens: the retrieval prior real photos have; keyed by photo id, so re-importing it adds
    nothing)."""
    if run.paths is None:
        raise _NotAvailable("no demo roll")
    s = run.summary
    holder: list[Any] = []
    ids: list[int] = []
    for event in iter_import(run.catalog, run.paths.photos(), cancel=run.cancel, report=holder):
        res = event.result
        name = Path(res.path).name
        if res.photo_id is not None and res.photo_id not in s.photo_files:
            ids.append(res.photo_id)
            s.photo_files[res.photo_id] = name
        run.report("import", res.done, res.total, f"{name}: {res.outcome}", item=name)
    report = holder[0] if holder else None
    s.photo_ids = ids
    if report is None:
        return
    s.added_this_run = report.added
    rep.status = CACHED if report.added == 0 and report.failed == 0 else DONE
    parts = [f"{report.added} added", f"{report.already} already catalogued"]
    if report.duplicates:
        parts.append(f"{report.duplicates} duplicates")
    if report.failed:
        parts.append(f"{report.failed} failed")
    if report.cancelled:
        rep.detail = ", ".join(parts)
        raise DemoCancelled()
    nasa_csv = getattr(run.paths, "nasa_csv", None)
    if nasa_csv is not None and Path(nasa_csv).is_file():
        meta = import_nasa_csv(run.catalog, nasa_csv)
        parts.append(f"NASA metadata for {meta.attached} photos")
        if meta.errors:
            parts.append(f"{len(meta.errors)} bad metadata rows")
    rep.detail = ", ".join(parts)


def _localize_roll(run: DemoRun, rep: StepReport) -> None:
    """4. Localize the roll's new photos (a re-run finds none)."""
    if run.index_folder is None:
        raise _NotAvailable("needs the index (see the index step)")
    catalog = run.catalog
    todo = [pid for pid in run.summary.photo_ids
            if (p := catalog.get_photo(pid)) is not None and p.status == "new"]
    if not todo:
        rep.status, rep.detail = CACHED, "no new photo (all localized before)"
        return

    def on_photo(event: Progress) -> None:
        run.report("localize", event.done, event.total or 0, event.message, event.item)

    service = LocalizationService(catalog, index=run.index_folder, model=run.model,
                                  matcher=run.matcher,
                                  settings=LocalizeSettings.from_options(run.localize_options))
    try:
        result = service.localize(todo, progress=on_photo, cancel=run.cancel)
    except BaseException:
        # interrupted mid-photo (Ctrl-C): nothing of the roll may stay `localizing`
        for pid in todo:
            p = catalog.get_photo(pid)
            if p is not None and p.status == "localizing":
                catalog.set_status(pid, "new", None)
        raise
    run.summary.localized_this_run = result.count("localized") + result.count("review")
    rep.detail = (f"{len(todo)} new: {result.count('localized')} confident, "
                  f"{result.count('review')} for review, {result.count('failed')} failed")
    if result.cancelled:
        raise DemoCancelled()


def _export_roll(run: DemoRun, rep: StepReport) -> None:
    """5. GeoJSON, HTML map and CSV of the roll's footprints (cached while nothing they are
    written from changed)."""
    s, catalog = run.summary, run.catalog
    if not s.photo_ids:
        raise _NotAvailable("no demo photo in the catalogue")
    out_dir = demo_exports_dir(s.demo_root)
    out_dir.mkdir(parents=True, exist_ok=True)
    s.exports_dir = out_dir
    stamp_path = out_dir / EXPORT_STAMP
    stamp = _exports_stamp(catalog, s.catalog_path, s.photo_ids)
    try:
        previous = json.loads(stamp_path.read_text())
    except (OSError, ValueError):
        previous = None
    files = [out_dir / name for _, name in EXPORT_FILES]
    if (isinstance(previous, dict) and previous.get("stamp") == stamp
            and all(f.is_file() for f in files)):
        s.files.extend(files)
        rep.status = CACHED
        rep.detail = f"{previous.get('detail', '')} (unchanged since the last run)"
        return
    stamp_path.unlink(missing_ok=True)  # a half-finished export is never "cached"
    exported = 0
    skipped: list[str] = []
    for i, (fmt, name) in enumerate(EXPORT_FILES):
        run.check_cancel()
        run.report("exports", i, len(EXPORT_FILES), f"writing {name}", item=name)
        res = export_catalog(catalog, fmt, out_dir / name, ids=s.photo_ids, cancel=run.cancel)
        s.files.extend(res.written)
        exported, skipped = res.exported, res.skipped
    rep.detail = (f"{exported} footprints, {len(s.files)} files in {out_dir}"
                  + (f" ({len(skipped)} photos without a footprint)" if skipped else ""))
    with atomic_text(stamp_path) as fh:
        json.dump({"stamp": stamp, "detail": rep.detail}, fh)


def run_demo(
    catalog_path: str | Path | None = None,
    progress: DemoProgress | None = None,
    cancel: threading.Event | None = None,
    *,
    n_photos: int = 24,
    seed: int = 0,
    root: str | Path | None = None,
    model: Any = None,
    index_dir: str | Path | None = None,
    matcher: Any = None,
    k: int | None = None,
    max_candidates: int | None = None,
    exports: bool = True,
) -> DemoSummary:
    """Prepare, index, import, localize and export the bundled demo; a DemoSummary.

    `catalog_path`: None = the user's default catalogue. `root`: the demo cache dir (default
    `<data dir>/demo`). `model`: a retrieval model or its name (None: the bundled one);
    `index_dir`: an index built for that model (None: the demo world's, built on first use).
    `progress` gets a `Progress` per report (stage the step's name); `cancel` set -> stops at
    the next photo or step, keeping everything done so far. A step that fails or is not
    available is reported in the summary (the rest goes on as far as it can); nothing here
    raises for them.
    """
    t_start = time.perf_counter()
    cat_path = Path(catalog_path) if catalog_path is not None else config.default_catalog_path()
    summary = DemoSummary(catalog_path=cat_path)
    options = {name: value for name, value in (("k", k), ("max_candidates", max_candidates))
               if value is not None}
    run = DemoRun(summary, progress, cancel, n_photos=n_photos, seed=seed,
                  root=Path(root) if root is not None else None, model=model,
                  index_dir=Path(index_dir) if index_dir is not None else None,
                  matcher=matcher, localize_options=options)
    _run_step(run, "demo roll", _prepare_roll)
    _run_step(run, "index", _ensure_index)
    try:
        catalog = Catalog(cat_path)
    except Exception as exc:  # noqa: BLE001 - an unusable catalogue ends the demo, reported
        for name in ("import", "localize", "exports"):
            summary.steps.append(StepReport(name, FAILED, 0.0,
                                            f"cannot open catalogue {cat_path}: {_first_line(exc)}"))
        summary.seconds = time.perf_counter() - t_start
        return summary
    with catalog:
        run.catalog = catalog
        summary.catalog_path = Path(catalog.path)
        _run_step(run, "import", _import_roll)
        _run_step(run, "localize", _localize_roll)
        if exports or summary.cancelled:
            _run_step(run, "exports", _export_roll)  # skipped as "cancelled" after a cancel
        else:
            _skip(run, "exports", "not asked for")
        _count(catalog, summary)  # the catalogue's state of the demo roll
    summary.seconds = time.perf_counter() - t_start
    return summary


def _resolve_model(model: Any) -> Any:
    """A retrieval model: `model` itself, or the one its name (None: the bundled one) names."""
    if model is not None and not isinstance(model, str):
        return model
    try:
        return load_model(model) if model else load_model()
    except WeightsError as exc:
        raise _NotAvailable(f"no retrieval model weights: {_first_line(exc)}") from exc


def _exports_stamp(catalog: Any, catalog_path: Path, photo_ids: list[int]) -> str:
    """What the exports depend on: the catalogue, and each demo photo's status, last change
    and current localization (a review or a new localization changes it), the app version."""
    rows = []
    for pid in photo_ids:
        p = catalog.get_photo(pid)
        if p is not None:
            rows.append([p.id, p.status, p.updated_at, p.localization_id, p.path])
    text = json.dumps([str(Path(catalog_path).resolve()), __version__, EXPORT_FILES, rows])
    return hashlib.sha256(text.encode()).hexdigest()


def _count(catalog: Any, summary: DemoSummary) -> None:
    for pid in summary.photo_ids:
        photo = catalog.get_photo(pid)
        if photo is None:
            continue
        summary.imported += 1
        if photo.status == "failed":
            summary.failed += 1
            continue
        if photo.status in ("new", "localizing"):
            summary.pending += 1
            continue
        loc = catalog.latest_localization(pid)
        if loc is None:
            summary.pending += 1
            continue
        summary.localized += 1
        if loc.accepted_auto:
            summary.accepted_auto += 1
        if photo.status in ("accepted", "rejected"):
            summary.reviewed += 1
        elif not loc.accepted_auto:
            summary.for_review += 1
