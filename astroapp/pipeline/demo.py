"""The whole main job on the bundled demo, in one call: what `astroapp demo` runs.

    summary = run_demo()            # default catalogue, 24 demo photos
    print(summary.format_table())

Steps, each through its layer's public function: the demo world and roll
(`geo.demo.prepare_demo`), the demo world's tile index for the retrieval model
(`index.demo.ensure_demo_index`), import of the roll (`catalog.importer.iter_import`) and of
its NASA metadata CSV (`catalog.nasa_csv.import_nasa_csv`: the nadir prior of retrieval),
localization of the roll's new photos (`pipeline.localize.localize_photos`), exports
(`export.export_catalog`) into `<data dir>/demo/exports/`, and a score against the roll's
`truth.json`. Everything is cached or idempotent, so a re-run only re-reads and re-reports.
A step whose layer is missing (not installed, or no model weights) is reported as
"not available" with the reason; the steps after it that need it are skipped, never faked.

Qt-free: the GUI calls `run_demo` from a worker thread (it opens its own Catalog).
"""

from __future__ import annotations

import hashlib
import json
import logging
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from astroapp.progress import Progress, ProgressFn

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
class TruthScore:
    """The demo roll's localizations against its ground truth (truth.json).

    `retrieval_correct`: the top-1 retrieved tile's footprint intersects the true footprint
    (EarthLoc's criterion), out of `retrieval_scored` photos that have candidates.
    `corner_errors_km`: every corner of every confident (accepted_auto) footprint, geodesic.
    `false_accepts`: confident footprints that are wrong by matching's own criterion
    (`is_correct_localization`: IoU with the truth < 0.5).
    """

    photos: int = 0  # demo photos with a truth record
    retrieval_scored: int = 0
    retrieval_correct: int = 0
    retrieval_correct_k: int = 0  # a right tile anywhere among the stored candidates
    candidates_k: int = 0  # how many candidates were stored per photo (the most seen)
    confident: int = 0
    confident_correct: int = 0
    false_accepts: int = 0
    corner_errors_km: list[float] = field(default_factory=list)

    @property
    def retrieval_share(self) -> float | None:
        return self.retrieval_correct / self.retrieval_scored if self.retrieval_scored else None

    @property
    def median_corner_error_km(self) -> float | None:
        return statistics.median(self.corner_errors_km) if self.corner_errors_km else None


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
    truth: TruthScore | None = None
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
        t = self.truth
        if t is not None and t.photos:
            share = t.retrieval_share
            rows.append(("against truth.json", f"{t.photos} photos with ground truth"))
            rows.append(("  correct tile (top-1)",
                         "n/a (no retrieval results)" if share is None else
                         f"{t.retrieval_correct}/{t.retrieval_scored} ({100 * share:.0f} %)"))
            if share is not None and t.candidates_k > 1:
                rows.append((f"  correct tile in top-{t.candidates_k}",
                             f"{t.retrieval_correct_k}/{t.retrieval_scored} "
                             f"({100 * t.retrieval_correct_k / t.retrieval_scored:.0f} %)"))
            med = t.median_corner_error_km
            rows.append(("  median corner error",
                         "n/a (no confident footprint)" if med is None else
                         f"{med:.1f} km  ({t.confident} confident footprints)"))
            rows.append(("  false accepts", f"{t.false_accepts}/{t.confident}"))
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


class _Steps:
    """Runs each step with timing and turns its failure into a report, never a crash."""

    def __init__(self, summary: DemoSummary, progress: DemoProgress | None,
                 cancel: threading.Event | None) -> None:
        self.summary, self.progress, self.cancel = summary, progress, cancel

    def report(self, step: str, done: int, total: int, message: str, item: str = "") -> None:
        if self.progress is not None:
            try:
                self.progress(Progress(step, done, total or None, item=item, message=message))
            except Exception:  # noqa: BLE001 - a broken progress display must not stop the job
                log.exception("demo progress callback failed")

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise DemoCancelled()

    def run(self, name: str, fn: Callable[[StepReport], Any]) -> Any:
        """The step's result, or None when it failed, was cancelled or an earlier step was
        (then it is recorded as skipped and `fn` is not called)."""
        if self.summary.cancelled:
            self.skip(name, "cancelled")
            return None
        rep = StepReport(name)
        self.summary.steps.append(rep)
        t0 = time.perf_counter()
        self.report(name, 0, 0, "starting…")
        try:
            self.check_cancel()
            result = fn(rep)
            if rep.status == SKIPPED:
                rep.status = DONE
            return result
        except DemoCancelled:
            rep.status = CANCELLED
            self.summary.cancelled = True
            return None
        except _NotAvailable as exc:
            rep.status, rep.detail = NOT_AVAILABLE, str(exc)
            return None
        except Exception as exc:  # noqa: BLE001 - report the step as failed, go on
            if self.cancel is not None and self.cancel.is_set():  # e.g. an index build's
                rep.status = CANCELLED                              # InterruptedError
                self.summary.cancelled = True
                return None
            log.warning("demo step %s failed: %s", name, exc,
                        exc_info=log.isEnabledFor(logging.DEBUG))
            rep.status, rep.detail = FAILED, f"{type(exc).__name__}: {_first_line(exc)}"
            return None
        finally:
            rep.seconds = time.perf_counter() - t0
            # the step's last report: done == total == 1, its status (+ detail)
            self.report(name, 1, 1, rep.status + (f": {rep.detail}" if rep.detail else ""))

    def skip(self, name: str, why: str) -> None:
        self.summary.steps.append(StepReport(name, SKIPPED, 0.0, why))


class _NotAvailable(Exception):
    """A layer this step needs is missing (module not there yet, no model weights)."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _import(module: str, name: str) -> Any:
    import importlib

    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise _NotAvailable(f"{module}.{name} is not available ({_first_line(exc)})") from exc


def demo_exports_dir(root: Path | None = None) -> Path:
    """`<data dir>/demo/exports` (or under `root`, the demo cache dir)."""
    if root is None:
        from astroapp.config import data_dir

        root = data_dir() / "demo"
    return Path(root) / "exports"


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
    """Prepare, index, import, localize, export and score the bundled demo; a DemoSummary.

    `catalog_path`: None = the user's default catalogue. `root`: the demo cache dir (default
    `<data dir>/demo`). `model`: a retrieval model or its name (None: the bundled one);
    `index_dir`: an index built for that model (None: the demo world's, built on first use).
    `progress` gets a `Progress` per report (stage the step's name); `cancel` set -> stops at the next photo or step,
    keeping everything done so far. A step that fails or is not available is reported in the
    summary (the rest goes on as far as it can); nothing here raises for them.
    """
    from astroapp import config

    t_start = time.perf_counter()
    cat_path = Path(catalog_path) if catalog_path is not None else config.default_catalog_path()
    summary = DemoSummary(catalog_path=cat_path)
    steps = _Steps(summary, progress, cancel)

    # 1. the demo world and roll --------------------------------------------------------
    def prepare(rep: StepReport) -> Any:
        prepare_demo = _import("astroapp.geo.demo", "prepare_demo")
        demo_roll_dir = _import("astroapp.geo.demo", "demo_roll_dir")
        truth = demo_roll_dir(Path(root) if root is not None else None) / "truth.json"
        before = truth.stat().st_mtime_ns if truth.is_file() else None
        paths = prepare_demo(Path(root) if root is not None else None, n_photos=n_photos,
                             seed=seed)
        cached = before is not None and paths.truth_path.stat().st_mtime_ns == before
        rep.status = CACHED if cached else DONE
        rep.detail = f"{len(paths.photos())} photos in {paths.roll_dir}"
        return paths

    paths = steps.run("demo roll", prepare)
    if paths is not None:
        summary.demo_root, summary.roll_dir = paths.root, paths.roll_dir
        summary.roll_photos = len(paths.photos())

    # 2. the retrieval model and the demo world's index ------------------------------------
    def index(rep: StepReport) -> Any:
        nonlocal model
        if index_dir is not None:
            folder = Path(index_dir)
            if not folder.is_dir():
                raise FileNotFoundError(f"index folder {folder} does not exist")
            rep.status, rep.detail = CACHED, f"given index {folder}"
            if model is None or isinstance(model, str):
                model = _load_model(model)
            return folder
        ensure_demo_index = _import("astroapp.index.demo", "ensure_demo_index")
        demo_index_dir = _import("astroapp.index.demo", "demo_index_dir")
        manifest_name = _import("astroapp.index.manifest", "MANIFEST_NAME")
        if model is None or isinstance(model, str):
            model = _load_model(model)
        existed = (demo_index_dir(model) / manifest_name).is_file()

        def on_build(event: Progress) -> None:
            steps.report("index", event.done, event.total or 0,
                         f"embedding the demo world: {event.done}/{event.total} tiles")

        folder = ensure_demo_index(model, progress=on_build, cancel=cancel)
        rep.status = CACHED if existed else DONE
        rep.detail = f"{getattr(model, 'name', 'model')} index in {folder}"
        return folder

    index_folder = steps.run("index", index)

    from astroapp.catalog import Catalog

    try:
        catalog = Catalog(cat_path)
    except Exception as exc:  # noqa: BLE001 - an unusable catalogue ends the demo, reported
        for name in ("import", "localize", "exports"):
            summary.steps.append(StepReport(name, FAILED, 0.0,
                                            f"cannot open catalogue {cat_path}: {_first_line(exc)}"))
        summary.seconds = time.perf_counter() - t_start
        return summary
    with catalog:
        summary.catalog_path = Path(catalog.path)
        truth_by_file: dict[str, dict] = {}
        file_of: dict[int, str] = {}

        # 3. import the roll ------------------------------------------------------------
        def do_import(rep: StepReport) -> None:
            if paths is None:
                raise _NotAvailable("no demo roll")
            iter_import = _import("astroapp.catalog.importer", "iter_import")
            files = paths.photos()
            truth_by_file.update({p["file"]: p for p in paths.truth().get("photos", [])})
            holder: list[Any] = []
            ids: list[int] = []
            for event in iter_import(catalog, files, cancel=cancel, report=holder):
                res = event.result
                if res.photo_id is not None and res.photo_id not in file_of:
                    ids.append(res.photo_id)
                    file_of[res.photo_id] = Path(res.path).name
                steps.report("import", res.done, res.total,
                             f"{Path(res.path).name}: {res.outcome}")
            report = holder[0] if holder else None
            summary.photo_ids = ids
            if report is None:
                return
            summary.added_this_run = report.added
            rep.status = CACHED if report.added == 0 and report.failed == 0 else DONE
            parts = [f"{report.added} added", f"{report.already} already catalogued"]
            if report.duplicates:
                parts.append(f"{report.duplicates} duplicates")
            if report.failed:
                parts.append(f"{report.failed} failed")
            if report.cancelled:
                rep.detail = ", ".join(parts)
                raise DemoCancelled()
            # NASA's metadata of the roll (nadir point, altitude, lens): the retrieval prior
            # real photos have; keyed by photo id, so re-importing it adds nothing
            nasa_csv = getattr(paths, "nasa_csv", None)
            if nasa_csv is not None and Path(nasa_csv).is_file():
                import_nasa_csv = _import("astroapp.catalog.nasa_csv", "import_nasa_csv")
                meta = import_nasa_csv(catalog, nasa_csv)
                parts.append(f"NASA metadata for {meta.attached} photos")
                if meta.errors:
                    parts.append(f"{len(meta.errors)} bad metadata rows")
            rep.detail = ", ".join(parts)

        steps.run("import", do_import)

        # 4. localize the roll's new photos ---------------------------------------------------
        def localize(rep: StepReport) -> None:
            localize_photos = _import("astroapp.pipeline.localize", "localize_photos")
            if index_folder is None:
                raise _NotAvailable("needs the index (see the index step)")
            todo = [pid for pid in summary.photo_ids
                    if (p := catalog.get_photo(pid)) is not None and p.status == "new"]
            if not todo:
                rep.status, rep.detail = CACHED, "no new photo (all localized before)"
                return

            def on_photo(event: Progress) -> None:
                steps.report("localize", event.done, event.total or 0, event.message, event.item)

            kwargs: dict[str, Any] = {}
            if k is not None:
                kwargs["k"] = k
            if max_candidates is not None:
                kwargs["max_candidates"] = max_candidates
            try:
                result = localize_photos(catalog, todo, index_dir=index_folder, model=model,
                                         matcher=matcher, progress=on_photo, cancel=cancel,
                                         **kwargs)
            except BaseException:
                # interrupted mid-photo (Ctrl-C): nothing of the roll may stay `localizing`
                for pid in todo:
                    p = catalog.get_photo(pid)
                    if p is not None and p.status == "localizing":
                        catalog.set_status(pid, "new", None)
                raise
            summary.localized_this_run = result.count("localized") + result.count("review")
            rep.detail = (f"{len(todo)} new: {result.count('localized')} confident, "
                          f"{result.count('review')} for review, {result.count('failed')} failed")
            if result.cancelled:
                raise DemoCancelled()

        steps.run("localize", localize)

        # 5. exports ---------------------------------------------------------------------
        def export(rep: StepReport) -> None:
            export_catalog = _import("astroapp.export", "export_catalog")
            if not summary.photo_ids:
                raise _NotAvailable("no demo photo in the catalogue")
            out_dir = demo_exports_dir(summary.demo_root)
            out_dir.mkdir(parents=True, exist_ok=True)
            summary.exports_dir = out_dir
            stamp_path = out_dir / EXPORT_STAMP
            stamp = _exports_stamp(catalog, summary.catalog_path, summary.photo_ids)
            try:
                previous = json.loads(stamp_path.read_text())
            except (OSError, ValueError):
                previous = None
            files = [out_dir / name for _, name in EXPORT_FILES]
            if (isinstance(previous, dict) and previous.get("stamp") == stamp
                    and all(f.is_file() for f in files)):
                summary.files.extend(files)
                rep.status = CACHED
                rep.detail = f"{previous.get('detail', '')} (unchanged since the last run)"
                return
            stamp_path.unlink(missing_ok=True)  # a half-finished export is never "cached"
            exported = 0
            skipped: list[str] = []
            for i, (fmt, name) in enumerate(EXPORT_FILES):
                steps.check_cancel()
                steps.report("exports", i, len(EXPORT_FILES), f"writing {name}")
                res = export_catalog(catalog, fmt, out_dir / name, ids=summary.photo_ids,
                                     cancel=cancel)
                summary.files.extend(res.written)
                exported, skipped = res.exported, res.skipped
            rep.detail = (f"{exported} footprints, {len(summary.files)} files in {out_dir}"
                          + (f" ({len(skipped)} photos without a footprint)" if skipped else ""))
            atomic_text = _import("astroapp.export", "atomic_text")
            with atomic_text(stamp_path) as fh:
                json.dump({"stamp": stamp, "detail": rep.detail}, fh)

        if exports or summary.cancelled:
            steps.run("exports", export)  # skipped as "cancelled" after a cancel
        else:
            steps.skip("exports", "not asked for")

        # counts and score: the catalogue's state of the demo roll ---------------------------
        _count(catalog, summary)
        try:
            summary.truth = _score(catalog, summary.photo_ids, file_of, truth_by_file)
        except Exception as exc:  # noqa: BLE001 - scoring is a report, never a crash
            log.warning("scoring against truth.json failed: %s", exc)
    summary.seconds = time.perf_counter() - t_start
    return summary


def _exports_stamp(catalog: Any, catalog_path: Path, photo_ids: list[int]) -> str:
    """What the exports depend on: the catalogue, and each demo photo's status, last change
    and current localization (a review or a new localization changes it), the app version."""
    from astroapp import __version__

    rows = []
    for pid in photo_ids:
        p = catalog.get_photo(pid)
        if p is not None:
            rows.append([p.id, p.status, p.updated_at, p.localization_id, p.path])
    text = json.dumps([str(Path(catalog_path).resolve()), __version__, EXPORT_FILES, rows])
    return hashlib.sha256(text.encode()).hexdigest()


def _load_model(name: str | None) -> Any:
    load_model = _import("astroapp.retrieval", "load_model")
    weights_error = _import("astroapp.retrieval", "WeightsError")
    try:
        return load_model(name) if name else load_model()
    except weights_error as exc:
        raise _NotAvailable(f"no retrieval model weights: {_first_line(exc)}") from exc


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


def _score(catalog: Any, photo_ids: list[int], file_of: dict[int, str],
           truth_by_file: dict[str, dict]) -> TruthScore:
    from astroapp.geo.footprint import Footprint
    from astroapp.matching.render_pairs import corner_errors_km, is_correct_localization

    score = TruthScore()
    for pid in photo_ids:
        rec = truth_by_file.get(file_of.get(pid, ""))
        if rec is None:
            continue
        score.photos += 1
        truth = Footprint.from_list(rec["footprint"])
        loc = catalog.latest_localization(pid)
        if loc is None:
            continue
        cands = catalog.candidates(loc.id)
        if cands and cands[0].footprint:
            score.retrieval_scored += 1
            hits = [c.footprint is not None and Footprint.from_list(c.footprint).intersects(truth)
                    for c in cands]
            score.candidates_k = max(score.candidates_k, len(cands))
            score.retrieval_correct += hits[0]
            score.retrieval_correct_k += any(hits)
        if loc.accepted_auto and loc.footprint:
            fp = Footprint.from_list(loc.footprint)
            score.confident += 1
            score.corner_errors_km.extend(float(e) for e in corner_errors_km(fp, truth))
            if is_correct_localization(fp, truth):
                score.confident_correct += 1
            else:
                score.false_accepts += 1
    return score
