"""A trained model's card, the comparison with the current default, and its promotion.

A model trained from the catalogue becomes the default weights of its architecture
(`<data dir>/models/<variant>.safetensors`, what `--model astroloc-tiny` loads when no
--weights is given) only when its validation recall beats the current default's on the same
validation photos and database: the current default of that architecture when there is one,
otherwise the app's default retrieval model.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from astroapp import config
from astroapp.atomic import atomic_path, atomic_text
from astroapp.checkpoints import WeightsError
from astroapp.retrieval.registry import DEFAULT_MODEL, default_weights, load_model

from .astroloc import TrainResult, validation_recall

log = logging.getLogger(__name__)


def trained_dir() -> Path:
    """Where `model train astroloc` puts its runs by default: <data dir>/models/trained."""
    return config.data_dir() / "models" / "trained"


def trained_models() -> list[tuple[Path, dict]]:
    """Every trained model under trained_dir() with its report (newest first)."""
    out = []
    for path in sorted(trained_dir().glob("*/*.safetensors"), key=lambda p: p.stat().st_mtime, reverse=True):
        if path.name.startswith("ckpt-"):
            continue
        report_path = path.with_suffix(".json")
        try:
            report = json.loads(report_path.read_text()) if report_path.is_file() else {}
        except (OSError, ValueError):
            report = {}
        out.append((path, report))
    return out


@dataclass
class Comparison:
    baseline: str  # what was compared against
    baseline_recalls: dict[str, float]
    trained_recalls: dict[str, float]
    better: bool
    note: str = ""


def _key(recalls: dict[str, float]) -> tuple[float, float]:
    return (recalls.get("R@1", 0.0), recalls.get("R@10", 0.0))


def compare_with_default(result: TrainResult, val: tuple | None, device: str | None = None) -> Comparison:
    """The trained model's validation recall against the current default's: the same
    validation photos and database, at the same image size, each model resizing them to its
    own input."""
    variant = result.report["architecture"]
    if val is not None and result.weights is not None:
        trained = load_model(variant, weights=result.weights, device=device)
        result.val_recalls = validation_recall(trained, val)
        result.report["val_recalls"] = result.val_recalls
    if val is None:
        return Comparison("-", {}, {}, False, "no validation photos: the model cannot be compared, so it is not "
                                              "made the default")
    current = default_weights(variant)
    name, weights, label = (variant, current, f"{variant} ({current})") if current else (DEFAULT_MODEL, None, DEFAULT_MODEL)
    try:
        baseline = load_model(name, weights=weights, device=device)
    except (WeightsError, ValueError) as exc:
        return Comparison(label, {}, result.val_recalls, bool(result.val_recalls), f"the current default cannot be "
                          f"loaded ({str(exc).splitlines()[0]}): the trained model replaces nothing that works")
    recalls = validation_recall(baseline, val)
    return Comparison(label, recalls, result.val_recalls, _key(result.val_recalls) > _key(recalls))


def promote(result: TrainResult) -> Path:
    """Install the trained weights (+ card) as its architecture's default; returns the path."""
    assert result.weights is not None
    target = config.data_dir() / "models" / result.weights.name
    with atomic_path(target) as tmp:
        shutil.copyfile(result.weights, tmp)
    card = result.weights.with_suffix(".md")
    if card.is_file():
        with atomic_path(target.with_suffix(".md")) as tmp:
            shutil.copyfile(card, tmp)
    return target


def _rec(r: dict[str, float]) -> str:
    return " / ".join(f"{r[k]:.3f}" for k in ("R@1", "R@10") if k in r) or "-"


def write_card(result: TrainResult, comparison: Comparison) -> Path:
    """`<variant>.md` and `<variant>.json` next to the weights: data, steps, validation recall."""
    assert result.weights is not None
    r = result.report
    r["comparison"] = {"baseline": comparison.baseline, "baseline_recalls": comparison.baseline_recalls,
                       "better": comparison.better, "note": comparison.note}
    with atomic_text(result.weights.with_suffix(".json")) as f:
        json.dump(r, f, indent=2)
    data: dict[str, Any] = r["data"]
    st = r["settings"]
    def num(h: dict, key: str) -> str:
        return f"{h[key]:.3f}" if key in h else "-"

    hist = "\n".join(f"| {h['step']} | {num(h, 'loss')} | {num(h, 'pair_loss')} | {num(h, 'cluster_loss')} | {_rec(h)} |"
                     for h in ([] if r["history"] and r["history"][0]["step"] == 0 else [{"step": 0, **r.get("start_recalls", {})}])
                     + r["history"] if "R@1" in h)
    text = f"""# {r['architecture']} trained from the catalogue

File: `{result.weights.name}` (safetensors; config and the training report in its metadata).
Start: {r['start']}. Architecture config: {json.dumps(r['config']) if r['config'] else 'the variant default'}.

## Data
Tile source `{data['source']}`; pairs = accepted photos x blocks overlapping them by IoU >=
{data['pair_settings']['min_iou']}, hard negatives from each photo's search circle, split by
{data['pair_settings']['cell_deg']:g}-degree place cells (no cell in both splits). Data fingerprint {data['fingerprint']}.

| split | photos | pairs | hard negatives | places | blocks |
|---|---|---|---|---|---|
| train | {data['train']['photos']} | {data['train']['pairs']} | {data['train']['negatives']} | {data['train']['places']} | {data['train']['blocks']} |
| validation | {data['val']['photos']} | {data['val']['pairs']} | {data['val']['negatives']} | {data['val']['places']} | {data['val']['blocks']} |

{data['left_out']} photos left out (see `astroapp model train astroloc --from-catalog --dry-run`).

## Training
{r['steps']} steps, {st['batch_size']} photos per step (one positive, one hard negative block each),
{st['clusters']} satellite places per step for the multi-similarity loss; AdamW lr {st['lr']}
(backbone scaled {st['backbone_lr_scale'] if st['backbone_lr_scale'] is not None else 'auto'}), warmup {st['warmup'] if st['warmup'] is not None else 'auto'} steps, cosine decay; seed {st['seed']}.
Device {r['device']}{' (' + r['amp'] + ' autocast)' if r['amp'] else ''}, {r['threads']} threads, torch {r['torch']};
{r['seconds'] / 60:.1f} min, {r['pairs_per_second']} photo pairs/s.

## Validation (held-out places; R@1 / R@10, database blocks at 4 rotations)
| model | R@1 / R@10 |
|---|---|
| this model | {_rec(r['val_recalls'])} |
| the starting model ({r['start']}) | {_rec(r.get('start_recalls', {}))} |
| current default: {comparison.baseline} | {_rec(comparison.baseline_recalls)} |

{'Better than the current default: installed as the default weights of ' + r['architecture'] + '.' if comparison.better else 'Not better than the current default: not made the default (select it with --weights).'}
{comparison.note}

| step | loss | pair loss | cluster loss | R@1 / R@10 |
|---|---|---|---|---|
{hist}

## Use
Re-embed an index with it (resumable like any build):
`astroapp index build SOURCE --model {r['architecture']} --weights {result.weights} --out INDEX_DIR`
"""
    card = result.weights.with_suffix(".md")
    with atomic_text(card) as f:
        f.write(text)
    return card
