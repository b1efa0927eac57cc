"""`astroapp calibrate`: measure inlier counts of correct and wrong pairs, fit the calibration.

Wrong pairs almost never survive the geometric rules (their homographies fold over or blow
up), so the inlier counts of wrong pairs that do pass would be an empty sample and the fit
unidentifiable. A wrong pair therefore contributes the largest inlier count any of its
iterations reached, rejected or not: the number of matches chance alone lines up, a
conservative stand-in for a wrong pair that happens to pass the rules. A correct pair
contributes its final inlier count (0 when rejected) and counts as correct only when the
footprint it produced is right.

The same measurement calibrates either a matcher (its keypoint coregistration, `coregister`)
or the dense stage (`coregister_dense`, calibration `dense-orientation`): a `Stage` says which.

Two sources of labelled pairs:
- renders of a tile source (default the bundled world): each synthetic photo against the
  surroundings of the block containing it (correct when the resulting footprint lands on the
  true one) and against the surroundings of far-away blocks (wrong);
- a user's labelled folder: one sub-folder per pair holding `query.*` and `surroundings.*`,
  labelled by a `labels.csv` at the top (columns `pair,correct[,angle]`, correct = 1/0,
  true/false, yes/no) or by a `label.json` in the pair's folder (`{"correct": true,
  "angle": 90}`).
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from astroapp.atomic import atomic_text
from astroapp.matching.base import Matcher
from astroapp.matching.calibration import (
    Calibration,
    fit_calibration,
    fit_null_tail,
    uncalibrated,
)
from astroapp.matching.coregister import (
    DEFAULT_SIZE,
    DENSE_NAME,
    CoregResult,
    PreparedPhoto,
    coregister,
    coregister_dense,
    dense_settings,
)
from astroapp.matching.imageio import read_rgb
from astroapp.progress import Progress, ProgressFn

if TYPE_CHECKING:
    from astroapp.geo.tiles import MercatorGrid

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")


@dataclass(frozen=True)
class Stage:
    """What is calibrated: a matcher's keypoint coregistration, or the dense stage (which
    prepares the photo with SIFT, as the pipeline does, but counts orientation-patch inliers).
    """

    name: str  # the calibration's name (models/matchers/<name>.json)
    matcher: Matcher  # prepares the photo
    settings: dict[str, Any] = field(default_factory=dict)
    dense: bool = False

    def measure(self, photo: PreparedPhoto, surroundings: np.ndarray,
                grid: MercatorGrid | None = None, angle: int | None = None) -> CoregResult:
        """Coregister with a neutral calibration: raw inlier counts, nothing accepted early
        (the dense stage then refines all its poses). `angle` is ignored by the dense stage,
        which searches every rotation."""
        neutral = uncalibrated(self.name)
        if self.dense:
            return coregister_dense(photo, surroundings, grid=grid, calibration=neutral)
        return coregister(photo, surroundings, grid=grid, angle=angle, calibration=neutral)


def keypoint_stage(matcher: Matcher) -> Stage:
    return Stage(matcher.name, matcher, matcher.settings() if hasattr(matcher, "settings") else {})


def dense_stage() -> Stage:
    from astroapp.matching.registry import get_matcher

    matcher = get_matcher("sift", calibrated=False)
    return Stage(DENSE_NAME, matcher, dense_settings(), dense=True)


def _stage(target: Matcher | Stage) -> Stage:
    return target if isinstance(target, Stage) else keypoint_stage(target)


@dataclass
class Sample:
    inliers: int
    correct: bool
    kind: str  # "render-correct", "render-wrong", "labelled"
    name: str
    error_km: float | None = None
    reason: str | None = None
    geometry_ok: bool = False


def sample_inliers(res, correct: bool) -> int:
    """The inlier count a pair contributes to the fit (see the module doc)."""
    if correct:
        return int(res.inliers) if res.homography is not None else 0
    return int(max(res.iteration_inliers, default=0))


def samples_from_renders(
    target: Matcher | Stage,
    n: int = 150,
    seed: int = 0,
    wrong_per_photo: int = 2,
    source: str = "bluemarble",
    split: str | None = "train",
    size: int = DEFAULT_SIZE,
    progress: ProgressFn | None = None,
) -> list[Sample]:
    from astroapp.geo.sources import open_source
    from astroapp.matching.render_pairs import (
        corner_errors_km,
        is_correct_localization,
        render_pairs,
    )

    stage = _stage(target)
    src = open_source(source)
    out: list[Sample] = []
    for i, pairs in enumerate(render_pairs(src, n, seed=seed, wrong_per_photo=wrong_per_photo,
                                           split=split, side=size)):
        prepared = PreparedPhoto(pairs[0].photo, stage.matcher, size)
        for pair in pairs:
            res = stage.measure(prepared, pair.surroundings, grid=pair.grid)
            fp = res.footprint
            good = pair.correct and is_correct_localization(fp, pair.truth)
            err = float(np.median(corner_errors_km(fp, pair.truth))) if fp is not None else None
            out.append(Sample(
                inliers=sample_inliers(res, good),
                correct=good,
                kind="render-correct" if pair.correct else "render-wrong",
                name=f"render{pair.seed}:{pair.zoom}/{pair.row}/{pair.col}",
                error_km=err,
                reason=res.reason,
                geometry_ok=res.homography is not None,
            ))
        if progress:  # stage "calibrate": renders done of n
            progress(Progress("calibrate", i + 1, n, item=f"render {i + 1}",
                              message=f"{len(pairs)} pairs"))
    return out


def _truthy(text: str) -> bool:
    value = text.strip().lower()
    if value in {"1", "true", "yes", "y", "correct"}:
        return True
    if value in {"0", "false", "no", "n", "wrong"}:
        return False
    raise ValueError(f"label must be 1/0, true/false or yes/no, got {text!r}")


def _find_image(folder: Path, stem: str) -> Path:
    for suffix in IMAGE_SUFFIXES:
        for cand in (folder / f"{stem}{suffix}", folder / f"{stem}{suffix.upper()}"):
            if cand.is_file():
                return cand
    raise FileNotFoundError(f"{folder}: no {stem}.jpg/.png/.tif")


def read_labels(folder: Path) -> list[tuple[Path, bool, int | None]]:
    """(pair folder, correct, angle) for every labelled pair of a user's set."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"labelled set {folder}: no such folder")
    labels: list[tuple[Path, bool, int | None]] = []
    csv_path = folder / "labels.csv"
    if csv_path.is_file():
        with csv_path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not {"pair", "correct"} <= set(reader.fieldnames):
                raise ValueError(f"{csv_path}: needs columns pair,correct[,angle]")
            for line, row in enumerate(reader, start=2):
                try:
                    angle = row.get("angle")
                    labels.append((folder / row["pair"], _truthy(row["correct"]),
                                   int(angle) if angle not in (None, "") else None))
                except ValueError as exc:
                    raise ValueError(f"{csv_path}:{line}: {exc}") from exc
    else:
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            label = sub / "label.json"
            if label.is_file():
                data = json.loads(label.read_text(encoding="utf-8"))
                labels.append((sub, bool(data["correct"]), data.get("angle")))
    if not labels:
        raise ValueError(f"labelled set {folder}: no labels.csv and no */label.json found")
    return labels


def samples_from_folder(
    target: Matcher | Stage, folder: Path, size: int = DEFAULT_SIZE,
    progress: ProgressFn | None = None,
) -> tuple[list[Sample], list[str]]:
    """Samples of a user's labelled set, plus errors (one per unreadable pair, which is skipped)."""
    stage = _stage(target)
    labels = read_labels(folder)
    out: list[Sample] = []
    errors: list[str] = []
    for i, (pair, correct, angle) in enumerate(labels):
        try:
            photo = read_rgb(_find_image(pair, "query"))
            surr = read_rgb(_find_image(pair, "surroundings"))
            res = stage.measure(PreparedPhoto(photo, stage.matcher, size), surr, angle=angle)
        except (OSError, ValueError) as exc:
            errors.append(f"{pair}: {exc}")
            continue
        out.append(Sample(sample_inliers(res, correct), correct, "labelled", str(pair), None,
                          res.reason, res.homography is not None))
        if progress:  # stage "calibrate": labelled pairs done
            progress(Progress("calibrate", i + 1, len(labels), item=Path(str(pair)).name,
                              message=str(folder)))
    return out, errors


def fit_from_samples(target: Matcher | Stage, samples: list[Sample], source: str) -> Calibration:
    stage = _stage(target)
    inl = np.array([s.inliers for s in samples], dtype=np.float64)
    lab = np.array([s.correct for s in samples], dtype=bool)
    # the dense stage: a threshold from the wrong pairs' tail (see fit_null_tail)
    fit = fit_null_tail if stage.dense else fit_calibration
    cal = fit(stage.name, inl, lab, settings=stage.settings, source=source)
    kinds: dict[str, int] = {}
    for s in samples:
        kinds[s.kind] = kinds.get(s.kind, 0) + 1
    cal.samples["kinds"] = kinds
    cal.samples["wrong_passing_rules"] = sum(1 for s in samples if not s.correct and s.geometry_ok)
    cal.samples["size"] = DEFAULT_SIZE
    return cal


def write_samples(path: Path, samples: list[Sample]) -> None:
    """The per-pair samples as JSON (`astroapp calibrate --samples`), to refit from later."""
    with atomic_text(path) as fh:
        fh.write(json.dumps([asdict(s) for s in samples], indent=1) + "\n")


def read_samples(path: Path) -> list[Sample]:
    """Samples written by `write_samples` (`astroapp calibrate --from-samples`): a fit can be
    redone without measuring again (the dense stage's measurement takes about an hour)."""
    try:
        rows = json.loads(Path(path).read_text(encoding="utf-8"))
        known = set(Sample.__dataclass_fields__)
        return [Sample(**{k: v for k, v in row.items() if k in known}) for row in rows]
    except (json.JSONDecodeError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: not a samples file written by `astroapp calibrate "
                         f"--samples` ({exc})") from exc
