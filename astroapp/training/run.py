"""One call for the CLI and the GUI: catalogue + tile source -> pairs -> training -> card.

`train_from_catalog` opens the catalogue and the tile source (a source spec, or the sources an
index was built from), builds the pairs, trains (or resumes), writes the model card and
installs the model as its architecture's default when it beats the current default on the
same validation split.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from astroapp import config
from astroapp.catalog.db import Catalog, CatalogError
from astroapp.geo.sources.base import SourceError, TileSource
from astroapp.progress import ProgressFn, ignore

from .astroloc import (
    ImageStore,
    TrainingError,
    TrainResult,
    TrainSettings,
    train_astroloc,
    validation_set,
)
from .card import Comparison, compare_with_default, promote, trained_dir, write_card
from .pairs import PairError, PairSet, build_pairs

COMPARE_SIZE = 224  # side of the validation images both models see when they are compared


@dataclass
class PairOptions:
    min_iou: float = 0.1
    zooms: list[int] | None = None
    include_auto: bool = False
    min_confidence: float = 0.9
    cell_deg: float = 10.0
    val_fraction: float = 0.2
    negatives: int = 8


@dataclass
class CatalogRun:
    pairs: PairSet
    result: TrainResult | None = None  # None for a dry run
    comparison: Comparison | None = None
    promoted: Path | None = None
    card: Path | None = None
    lines: list[str] = field(default_factory=list)  # what to tell the user

    def describe(self) -> str:
        """One line for the app's status bar and log."""
        if self.result is None:
            return "; ".join(self.lines[1:3])
        if self.result.cancelled:
            return f"cancelled at step {self.result.step}: run it again to resume"
        rec = " ".join(f"{k} {v:.2f}" for k, v in self.result.val_recalls.items()) or "no validation photos"
        base = " ".join(f"{k} {v:.2f}" for k, v in (self.comparison.baseline_recalls if self.comparison else {}).items())
        verdict = (f"installed as the default {self.result.report['architecture']}" if self.promoted
                   else "not better than the current default: kept apart")
        return f"validation {rec} (current default {base or '-'}); {verdict}; card {self.card}"


def open_training_source(source: str | None, index: str | Path | None) -> TileSource:
    """The tile source given by spec, or the (first) source an index was built from."""
    from astroapp.geo.sources.opener import open_source

    if source is None and index is None:
        raise TrainingError("name the satellite tiles to pair photos with: --source SPEC (a folder of "
                            "EarthLoc tiles, a GeoTIFF, 'bluemarble') or --index DIR (the sources it was built from)")
    if source is None:
        from astroapp.index.errors import TileIndexError
        from astroapp.index.store import TileStore

        try:
            store = TileStore(Path(index), readonly=True)
            try:
                specs = [spec for _sid, spec, _n, _err in store.sources() if spec]
            finally:
                store.close()
        except (TileIndexError, OSError) as exc:
            raise TrainingError(f"cannot read the index {index}: {exc}") from exc
        if not specs:
            raise TrainingError(f"the index {index} does not record where its tiles came from: pass --source")
        source = specs[0]
    try:
        return open_source(source)
    except (SourceError, OSError, ValueError) as exc:
        raise TrainingError(str(exc)) from exc


def default_out_dir(variant: str) -> Path:
    return trained_dir() / variant


def train_from_catalog(
    catalog_path: str | Path | None,
    source: str | None = None,
    index: str | Path | None = None,
    settings: TrainSettings | None = None,
    pair_options: PairOptions | None = None,
    init_weights: str | Path | None = None,
    out_dir: str | Path | None = None,
    dry_run: bool = False,
    promote_if_better: bool = True,
    device: str | None = None,
    progress: ProgressFn = ignore,
    cancel: threading.Event | None = None,
) -> CatalogRun:
    """Build the pairs and (unless `dry_run`) train, compare, write the card, maybe promote.

    Raises TrainingError / PairError (both ValueError) with a message for the user.
    """
    settings = settings or TrainSettings()
    opts = pair_options or PairOptions()
    if init_weights is not None and not Path(init_weights).expanduser().is_file():
        from .astroloc import DINOV2_HOW

        raise TrainingError(f"weights file not found: {init_weights}\n  how to obtain: {DINOV2_HOW}")
    tiles = open_training_source(source, index)
    catalog_path = Path(catalog_path or config.default_catalog_path()).expanduser()
    if not catalog_path.is_file():
        raise TrainingError(f"no catalogue at {catalog_path}: import and review photos first (or pass --catalog)")
    try:
        catalog = Catalog(catalog_path)
    except (CatalogError, OSError) as exc:
        raise TrainingError(f"cannot open the catalogue {catalog_path}: {exc}") from exc
    try:
        pairs = build_pairs(catalog, tiles, min_iou=opts.min_iou, zooms=opts.zooms, include_auto=opts.include_auto,
                            min_confidence=opts.min_confidence, cell_deg=opts.cell_deg,
                            val_fraction=opts.val_fraction, negatives=opts.negatives, seed=settings.seed,
                            progress=progress, cancel=cancel)
    finally:
        catalog.close()
    run = CatalogRun(pairs, lines=pairs.report_lines())
    if dry_run:
        return run
    out = Path(out_dir) if out_dir else default_out_dir(settings.variant)
    result = train_astroloc(pairs, tiles, out, settings, init_weights, device, progress, cancel)
    run.result = result
    if result.cancelled:
        run.lines.append(f"cancelled at step {result.step} of {settings.steps}: run the same command to resume "
                         f"(checkpoint in {out})")
        return run
    val = validation_set(pairs, ImageStore(pairs, tiles, COMPARE_SIZE))
    run.comparison = compare_with_default(result, val, device)
    if run.comparison.better and promote_if_better:
        run.promoted = promote(result)
    run.card = write_card(result, run.comparison)
    if run.promoted:  # the installed copy carries the final card
        promote(result)
    c = run.comparison
    run.lines.append(f"trained {settings.variant}: {result.step} steps, validation "
                     + (" ".join(f"{k} {v:.3f}" for k, v in result.val_recalls.items()) or "none (no validation photos)"))
    run.lines.append(f"current default {c.baseline}: " + (" ".join(f"{k} {v:.3f}" for k, v in c.baseline_recalls.items()) or "-")
                     + (f" ({c.note})" if c.note else ""))
    run.lines.append(f"weights {result.weights}; model card {run.card}")
    if run.promoted:
        run.lines.append(f"better than the current default: installed as {run.promoted} (`--model {settings.variant}` now uses it)")
    else:
        run.lines.append(f"not made the default; use it with --model {settings.variant} --weights {result.weights}")
    run.lines.append(f"re-embed an index with it: astroapp index build SOURCE --model {settings.variant} "
                     f"--weights {run.promoted or result.weights} --out INDEX_DIR")
    return run


__all__ = ["CatalogRun", "PairError", "PairOptions", "TrainingError", "default_out_dir", "train_from_catalog"]
