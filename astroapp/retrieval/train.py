"""Train the bundled model (astroapp-small) on renders of the bundled Blue Marble world.

Queries are synthetic astronaut photos (the geo renderer); each is paired with the database
block its footprint overlaps most (IoU), turned by the multiple of 90 degrees that best
aligns it with the photo, plus a hard negative block mined from the previous epoch's
descriptors. The loss is InfoNCE over the batch's blocks, with blocks that also intersect
the query masked out of the negatives. Training and validation renders come from disjoint
places. Everything runs on CPU in ~20 min (2 threads); CUDA is used when present.

    python -m astroapp.retrieval.train [--out models/astroapp-small.safetensors] [--epochs 8]
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
import torch.nn.functional as F

from astroapp import config

from .bundled import DEFAULT_CONFIG, NAME, SmallRetrievalNet
from .evaluate import colour_histogram, evaluate_embedder, model_embedder, rotations
from .weights import save_safetensors

log = logging.getLogger(__name__)


def _augment_pair(q: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The same rotation/flip on query and block (keeps them aligned), colour jitter on the query."""
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


def _jitter(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Per-image brightness/contrast/colour gain in normalised space (renders already vary; this adds some)."""
    b = x.shape[0]
    gain = 1 + 0.15 * (torch.rand(b, 3, 1, 1, generator=gen) - 0.5) * 2
    bias = 0.15 * (torch.rand(b, 1, 1, 1, generator=gen) - 0.5) * 2
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
    epochs: int = 8,
    batch_size: int = 48,
    lr: float = 2e-3,
    temperature: float = 0.05,
    seed: int = 0,
    n_train: int | None = None,
    device: str | None = None,
    threads: int | None = 2,
) -> dict:
    from .dataset import load_world_set

    t_start = time.time()
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    dev = torch.device(config.pick_device(device))
    cfg = dict(DEFAULT_CONFIG)
    size = int(cfg["input_size"][0])

    t0 = time.time()
    train_set = load_world_set("train", size=size, n_queries=n_train)
    val_set = load_world_set("test", size=size)
    data_seconds = time.time() - t0
    log.info("data: %d train / %d test renders, %d blocks (%.0fs)", len(train_set.queries),
             len(val_set.queries), len(train_set.blocks), data_seconds)

    model = SmallRetrievalNet(cfg["widths"], cfg["descriptor_dim"], cfg["input_size"]).to(dev)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    nq = len(train_set.queries)
    steps_per_epoch = math.ceil(nq / batch_size)
    total = epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=0.1)
    blocks = train_set.blocks
    history = []
    hard: np.ndarray | None = None  # (Q, H) candidate hard-negative blocks per query
    for epoch in range(epochs):
        te = time.time()
        if epoch > 0:
            # hard negatives: nearest blocks (any rotation) that do not intersect the query
            db = _embed_blocks(model, np.concatenate([rotations(blocks, a) for a in (0, 90, 180, 270)]), dev)
            qd = _embed_blocks(model, train_set.queries, dev)
            sims = (qd @ db.T).view(nq, 4, len(blocks)).amax(dim=1).cpu().numpy()
            for i, pos in enumerate(train_set.positives):
                sims[i, list(pos)] = -np.inf
            hard = np.argsort(-sims, axis=1)[:, :10]
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
            negs, neg_ids = [], []
            for i in idx:
                if hard is not None and rng.random() < 0.8:
                    j = int(hard[i, rng.integers(hard.shape[1])])
                else:
                    j = int(rng.integers(len(blocks)))
                negs.append(rotations(blocks[j : j + 1], 90 * int(rng.integers(4)))[0])
                neg_ids.append(j)
            imgs_q = _jitter(_to_tensor(np.stack(qs), model.mean, model.std, dev), gen)
            imgs_b = _to_tensor(np.stack(bs + negs), model.mean, model.std, dev)
            desc = model(torch.cat([imgs_q, imgs_b]))
            dq, db_ = desc[: len(idx)], desc[len(idx) :]
            logits = dq @ db_.T / temperature
            ids = block_ids + neg_ids
            # other batch blocks that intersect the query are not negatives
            mask = torch.tensor([[(c != r) and (ids[c] in train_set.positives[i]) for c in range(len(ids))]
                                 for r, i in enumerate(idx)], device=dev)
            logits = logits.masked_fill(mask, float("-inf"))
            target = torch.arange(len(idx), device=dev)
            loss = F.cross_entropy(logits, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss))
        model.eval()
        val = evaluate_embedder(NAME, model_embedder(model), val_set.blocks, val_set.block_fps,
                                val_set.queries, val_set.query_fps, ks=(1, 10, 100), positives=val_set.positives)
        model.train()
        rec = {"epoch": epoch + 1, "loss": float(np.mean(losses)), **val.recalls, "seconds": time.time() - te}
        history.append(rec)
        log.info("epoch %d/%d loss %.3f val %s (%.0fs)", epoch + 1, epochs, rec["loss"],
                 " ".join(f"{k}={v:.3f}" for k, v in val.recalls.items()), rec["seconds"])

    model.eval()
    final = evaluate_embedder(NAME, model_embedder(model), val_set.blocks, val_set.block_fps,
                              val_set.queries, val_set.query_fps, positives=val_set.positives)
    base = evaluate_embedder("colour-histogram", colour_histogram, val_set.blocks, val_set.block_fps,
                             val_set.queries, val_set.query_fps, positives=val_set.positives)
    report = {
        "architecture": NAME,
        "config": model.config,
        "seed": seed,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "temperature": temperature,
        "train_queries": len(train_set.queries),
        "test_queries": len(val_set.queries),
        "blocks": len(blocks),
        "data": train_set.description,
        "test_recalls": final.recalls,
        "baseline_recalls": base.recalls,
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
    log.info("saved %s; test %s; colour-histogram %s", out, final.recalls, base.recalls)
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Train the bundled retrieval model on the bundled world")
    ap.add_argument("--out", type=Path, default=config.MODELS_DIR / f"{NAME}.safetensors")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=48)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-queries", type=int, default=None, help="use only N training renders")
    ap.add_argument("--device", default=None)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    train(args.out, args.epochs, args.batch_size, args.lr, seed=args.seed, n_train=args.train_queries,
          device=args.device, threads=args.threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
