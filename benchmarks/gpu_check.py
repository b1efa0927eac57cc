"""Every GPU path, timed beside its CPU counterpart, in one run (<= 5 minutes on a GPU machine).

    .venv/bin/python -m benchmarks.gpu_check            # full: CUDA rows when a GPU is present
    .venv/bin/python -m benchmarks.gpu_check --quick    # CI-sized, CPU, seconds

Rows: tile embedding (4 rotations per tile, `index.embed.embed_rotations`) of the bundled model
and EarthLoc's architecture (random weights) in fp32 / bf16 / fp16 (autocast); one CPU core
(the cost model's unit) and all cores; flat search (faiss on the CPU, torch matmul on the
device, faiss-GPU when a CUDA build of faiss is installed); re-ranking verification (SIFT
features + matching + homography RANSAC: OpenCV MAGSAC vs kornia RANSAC on the device).
Without CUDA the GPU rows are printed as "not measured".
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import cv2
import numpy as np
import torch

from astroapp.config import pick_device


def _rate(fn: Callable[[], int], budget_s: float, sync: Callable[[], None]) -> float:
    """Units per second of `fn` (which returns the units it did), warm-up excluded."""
    fn()
    sync()
    done, t0 = 0, time.perf_counter()
    while True:
        done += fn()
        sync()
        dt = time.perf_counter() - t0
        if dt >= budget_s:
            return done / dt


def _sync(device: str) -> Callable[[], None]:
    return torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)


def embedding_rows(models: list[str], device: str, batch: int, budget_s: float,
                   cpu_batch: int, all_cores: bool = True) -> list[tuple]:
    from astroapp.retrieval import load_model

    rows = []
    all_threads = torch.get_num_threads()
    for name in models:
        weights = None if name == "astroapp-small" else "random"
        model = load_model(name, weights=weights, device="cpu").float()
        h, w = (int(s) for s in model.input_size)
        label = f"{name} ({'bundled' if weights is None else 'random'} weights, {h}px)"
        x = torch.randn(cpu_batch, 3, h, w)
        for threads in (1, all_threads) if all_threads > 1 and all_cores else (1,):
            torch.set_num_threads(threads)
            for precision in ("fp32", "bf16"):
                r = _embed_rate(model, x, precision, budget_s)
                rows.append(("embed", label, f"cpu x{threads}", precision, r, "tiles/s"))
        torch.set_num_threads(all_threads)
        if device.startswith("cuda"):
            model = model.to(device)
            xg = torch.randn(batch, 3, h, w, device=device)
            for precision in ("fp32", "fp16", "bf16"):
                r = _embed_rate(model, xg, precision, budget_s)
                rows.append(("embed", label, device, precision, r, "tiles/s"))
        else:
            rows.append(("embed", label, "cuda", "fp16/bf16", None, "tiles/s"))
    return rows


def _embed_rate(model: torch.nn.Module, x: torch.Tensor, precision: str, budget_s: float
                ) -> float:
    from astroapp.index.embed import embed_rotations

    return _rate(lambda: embed_rotations(model, x, precision=precision).shape[0], budget_s,
                 _sync(str(x.device)))


def search_rows(n: int, dim: int, queries: int, device: str, budget_s: float) -> list[tuple]:
    import faiss

    from astroapp.index.backend import FlatSearcher, faiss_gpus

    rng = np.random.default_rng(0)
    xb = rng.standard_normal((n, dim), dtype=np.float32)
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    q = xb[rng.choice(n, queries, replace=False)] + 0.05 * rng.standard_normal(
        (queries, dim), dtype=np.float32)
    index = faiss.IndexFlatIP(dim)
    index.add(xb)
    what = f"flat {n:,} x {dim}-D, k=100"
    rows = []
    backends = [("faiss", "cpu")]
    backends.append(("torch", device))
    if faiss_gpus() > 0:  # pragma: no cover - CUDA build of faiss
        backends.append(("faiss-gpu", "cuda"))
    else:
        rows.append(("search", what, "faiss-gpu", "fp32", None, "queries/s"))
    for backend, dev in backends:
        s = FlatSearcher(index, backend=backend, device=dev if backend == "torch" else None)
        r = _rate(lambda s=s: s.search(q, 100)[1].shape[0], budget_s, _sync(dev))
        prec = "fp16" if backend == "torch" and dev.startswith("cuda") else "fp32"
        rows.append(("search", what, f"{backend} {dev}", prec, r, "queries/s"))
    return rows


def matching_rows(size: int, device: str, budget_s: float) -> list[tuple]:
    from astroapp.matching.kornia_ransac import homography_fitter
    from astroapp.pipeline.rerank import Reranker, verify

    rng = np.random.default_rng(1)
    img = np.zeros((size, size, 3), np.float32)
    for cells in (3, 7, 19, 53):
        img += cv2.resize(rng.random((cells, cells, 3), dtype=np.float32), (size, size),
                          interpolation=cv2.INTER_CUBIC)
    img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    photo = np.ascontiguousarray(np.rot90(cv2.resize(img, (size + size // 8,) * 2)
                                          [size // 16 : size // 16 + size,
                                           size // 16 : size // 16 + size]))
    rr = Reranker(size=size)
    ft = rr.features(img)
    rows = []
    what = f"SIFT {size}px pair: features+match+RANSAC"
    for backend, dev in (("opencv", "cpu"), ("kornia", device)):
        fit = homography_fitter(backend, device=dev)

        def pair(fit=fit) -> int:
            verify(rr.matcher, rr.features(photo), ft, size, fit)
            return 1

        r = _rate(pair, budget_s, _sync(dev))
        rows.append(("match", what, f"{backend} {dev}", "fp32", r, "pairs/s"))
    return rows


def main(argv: list[str] | None = None) -> list[tuple]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="CI-sized, on the CPU, seconds")
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda if present)")
    ap.add_argument("--seconds", type=float, default=None, help="time per measurement")
    args = ap.parse_args(argv)
    device = "cpu" if args.quick else pick_device(args.device)
    budget = args.seconds or (0.2 if args.quick else 4.0)
    t0 = time.perf_counter()
    print(f"gpu_check: device={device} torch={torch.__version__} "
          f"cpu threads={torch.get_num_threads()} "
          f"cuda={torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}")
    rows = embedding_rows(["astroapp-small"] if args.quick else ["astroapp-small", "earthloc"],
                          device, batch=64, budget_s=budget, cpu_batch=1 if args.quick else 4,
                          all_cores=not args.quick)
    rows += search_rows(20_000 if args.quick else 1_000_000, 256, 16 if args.quick else 256,
                        device, budget)
    rows += matching_rows(256 if args.quick else 512, device, budget)
    print(f"{'path':<7}{'what':<48}{'where':<20}{'precision':<11}{'rate':>12}  unit")
    for kind, what, where, prec, rate, unit in rows:
        shown = f"{rate:12.2f}" if rate is not None else f"{'not measured':>12}"
        print(f"{kind:<7}{what:<48}{where:<20}{prec:<11}{shown}  {unit}")
    print(f"total {time.perf_counter() - t0:.1f} s")
    return rows


if __name__ == "__main__":
    main()
