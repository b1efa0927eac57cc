"""Resumable training checkpoints without pickle: safetensors tensors + a JSON sidecar.

A checkpoint at step N is two files, `ckpt-N.safetensors` (model weights `model.*`, the
optimizer's per-parameter tensors `optim.<i>.<name>`, torch RNG states `rng.*`) and
`ckpt-N.json` (step, optimizer hyper-parameters and scalar state, numpy RNG state, history,
settings), each written atomically; `checkpoint.json` then names the newest pair. A SIGKILL at
any moment leaves either the previous checkpoint or the new one named there, never a torn one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from astroapp.atomic import atomic_path, atomic_text

POINTER = "checkpoint.json"


class CheckpointError(ValueError):
    """A checkpoint folder cannot be read back (the message names the file)."""


def save_checkpoint(folder: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    rng: np.random.Generator, generators: dict[str, torch.Generator], extra: dict[str, Any],
                    keep: int = 2) -> Path:
    """Write the step's checkpoint, point `checkpoint.json` at it, drop all but the last `keep`."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt_state = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for idx, state in opt_state["state"].items():
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[name] = value
    tensors["rng.torch"] = torch.get_rng_state()
    for name, gen in generators.items():
        tensors[f"rng.gen.{name}"] = gen.get_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    base = folder / f"ckpt-{step:08d}"
    with atomic_path(base.with_suffix(".safetensors")) as tmp:
        save_file(tensors, str(tmp), metadata={"step": str(step)})
    sidecar = {
        "step": step,
        "param_groups": opt_state["param_groups"],
        "optim_scalars": scalars,
        "numpy_rng": rng.bit_generator.state,
        **extra,
    }
    with atomic_text(base.with_suffix(".json")) as f:
        json.dump(sidecar, f)
    with atomic_text(folder / POINTER) as f:
        json.dump({"step": step, "weights": base.name + ".safetensors", "state": base.name + ".json"}, f)
    for old in sorted(folder.glob("ckpt-*.safetensors"))[:-keep]:
        old.unlink(missing_ok=True)
        old.with_suffix(".json").unlink(missing_ok=True)
    return base.with_suffix(".safetensors")


def read_pointer(folder: Path) -> dict[str, Any] | None:
    path = folder / POINTER
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from exc


def load_checkpoint(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    rng: np.random.Generator, generators: dict[str, torch.Generator]) -> dict[str, Any] | None:
    """Restore the newest checkpoint into model/optimizer/RNGs; its sidecar, or None if there is none."""
    from safetensors.torch import load_file

    pointer = read_pointer(folder)
    if pointer is None:
        return None
    weights, state_path = folder / pointer["weights"], folder / pointer["state"]
    try:
        tensors = load_file(str(weights))
        sidecar = json.loads(state_path.read_text())
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"cannot read the checkpoint {weights}: {exc}") from exc
    if sidecar.get("step") != pointer["step"]:
        raise CheckpointError(f"{state_path} is for step {sidecar.get('step')}, {POINTER} says {pointer['step']}")
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    for idx, scalars in sidecar.get("optim_scalars", {}).items():
        state.setdefault(int(idx), {}).update(scalars)
    optimizer.load_state_dict({"state": state, "param_groups": sidecar["param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    for name, gen in generators.items():
        gen.set_state(tensors[f"rng.gen.{name}"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    rng.bit_generator.state = sidecar["numpy_rng"]
    return sidecar
