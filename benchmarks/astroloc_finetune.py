"""AstroLoc trained from a catalogue: held-out recall before and after, speed in pairs/s.

    .venv/bin/python -m benchmarks.astroloc_finetune [--photos 240] [--steps 150] [--input-size 84]
        [--depth 4] [--variant tiny] [--init-weights dinov2_vits14_pretrain.pth] [--threads 1]

A rendered stand-in for an analyst's catalogue (`astroapp.training.render_world`: the bundled
world's zoom-7/8 blocks as an EarthLoc tile folder, synthetic ISS photos over Africa, Europe
and Arabia accepted with their true footprints) goes through the same pair builder and trainer
as `astroapp model train astroloc --from-catalog`. Recall is measured on the validation split:
photos of 15-degree cells the model never trains on, against every block of those cells
within their search circles at four rotations (EarthLoc's protocol: a block is correct when it
touches the photo). "before" is the starting model (random init, or the DINOv2 backbone given
with --init-weights), "after" the trained one. The bundled CNN (trained on renders of this
same world) is shown for reference on the same split. Seconds are wall time; on a shared
machine they include waiting for the CPU.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=400)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--input-size", type=int, default=84)
    ap.add_argument("--depth", type=int, default=4, help="ViT blocks (12 = the full ViT-S/B; DINOv2 weights need 12)")
    ap.add_argument("--variant", choices=("tiny", "base"), default="tiny")
    ap.add_argument("--init-weights", default=None, help="DINOv2 backbone file (default: random init)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--root", type=Path, default=None, help="keep the rendered world here (default: a temp dir)")
    args = ap.parse_args(argv)

    import torch

    from astroapp.catalog.db import Catalog
    from astroapp.geo.sources.opener import open_source
    from astroapp.retrieval.registry import DEFAULT_MODEL, load_model
    from astroapp.training.astroloc import (
        ImageStore,
        TrainSettings,
        train_astroloc,
        validation_recall,
        validation_set,
    )
    from astroapp.training.pairs import build_pairs
    from astroapp.training.render_world import build_render_world

    tmp = tempfile.TemporaryDirectory(prefix="astroloc-bench-")
    root = args.root or Path(tmp.name)
    t0 = time.time()
    world_dir = root / f"world-{args.photos}"
    if not (world_dir / "catalog.sqlite").is_file():
        build_render_world(world_dir, bbox=(-20.0, -35.0, 60.0, 45.0), n_photos=args.photos)
    world_s = time.time() - t0
    with Catalog(world_dir / "catalog.sqlite") as cat:
        source = open_source(world_dir / "tiles")
        pairs = build_pairs(cat, source, min_iou=0.1, cell_deg=15, val_fraction=0.3)
    print("\n".join(pairs.report_lines()[:3]))
    cfg = {"input_size": [args.input_size] * 2}
    if args.depth != 12:
        cfg.update(depth=args.depth, clusters=16, cluster_dim=32, token_dim=64)
    settings = TrainSettings(variant=args.variant, steps=args.steps, batch_size=args.batch_size, clusters=8,
                             lr=args.lr, eval_every=max(1, args.steps // 3), checkpoint_every=args.steps,
                             model_config=cfg, threads=args.threads)
    t1 = time.time()
    result = train_astroloc(pairs, source, root / "run", settings, init_weights=args.init_weights, device=args.device)
    train_s = time.time() - t1
    before = {k: v for k, v in result.history[0].items() if k.startswith("R@")}
    after = result.val_recalls
    val = validation_set(pairs, ImageStore(pairs, source, 128))
    cnn = validation_recall(load_model(DEFAULT_MODEL, device=args.device), val)
    summary = pairs.summary()
    print(f"\nworld: {args.photos} rendered photos, {world_s:.0f} s to render; train {summary['train']['photos']} photos "
          f"({summary['train']['pairs']} pairs, {summary['train']['places']} places), held out "
          f"{summary['val']['photos']} photos ({summary['val']['places']} places, {len(val[2])} database blocks x4)")
    print(f"model: {result.report['architecture']} {cfg}, start {result.report['start']}; device {args.device}, "
          f"{torch.get_num_threads()} thread(s), {os.cpu_count()} CPUs")
    print("\n| model | steps | R@1 | R@10 | seconds | pairs/s |")
    print("|---|---|---|---|---|---|")
    print(f"| {result.report['architecture']} before training | 0 | {before.get('R@1', 0):.3f} | {before.get('R@10', 0):.3f} | - | - |")
    for h in result.history[1:]:
        if "R@1" in h and h["step"] != result.step:
            print(f"| {result.report['architecture']} during training | {h['step']} | {h['R@1']:.3f} | {h['R@10']:.3f} | - | - |")
    print(f"| {result.report['architecture']} after training | {result.step} | {after.get('R@1', 0):.3f} | "
          f"{after.get('R@10', 0):.3f} | {train_s:.0f} | {result.report['pairs_per_second']:.1f} |")
    print(f"| {DEFAULT_MODEL} (bundled CNN, trained on renders of this world) | - | {cnn.get('R@1', 0):.3f} | "
          f"{cnn.get('R@10', 0):.3f} | - | - |")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
