"""Embedding throughput of each retrieval model (random weights), images/s at its input size.

    .venv/bin/python -m benchmarks.model_speed [--batch 8] [--batches 3] [--device cpu|cuda] [--threads N]
"""

from __future__ import annotations

import argparse
import time

import torch

from astroapp.config import pick_device
from astroapp.retrieval import available_models, load_model


def measure(name: str, device: str, batch: int, batches: int) -> dict:
    model = load_model(name, weights="random", device=device)
    x = torch.randn(batch, 3, *model.input_size)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    with torch.inference_mode():
        model(x)  # warm-up
        sync()
        t0 = time.perf_counter()
        for _ in range(batches):
            model(x)
        sync()
        dt = time.perf_counter() - t0
    return {
        "model": name,
        "input": "x".join(map(str, model.input_size)),
        "dim": model.descriptor_dim,
        "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
        "img_s": batch * batches / dt,
        "ms_img": 1000 * dt / (batch * batches),
        "dtype": str(model.dtype).replace("torch.", ""),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda, or auto")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--models", nargs="*", default=available_models())
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(None if args.device == "auto" else args.device)
    print(f"device={device} threads={torch.get_num_threads()} batch={args.batch} torch={torch.__version__}")
    print(f"{'model':<15}{'input':>9}{'dim':>6}{'params(M)':>11}{'images/s':>10}{'ms/image':>10}  dtype")
    for name in args.models:
        r = measure(name, device, args.batch, args.batches)
        print(f"{r['model']:<15}{r['input']:>9}{r['dim']:>6}{r['params_M']:>11.1f}{r['img_s']:>10.1f}{r['ms_img']:>10.1f}  {r['dtype']}")


if __name__ == "__main__":
    main()
