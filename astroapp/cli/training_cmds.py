"""`astroapp model train astroloc --from-catalog ...`: AstroLoc from the analysts' accepted photos."""

from __future__ import annotations

import argparse
import json
import signal

from astroapp.cli import UserError, int_list


def add_astroloc_options(q: argparse.ArgumentParser) -> None:
    g = q.add_argument_group("AstroLoc from the catalogue (`model train astroloc --from-catalog`)")
    g.add_argument("--from-catalog", action="store_true",
                   help="pair the catalogue's accepted photos (--catalog) with the satellite blocks they overlap")
    g.add_argument("--source", default=None, help="tile source the pairs come from: an EarthLoc folder, a GeoTIFF, 'bluemarble'")
    g.add_argument("--index", default=None, help="or: the index folder whose tile source to use")
    g.add_argument("--variant", choices=("tiny", "base"), default=None,
                   help="tiny = ViT-S/14, 512-D (CPU); base = ViT-B/14, 2048-D (GPU); default tiny, or base for 'astroloc' on CUDA")
    g.add_argument("--init-weights", default=None, metavar="FILE",
                   help="DINOv2 backbone (dinov2_vits14/vitb14_pretrain.pth, `model fetch dinov2-vits14`) or an "
                        "AstroLoc checkpoint to fine-tune; default: random init")
    g.add_argument("--steps", type=int, default=1000)
    g.add_argument("--dry-run", action="store_true", help="only print photos, pairs and places per split")
    g.add_argument("--min-iou", type=float, default=0.1, help="a block is a photo's pair from this IoU (default 0.1)")
    g.add_argument("--zooms", default=None, help="only blocks of these zooms, e.g. 9,10,11 (default: all)")
    g.add_argument("--include-auto", action="store_true", help="also confident auto-accepted localizations")
    g.add_argument("--min-confidence", type=float, default=0.9, help="for --include-auto (default 0.9)")
    g.add_argument("--cell-deg", type=float, default=10.0,
                   help="place cells of this many degrees: no cell in both train and validation (default 10)")
    g.add_argument("--val-fraction", type=float, default=0.2, help="share of cells held out (default 0.2)")
    g.add_argument("--negatives", type=int, default=8, help="hard negatives per photo from its search circle")
    g.add_argument("--clusters", type=int, default=8, help="satellite places per step for the cluster loss")
    g.add_argument("--eval-every", type=int, default=200, help="validation recall every N steps")
    g.add_argument("--checkpoint-every", type=int, default=100, help="checkpoint every N steps")
    g.add_argument("--model-config", default=None, metavar="JSON",
                   help='AstroLoc size overrides, e.g. \'{"input_size": [112, 112], "depth": 4}\' (small CPU models)')
    g.add_argument("--no-promote", action="store_true",
                   help="never install the result as the default weights, even when it beats the current default")


def train_astroloc_from_catalog(args: argparse.Namespace) -> int:
    from astroapp.cli.progress import ProgressBars
    from astroapp.training.astroloc import TrainSettings
    from astroapp.training.run import PairOptions, TrainingError, train_from_catalog

    if not args.from_catalog:
        raise UserError("AstroLoc trains from the catalogue's accepted photos: add --from-catalog "
                        "(and --source or --index for the satellite tiles)")
    variant = args.variant or ("tiny" if args.architecture == "astroloc-tiny" else "base" if _cuda() else "tiny")
    try:
        cfg = json.loads(args.model_config) if args.model_config else {}
        if not isinstance(cfg, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        raise UserError(f"--model-config: {exc}") from exc
    if args.input_size:
        cfg["input_size"] = [args.input_size, args.input_size]
    zooms = int_list(args.zooms, "--zooms", "zoom levels (e.g. 9,10,11)") if args.zooms else None
    import threading

    cancel = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: cancel.set())  # Ctrl-C: checkpoint, then stop
    try:
        settings = TrainSettings(variant=variant, steps=args.steps, batch_size=args.batch_size or 16,
                                 clusters=args.clusters, lr=args.lr or 1e-4, seed=args.seed,
                                 eval_every=args.eval_every, checkpoint_every=args.checkpoint_every,
                                 model_config=cfg, threads=args.threads)
        with ProgressBars(desc={"train": f"training {settings.variant}", "pairs": "pairing photos"}) as bars:
            def progress(p):
                bars(p)
                if "validation" in p.message or "resumed" in p.message:
                    bars.write(p.text())

            run = train_from_catalog(
                args.catalog, source=args.source, index=args.index, settings=settings,
                pair_options=PairOptions(args.min_iou, zooms, args.include_auto, args.min_confidence,
                                         args.cell_deg, args.val_fraction, args.negatives),
                init_weights=args.init_weights, out_dir=args.out, dry_run=args.dry_run,
                promote_if_better=not args.no_promote, device=args.device, progress=progress, cancel=cancel)
    except (TrainingError, ValueError) as exc:
        raise UserError(str(exc)) from exc
    finally:
        signal.signal(signal.SIGINT, previous)
    for line in run.lines:
        print(line)
    return 130 if run.result is not None and run.result.cancelled else 0


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
