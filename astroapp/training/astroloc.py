"""Train AstroLoc (DINOv2 ViT + SALAD) on the catalogue's photo/satellite pairs.

Each step takes `batch_size` training photos, for each a positive block (drawn by IoU, turned
by the multiple of 90 degrees closest to the photo's orientation, the same crop/rotation/flip
on both) and a hard negative from its search circle; the pairwise loss contrasts every photo
with every block of the batch. It also draws `clusters` places of satellite imagery, each
with probability proportional to the number of training photos that fall on it (AstroLoc's
relevance weighting), two views per place (two blocks alike by IoU, or one block twice), for
the multi-similarity loss. Validation recall (EarthLoc's protocol: database blocks at four
rotations, a block is correct when it touches the photo) is measured on photos of places the
model never trains on.

Weights start from a DINOv2 backbone file (`--init-weights`), an AstroLoc checkpoint, or
random init. Mixed precision on CUDA. Checkpoints (`astroapp.training.checkpoint`) every
`checkpoint_every` steps and on cancel; a run in the same folder resumes at the last one.
"""

from __future__ import annotations

import json
import logging
import math
import platform
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from astroapp import config
from astroapp.checkpoints import (
    WeightsError,
    load_strict,
    read_state_dict,
    save_safetensors,
    strip_prefixes,
)
from astroapp.geo.sources.base import TileSource
from astroapp.progress import Progress, ProgressFn, ignore
from astroapp.retrieval.base import RetrievalModel, resize_rgb
from astroapp.retrieval.dataset import aligning_angle
from astroapp.retrieval.recall import evaluate_embedder, model_embedder, rotations
from astroapp.retrieval.registry import build_model, get_spec, load_model
from astroapp.retrieval.train import _augment_pair, _jitter, _to_tensor

from .checkpoint import load_checkpoint, read_pointer, save_checkpoint
from .losses import multi_similarity_loss, pairwise_loss
from .pairs import VAL, PairSet, block_neighbours

log = logging.getLogger(__name__)

VARIANTS = {"tiny": "astroloc-tiny", "base": "astroloc"}
DINOV2_HOW = ("DINOv2's published backbone (Apache-2.0): `astroapp model fetch dinov2-vits14` (ViT-S/14, for "
              "astroloc-tiny) or `dinov2-vitb14` (ViT-B/14, for astroloc) with the --sha256 you verified, or "
              "download dinov2_vits14_pretrain.pth / dinov2_vitb14_pretrain.pth from the DINOv2 GitHub "
              "README and pass it with --init-weights")


class TrainingError(ValueError):
    """Training cannot start (bad weights file, another run's folder, no data)."""


@dataclass
class TrainSettings:
    variant: str = "astroloc-tiny"
    steps: int = 1000
    batch_size: int = 16  # photos per step (each with a positive and a hard negative block)
    clusters: int = 8  # satellite places per step for the multi-similarity loss (two views each)
    lr: float = 1e-4
    backbone_lr_scale: float | None = None  # None: 0.1 from pretrained weights, 1 from random init
    weight_decay: float = 0.05
    warmup: int | None = None  # None: a tenth of the steps, at most 50
    margin: float = 0.5
    cluster_weight: float = 1.0
    seed: int = 0
    eval_every: int = 200
    checkpoint_every: int = 100
    model_config: dict = field(default_factory=dict)  # AstroLoc(...) overrides: input_size, depth, clusters...
    threads: int | None = None
    eval_size: int = 0  # side of the cached validation images (0: the model's input side)

    def __post_init__(self) -> None:
        self.variant = VARIANTS.get(self.variant, self.variant)
        if self.variant not in VARIANTS.values():
            raise TrainingError(f"unknown AstroLoc variant {self.variant!r}: tiny (ViT-S/14) or base (ViT-B/14)")
        for name in ("steps", "batch_size", "eval_every", "checkpoint_every"):
            if int(getattr(self, name)) < 1:
                raise TrainingError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.clusters < 0:
            raise TrainingError(f"clusters must be >= 0, got {self.clusters}")


@dataclass
class TrainResult:
    out_dir: Path
    weights: Path | None  # the trained model (None when cancelled before the end)
    step: int
    cancelled: bool
    history: list[dict]
    val_recalls: dict[str, float]
    report: dict[str, Any]


class ImageStore:
    """Photos and blocks at the model's input side, read once and kept (uint8)."""

    def __init__(self, pairs: PairSet, source: TileSource, size: int):
        from astroapp.matching.imageio import read_rgb

        self._read_rgb = read_rgb
        self.pairs, self.source, self.size = pairs, source, size
        self._photos: dict[int, np.ndarray] = {}
        self._blocks: dict[int, np.ndarray] = {}

    def photo(self, i: int) -> np.ndarray:
        if i not in self._photos:
            p = self.pairs.photos[i]
            img = self._read_rgb(p.path, target=2 * self.size)
            self._photos[i] = resize_rgb(img, (self.size, self.size))  # squashed square, as EarthLoc's queries
        return self._photos[i]

    def block(self, j: int) -> np.ndarray:
        if j not in self._blocks:
            img = self.source.load(self.pairs.blocks[j], self.size)
            self._blocks[j] = resize_rgb(np.ascontiguousarray(img[:, :, :3]), (self.size, self.size))
        return self._blocks[j]


def _lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def build_start_model(variant: str, model_config: dict, init_weights: str | Path | None) -> tuple[RetrievalModel, dict, str]:
    """The model to train, its config and where its weights came from (random, DINOv2, AstroLoc)."""
    spec = get_spec(variant)
    if init_weights is not None:
        path = Path(init_weights).expanduser()
        try:
            state, meta = read_state_dict(path, "a DINOv2 backbone or an AstroLoc checkpoint", DINOV2_HOW)
        except WeightsError as exc:
            raise TrainingError(str(exc)) from exc
        state = strip_prefixes(state)
        if any(k.startswith(("aggregator.", "model.aggregator.")) for k in state):
            try:
                model = load_model(spec.name, weights=path, device="cpu").float()
            except (WeightsError, ValueError) as exc:
                raise TrainingError(str(exc)) from exc
            cfg = json.loads(meta.get("config", "{}")) or dict(model_config)
            return model.train(), cfg, f"AstroLoc weights {path}"
        model = build_model(spec.name, model_config or None)
        backbone = {k[len("backbone."):] if k.startswith("backbone.") else k: v for k, v in state.items()}
        try:
            load_strict(model.backbone, backbone, path, f"DINOv2 {'ViT-S/14' if variant == 'astroloc-tiny' else 'ViT-B/14'}"
                        f" for {spec.name}" + (f" with {model_config}" if model_config else ""), DINOV2_HOW)
        except WeightsError as exc:
            raise TrainingError(str(exc)) from exc
        return model.train(), dict(model_config), f"DINOv2 backbone {path}"
    return build_model(spec.name, model_config or None).train(), dict(model_config), "random init"


def validation_set(pairs: PairSet, store: ImageStore) -> tuple[np.ndarray, list, np.ndarray, list, list[set[int]]] | None:
    """Validation photos and their database: every block that touches or surrounds them."""
    val = [i for i, p in enumerate(pairs.photos) if p.split == VAL]
    if not val:
        return None
    db = sorted(set(pairs.val_database) | {b for i in val for b in pairs.photos[i].intersecting | set(pairs.photos[i].negatives)})
    where = {b: n for n, b in enumerate(db)}
    queries = np.stack([store.photo(i) for i in val])
    blocks = np.stack([store.block(b) for b in db])
    positives = [{where[b] for b in pairs.photos[i].intersecting} for i in val]
    return queries, [pairs.photos[i].footprint for i in val], blocks, [pairs.blocks[b].footprint for b in db], positives


def validation_recall(model: RetrievalModel, val: tuple | None) -> dict[str, float]:
    """R@1/R@10 on the validation split (empty when there is none)."""
    if val is None:
        return {}
    queries, qfps, blocks, bfps, positives = val
    was_training = model.training
    model.eval()
    try:
        return evaluate_embedder(model.name, model_embedder(model, 32), blocks, bfps, queries, qfps,
                                 ks=(1, 10), positives=positives).recalls
    finally:
        model.train(was_training)


def train_astroloc(
    pairs: PairSet,
    source: TileSource,
    out_dir: str | Path,
    settings: TrainSettings | None = None,
    init_weights: str | Path | None = None,
    device: str | None = None,
    progress: ProgressFn = ignore,
    cancel: threading.Event | None = None,
) -> TrainResult:
    """Train (or resume training in `out_dir`) and write `<variant>.safetensors` + card there."""
    s = settings or TrainSettings()
    out_dir = Path(out_dir)
    train_idx = [i for i, p in enumerate(pairs.photos) if p.split != VAL]
    if not train_idx:
        raise TrainingError("no training photos: every accepted photo fell in validation places or was left out "
                            "(see the dry run); accept photos in more places, or use larger --cell-deg")
    if s.threads:
        torch.set_num_threads(s.threads)
    dev = torch.device(config.pick_device(device))
    torch.manual_seed(s.seed)
    model, model_cfg, start_from = build_start_model(s.variant, s.model_config, init_weights)
    model = model.to(dev)
    fingerprint = pairs.fingerprint()
    run_key = {"data": fingerprint, "settings": asdict(s), "init": start_from}
    pointer = read_pointer(out_dir)
    if pointer is not None:
        sidecar = json.loads((out_dir / pointer["state"]).read_text())
        if sidecar.get("run_key") != run_key:
            raise TrainingError(f"{out_dir} holds a training run with other data or settings "
                                f"({sidecar.get('run_key', {}).get('settings', {}).get('variant')}, step {pointer['step']}): "
                                "pass another --out folder, or delete that one to start over")
    head = [p for n, p in model.named_parameters() if not n.startswith("backbone.")]
    backbone = [p for n, p in model.named_parameters() if n.startswith("backbone.")]
    scale = s.backbone_lr_scale if s.backbone_lr_scale is not None else (1.0 if start_from == "random init" else 0.1)
    opt = torch.optim.AdamW([{"params": backbone, "lr": s.lr * scale, "base_lr": s.lr * scale},
                             {"params": head, "lr": s.lr, "base_lr": s.lr}], weight_decay=s.weight_decay)
    rng = np.random.default_rng(s.seed)
    gen = torch.Generator().manual_seed(s.seed)
    history: list[dict] = []
    step = 0
    seconds_before = 0.0
    if pointer is not None:
        sidecar = load_checkpoint(out_dir, model, opt, rng, {"jitter": gen})
        step, history = int(sidecar["step"]), list(sidecar.get("history", []))
        seconds_before = float(sidecar.get("seconds", 0.0))
        log.info("resuming %s at step %d of %d", out_dir, step, s.steps)
        progress(Progress("train", step, s.steps, item=s.variant, message=f"resumed at step {step}"))

    size = int(model.input_size[0])
    store = ImageStore(pairs, source, size)
    val = validation_set(pairs, ImageStore(pairs, source, max(size, s.eval_size or size)))
    alike, touching = block_neighbours(pairs.blocks)
    train_blocks = sorted({b for i in train_idx for b, _ in pairs.photos[i].positives}
                          | {b for i in train_idx for b in pairs.photos[i].negatives})
    photo_count = np.array([sum(1 for i in train_idx if b in pairs.photos[i].intersecting) for b in train_blocks], float)
    cluster_p = (photo_count + 0.1) / (photo_count + 0.1).sum()  # relevance: photos falling on the place
    positive_sets = {i: {b for b, _ in pairs.photos[i].positives} for i in train_idx}
    use_amp = dev.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    def tensor(images: list[np.ndarray], amount: float) -> torch.Tensor:
        return _jitter(_to_tensor(np.stack(images), model.mean, model.std, dev), gen, amount)

    t_start = time.time()
    cancelled = False
    if step == 0:  # the starting model's recall: what training is measured against
        history.append({"step": 0, **validation_recall(model, val)})
    while step < s.steps:
        if cancel is not None and cancel.is_set():
            cancelled = True
            break
        t0 = time.perf_counter()
        batch = rng.choice(train_idx, size=min(s.batch_size, len(train_idx)), replace=False)
        photos, blocks, block_ids = [], [], []
        for i in batch:
            p = pairs.photos[i]
            ious = np.array([v for _, v in p.positives])
            j = p.positives[int(rng.choice(len(ious), p=ious / ious.sum()))][0]
            q, b = _augment_pair(store.photo(i), rotations(store.block(j)[None], aligning_angle(p.footprint))[0], rng)
            photos.append(q)
            blocks.append(b)
            block_ids.append(j)
        for i in batch:
            negs = pairs.photos[i].negatives
            j = int(rng.choice(negs)) if negs else int(rng.choice(train_blocks))
            blocks.append(rotations(store.block(j)[None], 90 * int(rng.integers(4)))[0])
            block_ids.append(j)
        views, view_ids = [], []
        if s.clusters:
            for c in rng.choice(len(train_blocks), size=min(s.clusters, len(train_blocks)), replace=False, p=cluster_p):
                centre = train_blocks[int(c)]
                members = sorted(alike[centre] & set(train_blocks)) or [centre]
                k = int(rng.integers(4))
                for j in rng.choice(members, size=2, replace=True):
                    views.append(rotations(store.block(int(j))[None], 90 * k)[0])
                    view_ids.append(int(j))
        nq, nb = len(photos), len(blocks)
        pos = torch.tensor([[b in positive_sets[i] for b in block_ids] for i in batch], device=dev)
        neg = torch.tensor([[b not in pairs.photos[i].intersecting for b in block_ids] for i in batch], device=dev)
        pos[:, :nq] |= torch.eye(nq, dtype=torch.bool, device=dev)  # each photo's own drawn pair
        neg &= ~pos
        x = torch.cat([tensor(photos, 0.15), tensor(blocks + views, 0.1)])
        with torch.autocast(dev.type, dtype=amp_dtype, enabled=use_amp):
            desc = model(x)
        desc = desc.float()
        loss_pair = pairwise_loss(desc[:nq], desc[nq : nq + nb], pos, neg, s.margin)
        loss = loss_pair
        loss_ms = torch.zeros((), device=dev)
        if view_ids:
            same = torch.tensor([[b in alike[a] for b in view_ids] for a in view_ids], device=dev)
            apart = torch.tensor([[b not in touching[a] for b in view_ids] for a in view_ids], device=dev)
            loss_ms = multi_similarity_loss(desc[nq + nb :], same, apart)
            loss = loss + s.cluster_weight * loss_ms
        factor = _lr_factor(step, s.steps, s.warmup if s.warmup is not None else min(50, max(1, s.steps // 10)))
        for group in opt.param_groups:
            group["lr"] = group["base_lr"] * factor
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        step += 1
        row = {"step": step, "loss": round(loss.item(), 4), "pair_loss": round(loss_pair.item(), 4),
               "cluster_loss": round(loss_ms.item(), 4), "seconds": round(time.perf_counter() - t0, 3),
               "pairs": nq}
        message = f"loss {row['loss']:.3f}"
        if step % s.eval_every == 0 or step == s.steps:
            row.update(validation_recall(model, val))
            if "R@1" in row:
                message += f", validation R@1 {row['R@1']:.2f} R@10 {row.get('R@10', 0.0):.2f}"
        history.append(row)
        progress(Progress("train", step, s.steps, item=s.variant, message=message))
        if step % s.checkpoint_every == 0 or step == s.steps:
            _checkpoint(out_dir, step, model, opt, rng, gen, history, run_key, seconds_before + time.time() - t_start)
    if cancelled:
        if step and (not history or step % s.checkpoint_every):
            _checkpoint(out_dir, step, model, opt, rng, gen, history, run_key, seconds_before + time.time() - t_start)
        progress(Progress("train", step, s.steps, item=s.variant, message=f"cancelled at step {step} (resumable)"))
        return TrainResult(out_dir, None, step, True, history, {}, {})

    model.eval()
    final = validation_recall(model, val)
    seconds = seconds_before + time.time() - t_start
    report = {
        "architecture": s.variant,
        "config": model_cfg,
        "start": start_from,
        "settings": asdict(s),
        "data": {"source": pairs.source_id, **pairs.summary(), "pair_settings": pairs.settings,
                 "fingerprint": fingerprint, "left_out": len(pairs.skipped)},
        "steps": step,
        "val_recalls": final,
        "start_recalls": {k: v for k, v in history[0].items() if k.startswith("R@")} if history and history[0]["step"] == 0 else {},
        "history": [h for h in history[:-50] if "R@1" in h] + history[-50:],  # every validation, the last steps
        "seconds": round(seconds, 1),
        "pairs_per_second": round(sum(h.get("pairs", 0) for h in history) / max(1e-9, sum(h.get("seconds", 0.0) for h in history)), 2),
        "device": str(dev),
        "amp": str(amp_dtype).replace("torch.", "") if use_amp else None,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
    }
    weights = out_dir / f"{s.variant}.safetensors"
    save_safetensors(model.cpu(), weights, {"architecture": s.variant, "config": model_cfg, "training": report})
    return TrainResult(out_dir, weights, step, False, history, final, report)


def _checkpoint(out_dir: Path, step: int, model: torch.nn.Module, opt: torch.optim.Optimizer,
                rng: np.random.Generator, gen: torch.Generator, history: list[dict], run_key: dict,
                seconds: float) -> None:
    save_checkpoint(out_dir, step, model, opt, rng, {"jitter": gen},
                    {"history": history, "run_key": run_key, "seconds": round(seconds, 2)})
