"""`astroapp index ...`: build, inspect and search satellite tile indexes; retrieval recall."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from astroapp.cli import UserError
from astroapp.config import DEFAULT_RETRIEVAL_MODEL

logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its import chatter at INFO



def _load_model(name: str, weights: str | None, device: str | None):
    from astroapp.retrieval import WeightsError, load_model

    try:
        return load_model(name, weights=weights, device=device)
    except (WeightsError, ValueError) as exc:
        raise UserError(str(exc)) from exc


def _open_index(folder: Path, model=None):
    from astroapp.index import TileIndex, TileIndexError

    try:
        return TileIndex.open(folder, model=model)
    except TileIndexError as exc:
        raise UserError(str(exc)) from exc


def _model_for_index(folder: Path, name: str | None, weights: str | None, device: str | None):
    """The model named on the command line, else the one the index's manifest names."""
    from astroapp.index import TileIndexError
    from astroapp.index.manifest import read_manifest

    if name is None:
        try:
            name = read_manifest(folder)["model"]["name"]
        except (OSError, TileIndexError) as exc:
            raise UserError(f"no tile index in {folder}: {exc}") from exc
    return _load_model(name, weights, device)


def _lonlat(text: str) -> tuple[float, float]:
    try:
        lon, lat = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LON,LAT in degrees, got {text!r}") from None
    if not -90 <= lat <= 90:
        raise argparse.ArgumentTypeError(f"latitude {lat} out of range")
    return lon, lat


# --------------------------------------------------------------------------- build
def default_model_for(specs: list[str]) -> str:
    """The bundled CNN for the bundled world (it was trained on it); sift-vote, learned from
    the index's own tiles, for real imagery (EarthLoc folders, GeoTIFFs), where the CNN is at
    chance and sift-bow finds 2 of 5 photos in its top 10 (benchmarks/real_world.py)."""
    from astroapp.retrieval.registry import SIFT_VOTE

    real = [s for s in specs if str(s).strip().lower() != "bluemarble"]
    return SIFT_VOTE if real else DEFAULT_RETRIEVAL_MODEL


def _cmd_build(args: argparse.Namespace) -> int:
    from astroapp.geo.sources import SourceError, open_source
    from astroapp.index import TileIndexError, build_index

    sources = []
    for spec in args.sources:
        try:
            src = open_source(spec)
        except (SourceError, OSError, ValueError) as exc:
            raise UserError(str(exc)) from exc
        for err in getattr(src, "errors", []):
            print(f"warning: {err}", file=sys.stderr)
        sources.append(src)
    ids = [str(s.source_id) for s in sources]
    if len(set(ids)) != len(ids):
        raise UserError(f"two sources have the same id ({', '.join(ids)}): give each once")
    name = args.model or (DEFAULT_RETRIEVAL_MODEL if args.weights else default_model_for(args.sources))
    model = _load_model(name, args.weights, args.device)
    model.precision = args.precision  # read by index.embed.autocast
    from astroapp.index.distributed import RayUnavailableError, build_index_ray

    build = build_index
    if args.ray is not None:  # same build, tiles embedded by Ray tasks (index.distributed)
        from functools import partial

        build = partial(build_index_ray, address=None if args.ray == "local" else args.ray,
                        num_cpus=args.ray_cpus)
    from astroapp.cli.progress import ProgressBars

    try:
        with ProgressBars(quiet=args.quiet, desc={"index": "embedding tiles"}) as bars:
            report = build(
                sources, model, args.out,
                weights=args.weights if args.weights != "random" else None,
                batch_size=args.batch_size, chunk_size=args.chunk_size, workers=args.workers,
                index_type=args.index_type, progress=bars,
                source_specs=[str(s) for s in args.sources], force=args.force)
    except (TileIndexError, RayUnavailableError) as exc:
        raise UserError(str(exc)) from exc
    if report.repaired and report.repaired != "--force":
        print(f"damaged: {report.repaired}: rebuilt", file=sys.stderr)
    if report.up_to_date:
        print(f"{args.out}: up to date ({report.tiles_total} tiles, {report.vectors} vectors, "
              f"{report.index_type})")
    else:
        print(f"{args.out}: {report.tiles_total} tiles ({report.tiles_new} new, "
              f"{report.tiles_embedded} embedded now at {report.tiles_per_s:.1f} tiles/s, "
              f"{report.tiles_failed} failed), {report.vectors} vectors, "
              f"{report.index_type} index, {report.seconds:.1f} s")
    if report.tiles_failed:
        print(f"{report.tiles_failed} tiles could not be read: `astroapp index info {args.out} "
              "--failed` lists them", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- info
def _cmd_info(args: argparse.Namespace) -> int:
    from astroapp.digests import sha256_file
    from astroapp.index import TileIndexError
    from astroapp.index.store import TileStore

    folder = Path(args.dir)
    index = _open_index(folder)  # full consistency check
    man = index.manifest
    if args.json:
        print(json.dumps(man, indent=2))
    else:
        m, c, f = man["model"], man["counts"], man["faiss"]
        print(f"index      {folder}")
        print(f"model      {m['name']}  weights sha256 {m['weights_sha256'][:16]}  "
              f"{m['descriptor_dim']}-D")
        print(f"tiles      {c['tiles']} ({c['failed']} failed) x {c['rotations']} rotations "
              f"= {c['vectors']} vectors")
        for sid, n in c["sources"].items():
            print(f"  source   {sid}: {n} tiles")
        extra = f", nprobe {f['nprobe']}, re-rank x{f['refine']}" if f["type"] == "ivfpq" else ""
        print(f"faiss      {f['type']} ({f['factory']}{extra}), {f['file']}, "
              f"{f['size_bytes'] / 2**20:.1f} MiB, search on {index.backend}")
        if man.get("local"):
            loc = man["local"]
            print(f"votes      {loc['ntotal']} local features in {len(loc['chunks_sha256'])} "
                  f"code files ({loc['neighbours']} neighbours each): tiles ranked by their "
                  "features' votes")
        pre = man["preprocessing"]
        print(f"input      {pre['input_size'][0]}x{pre['input_size'][1]} RGB, "
              f"angles {pre.get('angles')}")
        print(f"built      {man.get('created_at')}  updated {man.get('updated_at')}")
    if args.verify:
        from astroapp.index.tile_index import verify_index

        try:
            verify_index(folder)  # manifest, tile table, faiss file and every chunk
            digest = sha256_file(folder / man["faiss"]["file"])
        except (OSError, TileIndexError) as exc:
            raise UserError(str(exc)) from exc
        print(f"verified   {man['faiss']['file']} sha256 {digest[:16]} matches the manifest, "
              f"{len(index)} tiles readable, descriptor chunks intact")
    if args.failed:
        store = TileStore(folder, readonly=True)
        try:
            for tid, sid, tile_id, err in store.failed(len(index)):
                print(f"failed     #{tid} {sid}/{tile_id}: {err}")
        finally:
            store.close()
    return 0


# --------------------------------------------------------------------------- search
def _cmd_search(args: argparse.Namespace) -> int:
    from astroapp.catalog.photo_reader import read_photo
    from astroapp.index import Region, describe_queries

    folder = Path(args.dir)
    model = _model_for_index(folder, args.model, args.weights, args.device)
    index = _open_index(folder, model)
    images = []
    target = max(int(s) for s in model.input_size)
    if args.rerank:  # the photo is verified at the re-ranking size, read it larger
        from astroapp.pipeline.rerank import DEFAULT_SIZE as RERANK_SIZE

        target = max(target, 2 * RERANK_SIZE)
    for p in args.images:
        try:
            images.append(read_photo(p, min_side=2 * target).rgb)
        except (OSError, ValueError) as exc:
            raise UserError(str(exc)) from exc
    region = None
    if args.nadir is not None:
        region = Region.around_nadir(*args.nadir, altitude_km=args.altitude_km,
                                     max_tilt_deg=args.max_tilt)
    elif args.near is not None:
        region = Region(*args.near, args.radius_km)
    results = index.search(describe_queries(model, images), k=max(args.k, args.rerank),
                           region=region)
    if args.rerank:
        from astroapp.pipeline.rerank import Reranker, tile_reader

        reranker = Reranker(shortlist=args.rerank)
        read_tile = tile_reader(index, reranker.size)
        results = [reranker.rerank(im, cands, read_tile)[: args.k] for im, cands in zip(images, results, strict=True)]
    if args.json:
        print(json.dumps([{"image": str(p), "candidates": [
            {"rank": c.rank, "tile_id": c.tile_id, "source_id": c.source_id, "angle": c.angle,
             "score": round(c.score, 6), "inliers": c.inliers, "footprint": c.footprint_list()}
            for c in cands]}
            for p, cands in zip(args.images, results, strict=True)], indent=2))
        return 0
    for p, cands in zip(args.images, results, strict=True):
        print(f"{p}" + (f"  (within {region.radius_km:.0f} km of {region.lon:.3f},"
                        f"{region.lat:.3f})" if region else ""))
        if not cands:
            print("  no candidates")
        for c in cands:
            lon, lat = (c.footprint.centroid() if hasattr(c.footprint, "centroid")
                        else (float("nan"), float("nan")))
            verified = "" if c.inliers is None else f"  {c.inliers} inliers"
            print(f"  {c.rank:>3}  {c.score:.4f}  {c.angle:>3} deg  {c.source_id}/{c.tile_id}"
                  f"  centre {lon:.3f},{lat:.3f}{verified}")
    return 0


# --------------------------------------------------------------------------- recall
def _cmd_recall(args: argparse.Namespace) -> int:
    from astroapp.evaluation.index_recall import demo_queries, retrieval_recall

    model = _load_model(args.model, args.weights, args.device)
    if args.index is None:
        from astroapp.cli.progress import ProgressBars
        from astroapp.index.demo import ensure_demo_index

        with ProgressBars(quiet=args.quiet, desc={"index": "embedding tiles"}) as bars:
            folder = ensure_demo_index(model=model, progress=bars)
    else:
        folder = Path(args.index)
    index = _open_index(folder, model)
    try:
        queries, what = demo_queries(args.roll, n=args.render, seed=args.seed)
    except (OSError, ValueError) as exc:
        raise UserError(str(exc)) from exc
    reranker = None
    if args.rerank:
        from astroapp.pipeline.rerank import Reranker

        reranker = Reranker(shortlist=args.rerank)
    res = retrieval_recall(index, model, queries, ks=(1, 10), use_prior=args.prior, reranker=reranker)
    print(f"model {index.fingerprint.name}, index {folder} ({len(index)} tiles, "
          f"{index.index_type}), {res['queries']} queries from {what}"
          + (", nadir prior" if args.prior else "")
          + (f", SIFT re-ranking of the top {args.rerank}" if args.rerank else ""))
    print(f"{'recall@1':>10} {'recall@10':>10} {'ms/query':>9}")
    print(f"{res['recall@1']:>10.3f} {res['recall@10']:>10.3f} {res['ms_per_query']:>9.1f}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("index", help="build, inspect and search satellite tile indexes")
    sub = p.add_subparsers(dest="index_command", metavar="ACTION", required=True)

    b = sub.add_parser("build", help="embed tiles of one or more sources into an index "
                       "(resumes an interrupted build; adds only new tiles)")
    b.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="'bluemarble', a folder of EarthLoc tiles, or a GeoTIFF/VRT")
    b.add_argument("--model", default=None,
                   help="retrieval model (default: the bundled CNN for 'bluemarble', sift-vote "
                        "for real imagery)")
    b.add_argument("--weights", default=None, help="weights file of the model")
    b.add_argument("--out", required=True, type=Path, help="index folder")
    b.add_argument("--batch-size", type=int, default=16, help="tiles per batch (x4 rotations)")
    b.add_argument("--chunk-size", type=int, default=1024,
                   help="tiles per descriptor chunk on disk (the unit of resuming)")
    b.add_argument("--workers", type=int, default=2, help="decoding threads")
    b.add_argument("--index-type", choices=("auto", "flat", "ivfpq"), default="auto",
                   help="auto: exact below 256 MiB of vectors, IVF-PQ above")
    b.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    b.add_argument("--force", action="store_true",
                   help="start over: discard the folder's index files and embed every tile "
                   "again (a damaged index is repaired without it)")
    b.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="embed the tiles on a Ray cluster: ADDRESS of its head ('auto' for the "
                   "one `ray start` runs here), or a local one when omitted (needs "
                   "astroapp[distributed]); resumable, same index as without")
    b.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32",
                   help="arithmetic of the descriptor network: fp16/bf16 autocast (tensor "
                   "cores on a GPU; bf16 ran 1.6x fp32 on an AMX CPU core; descriptors "
                   "within cosine 0.99 of fp32)")
    b.add_argument("--ray-cpus", type=int, default=None, metavar="N",
                   help="CPUs of the local Ray cluster that --ray starts (default: all)")
    b.set_defaults(func=_cmd_build)

    i = sub.add_parser("info", help="describe an index (model, counts, faiss type)")
    i.add_argument("dir", type=Path)
    i.add_argument("--json", action="store_true", help="print the manifest")
    i.add_argument("--verify", action="store_true", help="also hash the faiss file")
    i.add_argument("--failed", action="store_true", help="list tiles that could not be read")
    i.set_defaults(func=_cmd_info)

    s = sub.add_parser("search", help="top-k candidate tiles for photos")
    s.add_argument("dir", type=Path, help="index folder")
    s.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    s.add_argument("-k", type=int, default=10)
    s.add_argument("--rerank", type=int, default=0, metavar="N",
                   help="verify the top N tiles with SIFT and reorder them, as localize does")
    s.add_argument("--model", default=None, help="default: the model the index was built with")
    s.add_argument("--weights", default=None)
    s.add_argument("--device", default=None)
    g = s.add_mutually_exclusive_group()
    g.add_argument("--nadir", type=_lonlat, metavar="LON,LAT",
                   help="ISS nadir point: search only the ground visible from there")
    g.add_argument("--near", type=_lonlat, metavar="LON,LAT",
                   help="search only within --radius-km of this point")
    s.add_argument("--radius-km", type=float, default=500.0)
    s.add_argument("--altitude-km", type=float, default=420.0)
    s.add_argument("--max-tilt", type=float, default=50.0, help="degrees off nadir")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_cmd_search)

    r = sub.add_parser("recall", help="retrieval recall@1/@10 of a model on the demo roll")
    r.add_argument("--model", default=DEFAULT_RETRIEVAL_MODEL)
    r.add_argument("--weights", default=None)
    r.add_argument("--device", default=None)
    r.add_argument("--index", default=None, type=Path,
                   help="index folder (default: the demo world's index, built if missing)")
    r.add_argument("--roll", default=None, type=Path,
                   help="folder of photos with a truth.json of their footprints "
                        "(default: the demo roll, rendered on first use)")
    r.add_argument("--render", type=int, default=0, metavar="N",
                   help="evaluate on N fresh renders of test places instead of a roll")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--prior", action="store_true", help="use the nadir-point prior")
    r.add_argument("--rerank", type=int, default=0, metavar="N",
                   help="verify the top N tiles with SIFT and reorder them (localize verifies 100)")
    r.add_argument("-q", "--quiet", action="store_true")
    r.set_defaults(func=_cmd_recall)
