"""The index manifest and the model fingerprint it pins: what was built, with what, how."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from astroapp.atomic import atomic_text
from astroapp.index.errors import IndexCorruptError, IndexMismatchError

FORMAT = "astroapp-tile-index"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
ANGLES = (0, 90, 180, 270)


@dataclass(frozen=True)
class ModelFingerprint:
    """What makes two sets of descriptors comparable: same network, same weights, same size."""

    name: str
    weights_sha256: str
    descriptor_dim: int

    def describe(self) -> str:
        return f"{self.name} (weights {self.weights_sha256[:12]}, {self.descriptor_dim}-D)"

    def check_same(self, other: ModelFingerprint, where: str) -> None:
        if self != other:
            raise IndexMismatchError(
                f"{where} was built with model {self.describe()}, but model "
                f"{other.describe()} was given: descriptors of different models are not "
                "comparable. Use the model the index was built with, or build a new index "
                "(another --out folder)."
            )


def sha256_file(path: str | os.PathLike) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def state_dict_sha256(module: Any) -> str:
    """A hash of a torch module's parameters and buffers (names, shapes, float32 values)."""
    h = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        t = value.detach().cpu()
        if t.is_floating_point():
            t = t.float()
        h.update(key.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def model_fingerprint(model: Any, weights: str | os.PathLike | None = None) -> ModelFingerprint:
    """Fingerprint of a retrieval model.

    The weights hash is the sha256 of the weights file when one is known (given here, or named
    by the model as `weights_sha256` / `weights_path`), so the same file gives the same
    fingerprint on CPU (float32) and GPU (float16); otherwise a hash of the parameters.
    """
    if weights is not None:
        digest = sha256_file(weights)
    elif getattr(model, "weights_sha256", None):
        digest = str(model.weights_sha256)
    elif getattr(model, "weights_path", None) and Path(model.weights_path).is_file():
        digest = sha256_file(model.weights_path)
    else:
        digest = state_dict_sha256(model)
    return ModelFingerprint(
        name=str(getattr(model, "name", type(model).__name__)),
        weights_sha256=digest,
        descriptor_dim=int(model.descriptor_dim),
    )


def preprocessing_of(model: Any, load_size: int) -> dict[str, Any]:
    def _floats(v: Any) -> list[float]:
        return [float(x) for x in (v.tolist() if hasattr(v, "tolist") else v)]

    return {
        "input_size": [int(s) for s in model.input_size],
        "mean": _floats(model.mean),
        "std": _floats(model.std),
        "load_size": int(load_size),
        "colour": "RGB",
        "angles": list(ANGLES),
        "rotation": "torch.rot90 of the normalised tensor, counter-clockwise",
    }


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Readers see the old manifest or the new one, never a part of it."""
    with atomic_text(path) as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")


def read_manifest(folder: Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise IndexCorruptError(f"{path} is not valid JSON ({exc}): rebuild the index") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise IndexCorruptError(f"{path} is not an astroapp tile-index manifest")
    if int(data.get("format_version", -1)) > FORMAT_VERSION:
        raise IndexCorruptError(
            f"{path} has format version {data.get('format_version')}, newer than this "
            f"astroapp understands ({FORMAT_VERSION}): upgrade astroapp"
        )
    for key in ("model", "faiss", "counts", "preprocessing", "build"):
        if key not in data:
            raise IndexCorruptError(f"{path} lacks '{key}': rebuild the index")
    return data


def fingerprint_from_manifest(data: dict[str, Any]) -> ModelFingerprint:
    m = data["model"]
    return ModelFingerprint(m["name"], m["weights_sha256"], int(m["descriptor_dim"]))


def fingerprint_to_dict(fp: ModelFingerprint) -> dict[str, Any]:
    return asdict(fp)
