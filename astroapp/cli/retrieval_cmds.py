"""`astroapp model ...`: list, fetch, inspect, train and evaluate retrieval models (and fetch matcher weights)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from astroapp.cli import UserError


def _load(name: str, weights: str | None, device: str | None):
    from astroapp.retrieval import WeightsError, load_model

    try:
        return load_model(name, weights=weights, device=device)
    except (WeightsError, ValueError) as exc:
        raise UserError(str(exc)) from exc


def _cmd_list(args: argparse.Namespace) -> int:
    from astroapp.retrieval import DEFAULT_MODEL, default_weights, describe_models
    from astroapp.retrieval.registry import get_spec

    for name, what in describe_models().items():
        mark = "*" if name == DEFAULT_MODEL else " "
        if get_spec(name).weight_free:
            where = "none needed (learned from each index's own tiles at `index build`)"
        else:
            path = default_weights(name)
            where = str(path) if path else f"not found (see `astroapp model info {name}`)"
        print(f"{mark} {name:<14} {what}\n    weights: {where}")
    _list_published()
    _list_trained()
    return 0


def _list_trained() -> None:
    """Models trained from the catalogue (`model train astroloc`), usable with --weights."""
    from astroapp.training.card import trained_dir, trained_models

    found = trained_models()
    if not found:
        return
    print(f"\ntrained from the catalogue (in {trained_dir()}; use with --model NAME --weights FILE):")
    for path, report in found:
        rec = " ".join(f"{k} {v:.3f}" for k, v in report.get("val_recalls", {}).items()) or "-"
        state = ("beat the default: installed as it" if report.get("comparison", {}).get("better")
                 else "kept apart (did not beat the default)")
        print(f"  {report.get('architecture', path.stem):<14} {path}\n    {report.get('steps', '?')} steps, "
              f"validation {rec}; {state}")


def _list_published() -> None:
    """Published weight files (`model fetch NAME`): installed or not, and where."""
    from astroapp.fetch import PUBLISHED, find_weights, weights_home

    print(f"\npublished weight files (`astroapp model fetch NAME` installs into {weights_home()}):")
    for name, spec in PUBLISHED.items():
        path = find_weights(name)
        state = f"installed: {path}" if path else "not installed"
        print(f"  {name:<14} {state}\n    {spec.used_by}; {spec.digest_note()}")


def _cmd_fetch(args: argparse.Namespace) -> int:
    from astroapp.cli.progress import ProgressBars
    from astroapp.fetch import FetchError, fetch, get_published

    try:
        spec = get_published(args.name)
        print(f"fetching {spec.filename} from {args.url or spec.url}", flush=True)
        with ProgressBars(quiet=args.no_progress, desc={"download": spec.filename}) as bars:
            path = fetch(spec, url=args.url, dest_dir=Path(args.dest) if args.dest else None,
                         sha256=args.sha256, progress=bars)
    except FetchError as exc:
        raise UserError(str(exc)) from exc
    print(f"installed {path} ({spec.used_by})")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from astroapp.retrieval import get_spec

    try:
        spec = get_spec(args.name)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    model = _load(spec.name, args.weights, args.device)
    info = model.info()
    info["weights"] = getattr(model, "weights_path", args.weights)
    meta = getattr(model, "weights_metadata", {}) or {}
    if "training" in meta:
        training = json.loads(meta["training"])
        info["training"] = {k: training.get(k) for k in ("seed", "epochs", "test_recalls", "baseline_recalls", "seconds_total")}
    print(json.dumps(info, indent=2))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    if args.architecture in ("astroloc", "astroloc-tiny"):
        from astroapp.cli.training_cmds import train_astroloc_from_catalog

        return train_astroloc_from_catalog(args)
    if args.from_catalog:
        raise UserError(f"--from-catalog trains AstroLoc: `astroapp model train astroloc --from-catalog` "
                        f"(the {args.architecture} model trains on renders of the bundled world)")
    from astroapp.cli.progress import ProgressBars
    from astroapp.config import DEFAULT_RETRIEVAL_MODEL, MODELS_DIR
    from astroapp.retrieval.train import train

    args.out = args.out or str(MODELS_DIR / f"{DEFAULT_RETRIEVAL_MODEL}.safetensors")
    args.batch_size = args.batch_size or 32
    args.lr = args.lr or 1e-3

    with ProgressBars() as bars:
        report = train(Path(args.out), epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                       seed=args.seed, n_train=args.train_queries, device=args.device,
                       threads=args.threads, init=Path(args.init) if args.init else None,
                       model_config={"input_size": [args.input_size] * 2} if args.input_size else None,
                       progress=bars)
    print(f"saved {args.out}: test {report['test_recalls']}, colour-histogram baseline {report['baseline_recalls']}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from astroapp.evaluation.model_recall import evaluate_bundled_world
    from astroapp.retrieval import WeightsError

    try:
        results = evaluate_bundled_world(args.name, args.weights, args.device, args.split, args.queries,
                                         baseline=not args.no_baseline, rerank=args.rerank)
    except (WeightsError, ValueError) as exc:
        raise UserError(str(exc)) from exc
    for r in results:
        print(r.line())
    if args.json:
        Path(args.json).write_text(json.dumps([r.__dict__ for r in results], indent=2))
    return 0


def register(subparsers) -> None:
    from astroapp.config import DEFAULT_RETRIEVAL_MODEL as DEFAULT_MODEL
    from astroapp.config import MODELS_DIR

    p = subparsers.add_parser("model", help="retrieval models and weight files: list, fetch, info, train, eval")
    sub = p.add_subparsers(dest="model_command", metavar="ACTION", required=True)

    q = sub.add_parser("list", help="known models and where their weights are")
    q.set_defaults(func=_cmd_list)

    q = sub.add_parser("fetch", help="download a published weights file (explicit, verified, resumable)")
    q.add_argument("name", help="earthloc, disk-lightglue, disk, sift-lightglue, loftr-outdoor, dinov2-vits14 or dinov2-vitb14 "
                                "(`astroapp model list` shows them)")
    q.add_argument("--url", default=None, help="download from this mirror instead of the published URL")
    q.add_argument("--sha256", default=None,
                   help="expected sha256 (required where none is pinned; replaces the pinned one)")
    q.add_argument("--dest", default=None, help="install into this folder (default: <data dir>/models)")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    q.set_defaults(func=_cmd_fetch)

    q = sub.add_parser("info", help="architecture, input size, descriptor size of a model")
    q.add_argument("name", nargs="?", default=DEFAULT_MODEL)
    q.add_argument("--weights", default=None, help="weights file (default: the model's file in models/; 'random' for none)")
    q.add_argument("--device", default=None)
    q.set_defaults(func=_cmd_info)

    q = sub.add_parser("train", help="train the bundled model on renders of the bundled world, or AstroLoc "
                                     "from the catalogue's accepted photos (`model train astroloc --from-catalog`)")
    q.add_argument("architecture", nargs="?", default=DEFAULT_MODEL, choices=[DEFAULT_MODEL, "astroloc", "astroloc-tiny"],
                   help=f"{DEFAULT_MODEL} (default: the bundled CNN) or astroloc (with --from-catalog)")
    q.add_argument("--out", default=None, help=f"weights file (default {MODELS_DIR / DEFAULT_MODEL}.safetensors); "
                   "for astroloc a folder (default <data dir>/models/trained/<variant>; a run there resumes)")
    q.add_argument("--epochs", type=int, default=6)
    q.add_argument("--batch-size", type=int, default=None, help="default 32 (bundled), 16 photos (astroloc)")
    q.add_argument("--lr", type=float, default=None, help="default 1e-3 (bundled), 1e-4 (astroloc)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--train-queries", type=int, default=None)
    q.add_argument("--device", default=None)
    q.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a busy 2-core machine)")
    q.add_argument("--input-size", type=int, default=None, help="square model input side (default 128)")
    q.add_argument("--init", default=None, help="continue training from these weights")
    from astroapp.cli.training_cmds import add_astroloc_options

    add_astroloc_options(q)
    q.set_defaults(func=_cmd_train)

    q = sub.add_parser("eval", help="recall@1/10/100 on held-out renders of the bundled world")
    q.add_argument("name", nargs="?", default=DEFAULT_MODEL)
    q.add_argument("--weights", default=None)
    q.add_argument("--device", default=None)
    q.add_argument("--split", default="test", choices=["test", "train"])
    q.add_argument("--queries", type=int, default=None, help="only the first N queries")
    q.add_argument("--no-baseline", action="store_true", help="skip the colour-histogram baseline")
    q.add_argument("--rerank", type=int, default=0, metavar="N",
                   help="also report recall after SIFT re-ranking of the top N blocks (e.g. 100)")
    q.add_argument("--json", default=None, help="also write the results to this file")
    q.set_defaults(func=_cmd_eval)
