"""The index manifest and the model fingerprint it pins: what was built, with what, how."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from astroapp.atomic import atomic_text
from astroapp.digests import sha256_file
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


REBUILD_HINT = "repair it with `astroapp index build SOURCE... --out DIR` (add --force to start over)"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_FAISS_NAME = re.compile(r"index-\d{4,}\.faiss")
MAX_DIM = 65_536
MAX_COUNT = 2**40


def read_manifest(folder: Path) -> dict[str, Any]:
    """The folder's manifest, every field checked (types, ranges, names), so that damage
    (random bytes, a hand edit, a non-numeric count) is one clear IndexCorruptError naming
    the file and the fix, never a TypeError or KeyError further on."""
    path = Path(folder) / MANIFEST_NAME

    def damaged(why: str) -> IndexCorruptError:
        return IndexCorruptError(f"{path} {why}: the index is damaged; {REBUILD_HINT}",
                                 part="manifest")

    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise damaged(f"is not valid JSON ({_brief(exc)})") from exc
    except OSError as exc:
        raise damaged(f"cannot be read ({exc.strerror or exc})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise damaged("is not an astroapp tile-index manifest")
    version = data.get("format_version")
    if not _is_int(version):
        raise damaged(f"has format_version {_show(version)}, not an integer")
    if version > FORMAT_VERSION:
        raise IndexCorruptError(
            f"{path} has format version {version}, newer than this "
            f"astroapp understands ({FORMAT_VERSION}): upgrade astroapp"
        )
    for key in ("model", "faiss", "counts", "preprocessing", "build"):
        if key not in data:
            raise damaged(f"lacks '{key}'")
    problems = _manifest_problems(data)
    if problems:
        raise damaged(f"has bad fields ({'; '.join(problems[:3])})")
    return data


def _manifest_problems(data: dict[str, Any]) -> list[str]:
    """What is wrong with a manifest's fields (empty when nothing is)."""
    out: list[str] = []

    def need(ok: bool, what: str, value: Any) -> None:
        if not ok:
            out.append(f"{what} is {_show(value)}")

    def count(d: dict, key: str, where: str, lo: int = 0, hi: int = MAX_COUNT) -> None:
        v = d.get(key)
        need(_is_int(v) and lo <= v <= hi, f"{where}.{key}", v)

    m, f, c, pre = data["model"], data["faiss"], data["counts"], data["preprocessing"]
    for name, part in (("model", m), ("faiss", f), ("counts", c), ("preprocessing", pre),
                       ("build", data["build"])):
        if not isinstance(part, dict):
            out.append(f"'{name}' is not an object")
    if out:
        return out
    need(isinstance(m.get("name"), str) and 0 < len(m["name"]) < 200, "model.name", m.get("name"))
    need(isinstance(m.get("weights_sha256"), str) and 0 < len(m["weights_sha256"]) <= 128,
         "model.weights_sha256", m.get("weights_sha256"))
    count(m, "descriptor_dim", "model", 1, MAX_DIM)
    need(f.get("type") in ("flat", "ivfpq"), "faiss.type", f.get("type"))
    need(isinstance(f.get("factory"), str), "faiss.factory", f.get("factory"))
    need(isinstance(f.get("file"), str) and bool(_FAISS_NAME.fullmatch(f["file"])),
         "faiss.file", f.get("file"))
    count(f, "ntotal", "faiss")
    if "size_bytes" in f:
        count(f, "size_bytes", "faiss")
    if "sha256" in f:
        need(isinstance(f["sha256"], str) and bool(_HEX64.fullmatch(f["sha256"])),
             "faiss.sha256", f["sha256"])
    if f.get("type") == "ivfpq":
        count(f, "nprobe", "faiss", 1)
        count(f, "refine", "faiss", 1)
    for key in ("tiles", "failed", "vectors"):
        count(c, key, "counts")
    need(c.get("rotations") == len(ANGLES), "counts.rotations", c.get("rotations"))
    if not out:
        need(c["failed"] <= c["tiles"], "counts.failed", c["failed"])
        need(c["vectors"] == f["ntotal"], "counts.vectors", c["vectors"])
    sources = c.get("sources")
    need(isinstance(sources, dict) and all(isinstance(k, str) and _is_int(v) and v >= 0
                                           for k, v in sources.items()), "counts.sources", sources)
    size = pre.get("input_size")  # the only preprocessing field read back (index info)
    need(isinstance(size, list) and len(size) == 2 and all(_is_int(v) and 0 < v <= 65_536
                                                           for v in size),
         "preprocessing.input_size", size)
    if "tiles_digest" in data:
        need(isinstance(data["tiles_digest"], str) and bool(_HEX64.fullmatch(data["tiles_digest"])),
             "tiles_digest", data["tiles_digest"])
    chunks = data.get("chunks_sha256")
    if chunks is not None:
        need(isinstance(chunks, dict) and all(
            isinstance(k, str) and re.fullmatch(r"chunks/chunk_\d{10}\.npy", k)
            and isinstance(v, str) and _HEX64.fullmatch(v) for k, v in chunks.items()),
             "chunks_sha256", "malformed")
    return out


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) or len(value) < 60 else None
    return text if text is not None and len(text) < 60 else f"{type(value).__name__} (malformed)"


def _brief(exc: Exception) -> str:
    return str(exc).splitlines()[0][:120]


def fingerprint_from_manifest(data: dict[str, Any]) -> ModelFingerprint:
    m = data["model"]
    return ModelFingerprint(m["name"], m["weights_sha256"], int(m["descriptor_dim"]))


def fingerprint_to_dict(fp: ModelFingerprint) -> dict[str, Any]:
    return asdict(fp)
