"""`astroapp match`, `astroapp calibrate`, `astroapp localize`: coregistration from a shell."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from astroapp.cli import UserError
from astroapp.progress import Progress


def _matcher(name: str):
    from astroapp.matching import MatcherUnavailable, get_matcher

    try:
        return get_matcher(name)
    except MatcherUnavailable as exc:
        raise UserError(str(exc)) from exc


# --------------------------------------------------------------------------- match


def _cmd_match(args: argparse.Namespace) -> int:
    from astroapp.matching import coregister
    from astroapp.matching.imageio import ImageReadError, read_rgb

    hints = _hints(args)
    if args.surroundings_km is not None and not args.surroundings_km > 0:
        raise UserError(f"--surroundings-km must be > 0, got {args.surroundings_km:g}")
    try:
        photo = read_rgb(args.query)
        surroundings = read_rgb(args.surroundings)
    except ImageReadError as exc:
        raise UserError(str(exc)) from exc
    if args.angle is not None and args.angle % 90 != 0:
        raise UserError(f"--angle must be 0, 90, 180 or 270, got {args.angle}")
    matcher = _matcher(args.matcher)
    result = coregister(photo, surroundings, matcher=matcher, angle=args.angle, size=args.size,
                        iterations=args.iterations, hints=hints,
                        surroundings_km=args.surroundings_km, dense=not args.no_dense)
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        verdict = "accepted" if result.accepted else "rejected"
        print(f"{verdict}: confidence {result.confidence:.4f}, {result.inliers} inliers "
              f"(threshold {result.threshold}, {_stage_text(result)}), {result.seconds:.2f} s")
        if result.reason:
            print(f"reason: {result.reason}")
        if result.corners_px is not None:
            corners = ", ".join(f"({x:.1f}, {y:.1f})" for x, y in result.corners_px)
            print(f"corners in surroundings px (TL, TR, BR, BL): {corners}")
    return 0


def _stage_text(result: Any) -> str:
    if result.stage == "dense":
        return "matched by orientation fields"
    return f"matcher {result.matcher}"


def _hints(args: argparse.Namespace) -> Any:
    """ViewingHints from --focal-mm/--tilt-deg/--altitude-km; out of range: UserError."""
    from astroapp.geo.viewing import ViewingHints

    if args.focal_mm is None and args.tilt_deg is None and args.altitude_km is None:
        return None
    try:
        hints = ViewingHints.create(args.focal_mm, args.tilt_deg)
        if args.altitude_km is not None:  # checked as given (create takes 0 for "unknown")
            hints = dataclasses.replace(hints, altitude_km=args.altitude_km)
        return hints
    except ValueError as exc:
        flag = ("--focal-mm" if "focal" in str(exc) else "--tilt-deg" if "tilt" in str(exc)
                else "--altitude-km")
        raise UserError(f"{flag}: {exc}") from exc


# --------------------------------------------------------------------------- calibrate


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from astroapp.matching.calibrate import (
        dense_stage,
        fit_from_samples,
        keypoint_stage,
        read_samples,
        samples_from_folder,
        samples_from_renders,
        write_samples,
    )
    from astroapp.matching.calibration import user_calibration_path

    if args.renders <= 0 and not args.labelled and not args.from_samples:
        raise UserError("nothing to calibrate on: give --renders N > 0, --labelled DIR "
                        "and/or --from-samples FILE")
    if args.dense:
        stage = dense_stage()
    else:
        matcher = _matcher(args.matcher or "sift")
        matcher.calibration = None  # measure raw inlier counts
        stage = keypoint_stage(matcher)

    from astroapp.cli.progress import ProgressBars

    progress = ProgressBars(quiet=args.quiet)
    samples = []
    sources = []
    if args.renders > 0:
        samples += samples_from_renders(stage, n=args.renders, seed=args.seed,
                                        wrong_per_photo=args.wrong_per_photo,
                                        source=args.source, progress=progress)
        sources.append(f"{args.renders} renders of {args.source} (seed {args.seed}, "
                       f"{args.wrong_per_photo} wrong pairs each)")
    for folder in args.labelled or []:
        try:
            got, errors = samples_from_folder(stage, folder, progress=progress)
        except (OSError, ValueError) as exc:
            raise UserError(str(exc)) from exc
        for err in errors:
            print(f"skipped: {err}", file=sys.stderr)
        samples += got
        sources.append(f"labelled set {folder} ({len(got)} pairs)")
    progress.close()
    for path in args.from_samples or []:
        try:
            got = read_samples(path)
        except (OSError, ValueError) as exc:
            raise UserError(str(exc)) from exc
        samples += got
        sources.append(f"samples of {path} ({len(got)} pairs)")
    if args.samples:  # before the fit: a failed fit keeps what was measured
        write_samples(args.samples, samples)
    try:
        cal = fit_from_samples(stage, samples, "; ".join(sources))
    except ValueError as exc:
        raise UserError(f"calibration failed: {exc}") from exc
    out = cal.save(args.output or user_calibration_path(stage.name))
    s = cal.samples
    print(f"{stage.name}: P(correct) = 1 / (1 + exp(-({cal.intercept:.3f} + {cal.slope:.4f} "
          f"* inliers))); threshold T = {cal.threshold} inliers (P >= {cal.target})")
    print(f"pairs: {s['correct']} correct, {s['wrong']} wrong; wrong max {s['wrong_max_inliers']} "
          f"inliers, correct median {s['correct_median_inliers']}; correct pairs accepted at T: "
          f"{100 * (s['correct_recall_at_threshold'] or 0):.1f}%")
    print(f"written: {out}")
    return 0


# --------------------------------------------------------------------------- localize


def _cmd_localize(args: argparse.Namespace) -> int:
    from astroapp.cli.catalog_cmds import open_catalog
    from astroapp.pipeline.service import LocalizationService, LocalizeSettings

    if args.index is not None and not args.index.is_dir():
        raise UserError(f"--index {args.index}: no such folder")
    if args.dense_candidates < 0:
        raise UserError(f"--dense-candidates must be >= 0, got {args.dense_candidates}")
    matcher = _matcher(args.matcher)
    with open_catalog(args, write=True) as catalog:
        from astroapp.catalog.leases import release_stale_localizing

        released = release_stale_localizing(catalog)
        if released:
            print(f"{len(released)} photos left in 'localizing' by an interrupted run went "
                  f"back to new: {', '.join(map(str, released[:20]))}", file=sys.stderr)
        if args.ids:
            ids = []
            for text in args.ids:
                try:
                    pid = int(text)
                except ValueError as exc:
                    raise UserError(f"photo ids are integers, got {text!r}") from exc
                if catalog.get_photo(pid) is None:
                    raise UserError(f"no photo with id {pid} in {catalog.path}")
                ids.append(pid)
        elif args.all:
            ids = [p.id for p in catalog.photos()]
        else:
            statuses = [s.strip() for s in (args.status or "new").split(",") if s.strip()]
            from astroapp.catalog import STATUSES

            bad = [s for s in statuses if s not in STATUSES]
            if bad:
                raise UserError(f"unknown status {bad[0]!r}: choose from {', '.join(STATUSES)}")
            ids = [p.id for p in catalog.photos(status=statuses)]
        if not ids:
            print("nothing to localize")
            return 0
        from astroapp.checkpoints import WeightsError
        from astroapp.cli.progress import ProgressBars
        from astroapp.index.errors import TileIndexError

        def progress(event: Progress) -> None:
            bars(event)
            if event.result is not None:  # a photo finished: its line stays above the bar
                bars.write(event.text())

        settings = LocalizeSettings(k=args.k, max_candidates=args.max_candidates, size=args.size,
                                    use_prior=not args.no_prior, rerank=_reranker(args),
                                    dense_candidates=args.dense_candidates)
        service = LocalizationService(catalog, index=args.index, model=args.model,
                                      matcher=matcher, settings=settings, weights=args.weights)
        try:
            with ProgressBars(quiet=args.quiet) as bars:
                service.ensure_index(progress=bars)  # no --index: the demo world's, built once
                summary = service.localize(ids, progress=progress)
        except (TileIndexError, WeightsError) as exc:
            raise UserError(str(exc)) from exc
        if args.json:
            import dataclasses

            print(json.dumps({"summary": summary.describe(),
                              "photos": [dataclasses.asdict(o) for o in summary.outcomes]}))
        else:
            print(summary.describe())
    return 0


def _reranker(args: argparse.Namespace) -> Any:
    if args.no_rerank:
        return False
    from astroapp.pipeline.rerank import Reranker

    try:
        return Reranker(shortlist=args.shortlist)
    except ValueError as exc:
        raise UserError(f"{exc} (--no-rerank skips re-ranking)") from exc


# --------------------------------------------------------------------------- register


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "match",
        help="coregister one photo against one surroundings image",
        description="Coregister QUERY (a photo) against SURROUNDINGS (a north-up 3x3 "
        "surroundings image) with EarthMatch's iterative homography. Exit code 0 whether "
        "or not the match is accepted.",
    )
    p.add_argument("query", type=Path, help="photo (jpg/png/tif)")
    p.add_argument("surroundings", type=Path, help="north-up surroundings image")
    p.add_argument("--angle", type=int, default=None,
                   help="retrieved rotation in degrees (0/90/180/270, counter-clockwise applied "
                   "to the database image); default: try all four")
    p.add_argument("--matcher", default="sift", help="matcher name (default: sift)")
    p.add_argument("--size", type=int, default=512, help="side S of the photo square (default 512)")
    p.add_argument("--iterations", type=int, default=4, help="homography iterations (default 4)")
    p.add_argument("--focal-mm", type=float, default=None,
                   help="the photo's focal length (mm, full-frame sensor): with --surroundings-km "
                   "it sets the scale searched first; default: a pyramid of scales")
    p.add_argument("--tilt-deg", type=float, default=None,
                   help="camera tilt off nadir in degrees (0-80)")
    p.add_argument("--altitude-km", type=float, default=None,
                   help="ISS altitude in km (default 420)")
    p.add_argument("--surroundings-km", type=float, default=None,
                   help="ground width of SURROUNDINGS in km, if known")
    p.add_argument("--no-dense", action="store_true",
                   help="keypoints only: no orientation-field matching when they accept nothing")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_match)

    p = subparsers.add_parser(
        "calibrate",
        help="calibrate a matcher's confidence (P(correct | inliers)) and threshold",
        description="Coregister correct and wrong photo/surroundings pairs (renders of the "
        "bundled world and/or your labelled sets), fit P(correct | inliers) by logistic "
        "regression and set the acceptance threshold where P >= 0.999. A labelled set is a "
        "folder of pair sub-folders (query.jpg, surroundings.jpg) with labels.csv "
        "(pair,correct[,angle]) or a label.json per pair.",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--matcher", default=None, help="matcher name (default: sift)")
    which.add_argument("--dense", action="store_true",
                       help="calibrate the dense stage (orientation fields, for photos keypoints "
                       "cannot match) instead of a matcher: its threshold comes from the wrong "
                       "pairs' tail (at least 20 wrong pairs); writes dense-orientation.json")
    p.add_argument("--renders", type=int, default=150,
                   help="synthetic photos rendered for calibration (default 150; 0: none)")
    p.add_argument("--wrong-per-photo", type=int, default=2,
                   help="wrong pairs per rendered photo (default 2)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the renders")
    p.add_argument("--source", default="bluemarble", help="tile source to render (default: bundled world)")
    p.add_argument("--labelled", type=Path, action="append", metavar="DIR",
                   help="a labelled set of pairs (repeatable)")
    p.add_argument("--output", type=Path, default=None,
                   help="calibration file to write (default: <data dir>/matchers/<name>.json, "
                   "which takes precedence over the shipped one)")
    p.add_argument("--samples", type=Path, default=None,
                   help="also write the per-pair samples (json), even when the fit fails")
    p.add_argument("--from-samples", type=Path, action="append", metavar="FILE",
                   help="samples written by an earlier --samples, to fit with (repeatable): "
                   "refit without measuring again")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_cmd_calibrate)

    p = subparsers.add_parser(
        "localize",
        help="retrieval + coregistration of catalogue photos",
        description="For each photo: retrieve candidate tiles from the index, coregister the "
        "photo against the top candidates' surroundings, stop at the first confident one and "
        "record the footprint and confidence in the catalogue. Photos without a confident "
        "candidate are marked for review; unreadable ones as failed.",
    )
    p.add_argument("ids", nargs="*", help="photo ids (default: photos with status new)")
    p.add_argument("--all", action="store_true", help="every photo in the catalogue")
    p.add_argument("--status", default=None, help="photos with these statuses (comma-separated)")
    p.add_argument("--index", type=Path, default=None,
                   help="tile index folder (default: the bundled world's index, built on first use)")
    p.add_argument("--model", default=None, help="retrieval model (default: the bundled one)")
    p.add_argument("--weights", default=None,
                   help="weights file of the retrieval model (default: its bundled weights)")
    p.add_argument("--matcher", default="sift", help="matcher (default: sift)")
    p.add_argument("--k", type=int, default=10, help="candidates retrieved per photo (default 10)")
    p.add_argument("--max-candidates", type=int, default=10,
                   help="candidates coregistered at most per photo (default 10)")
    p.add_argument("--size", type=int, default=512, help="side S of the photo square (default 512)")
    p.add_argument("--dense-candidates", type=int, default=5, metavar="N",
                   help="when keypoints accept no candidate, match the best N by orientation "
                   "fields (slower, ~5-15 s each; for hazy, seasonal, low-detail photos; "
                   "0: off; default 5)")
    p.add_argument("--no-prior", action="store_true",
                   help="ignore NASA nadir points (search the whole index)")
    p.add_argument("--shortlist", type=int, default=100,
                   help="retrieved tiles verified with SIFT before coregistration, best first "
                   "(default 100)")
    p.add_argument("--no-rerank", action="store_true",
                   help="coregister candidates in retrieval order, without geometric re-ranking")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-photo progress")
    p.set_defaults(func=_cmd_localize)
