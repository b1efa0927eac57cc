"""Model checkpoints: reading weight files safely (safetensors, or torch.load with
weights_only=True), checking them against an architecture, writing them atomically.

Top-level (below every package) because retrieval models, learned matchers and training all
read or write checkpoints; none of them owns the format.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from astroapp.atomic import atomic_path


class WeightsError(ValueError):
    """A weights file is missing, unreadable or does not fit the architecture."""


def read_state_dict(path: str | Path, what: str, how_to_get: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Load a plain state_dict (+ safetensors metadata) from `path`, on the CPU.

    `what` names the expected architecture and `how_to_get` says where the weights come from;
    both go into the error message, which is all a user sees when a path is wrong.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(
            f"weights file not found: {path}\n  expected: {what}\n  how to obtain: {how_to_get}"
        )
    metadata: dict[str, str] = {}
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            state: dict[str, torch.Tensor] = {}
            with safe_open(str(path), framework="pt", device="cpu") as f:
                metadata = dict(f.metadata() or {})
                for key in f.keys():
                    state[key] = f.get_tensor(key)
        else:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
            state = _unwrap(obj)
    except WeightsError:
        raise
    except Exception as exc:  # corrupt file, pickle with code objects, wrong format...
        raise WeightsError(
            f"cannot read weights file {path}: {type(exc).__name__}: {exc}\n"
            f"  expected: {what} (a .safetensors file or a plain PyTorch state_dict)\n"
            f"  how to obtain: {how_to_get}"
        ) from exc
    if not state:
        raise WeightsError(f"weights file {path} holds no tensors\n  expected: {what}\n  how to obtain: {how_to_get}")
    return state, metadata


MAX_CONFIG_INT = 1 << 20   # any size or count in a model config (a descriptor of 1M floats)
MAX_CONFIG_LIST = 64       # e.g. the widths of the stages
MAX_INPUT_SIDE = 4096      # the network's input image (EarthLoc 320, AstroLoc 322 px)
MAX_DESCRIPTOR_DIM = 65_536


def parse_config(metadata: dict[str, str], path: str | Path, what: str,
                 how_to_get: str) -> dict[str, Any] | None:
    """The `config` a weights file's metadata carries, checked before anything is built from
    it: a JSON object of plain values (numbers, booleans, strings, short lists of them)
    within sane bounds; anything else is a WeightsError naming the file."""
    if "config" not in metadata:
        return None

    def bad(why: str) -> WeightsError:
        return WeightsError(f"weights file {path} has a bad model config in its metadata "
                            f"({why})\n  expected: {what}\n  how to obtain: {how_to_get}")

    try:
        cfg = json.loads(metadata["config"])
    except (TypeError, ValueError, RecursionError) as exc:
        raise bad(f"not JSON: {str(exc)[:80]}") from exc
    if not isinstance(cfg, dict):
        raise bad(f"a {type(cfg).__name__}, not an object")

    def check(key: str, value: Any, depth: int = 0) -> None:
        if isinstance(value, bool) or value is None:
            return
        if isinstance(value, int):
            if not -MAX_CONFIG_INT <= value <= MAX_CONFIG_INT:
                raise bad(f"{key} = {value} is out of range")
        elif isinstance(value, float):
            if not math.isfinite(value) or abs(value) > MAX_CONFIG_INT:
                raise bad(f"{key} = {value} is out of range")
        elif isinstance(value, str):
            if len(value) > 200:
                raise bad(f"{key} is a string of {len(value)} characters")
        elif isinstance(value, list) and depth == 0:
            if len(value) > MAX_CONFIG_LIST:
                raise bad(f"{key} has {len(value)} entries")
            for v in value:
                check(key, v, depth + 1)
        else:
            raise bad(f"{key} is a {type(value).__name__}")

    for key, value in cfg.items():
        check(str(key), value)
    return cfg


def build_checked(build: Callable[[dict | None], torch.nn.Module], cfg: dict[str, Any] | None,
                  state: dict[str, torch.Tensor], path: str | Path, what: str,
                  how_to_get: str) -> torch.nn.Module:
    """Build the model a weights file's config describes, once that config proves to fit the
    file: the model is first built on torch's `meta` device (no memory), and must have as
    many parameters as the file holds; a config that does not fit the builder (a wrong type,
    an unknown key) is a WeightsError, not a TypeError traceback or a 100 GB allocation."""
    def bad(why: str) -> WeightsError:
        return WeightsError(f"weights file {path} has a model config that does not fit "
                            f"{what} ({why})\n  how to obtain: {how_to_get}")

    if cfg is not None:
        try:
            with torch.device("meta"):
                shadow = build(cfg)
        except NotImplementedError:  # a builder that needs real tensors: no dry run
            shadow = None
        except (TypeError, ValueError, KeyError, IndexError, AttributeError,
                RuntimeError) as exc:  # e.g. a negative size
            raise bad(f"{type(exc).__name__}: {str(exc)[:120]}") from exc
        if shadow is not None:
            sides = tuple(getattr(shadow, "input_size", ()) or ())
            if any(not isinstance(v, int) or not 8 <= v <= MAX_INPUT_SIDE for v in sides):
                raise bad(f"input size {sides}: each side must be 8..{MAX_INPUT_SIDE} px")
            dim = getattr(shadow, "descriptor_dim", 1)
            if not isinstance(dim, int) or not 1 <= dim <= MAX_DESCRIPTOR_DIM:
                raise bad(f"descriptor size {dim}: must be 1..{MAX_DESCRIPTOR_DIM}")
            wanted = sum(t.numel() for t in shadow.state_dict().values())
            stored = sum(t.numel() for t in state.values())
            if wanted > 2 * stored + 1_000_000:
                raise bad(f"it describes {wanted:,} parameters, the file holds {stored:,}")
    try:
        return build(cfg)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, RuntimeError) as exc:
        raise bad(f"{type(exc).__name__}: {str(exc)[:120]}") from exc


def _unwrap(obj: object) -> dict[str, torch.Tensor]:
    """A state_dict, possibly wrapped in a training checkpoint ({'state_dict': ...}, {'model': ...}).

    DISK's published `depth-save.pth` nests its weights under 'extractor'.
    """
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model", "extractor"):
            inner = obj.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                return dict(inner)
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors and len(tensors) == len(obj):
            return tensors
    raise WeightsError(f"not a state_dict (found {type(obj).__name__})")


def strip_prefixes(state: dict[str, torch.Tensor], prefixes: tuple[str, ...] = ("module.",)) -> dict[str, torch.Tensor]:
    """Drop wrapper prefixes (DataParallel's `module.`) that every key shares."""
    for prefix in prefixes:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def load_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], path: str | Path, what: str, how_to_get: str) -> None:
    """`load_state_dict(strict=True)` with an error that lists what differs, not a traceback."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if tuple(state[k].shape) != tuple(own[k].shape)
    )
    if missing or unexpected or wrong:
        parts = [f"weights file {path} does not fit {what}:"]
        if missing:
            parts.append(f"  {len(missing)} missing keys, e.g. {missing[:3]}")
        if unexpected:
            parts.append(f"  {len(unexpected)} unexpected keys, e.g. {unexpected[:3]}")
        if wrong:
            parts.append(f"  {len(wrong)} keys with wrong shapes, e.g. {wrong[:3]}")
        parts.append(f"  how to obtain the right weights: {how_to_get}")
        raise WeightsError("\n".join(parts))
    with torch.no_grad():
        module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)


def save_safetensors(module: torch.nn.Module, path: str | Path, metadata: dict) -> None:
    """Write weights + JSON-able metadata atomically."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
