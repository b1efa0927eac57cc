"""Model registry: names -> architecture, where its weights live, how to load them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from astroapp import config
from astroapp.checkpoints import (
    WeightsError,
    build_checked,
    load_strict,
    parse_config,
    read_state_dict,
    strip_prefixes,
)

from .base import RetrievalModel

log = logging.getLogger(__name__)

DEFAULT_MODEL = config.DEFAULT_RETRIEVAL_MODEL
RANDOM = "random"  # weights="random": the architecture with random init (benchmarks, tests)

EARTHLOC_HOW = (
    "run `astroapp model fetch earthloc` (torchgeo's port, verified, into <data dir>/models), or "
    "download EarthLoc's `best_trained_model.pt` (MIT licence) from the EarthLoc GitHub repository "
    "(github.com/gmberton/EarthLoc, model link in its README; the satellite tile dataset itself is "
    "rsync-only, see that README's rsync command), or torchgeo's port of the same weights "
    "(huggingface.co/torchgeo/earthloc, `earthloc-8b632e30.pth`); pass the file with --weights "
    "or copy it to models/best_trained_model.pt"
)
ASTROLOC_HOW = (
    "AstroLoc's weights were not public at the time of writing: when released, pass the "
    "checkpoint with --weights or copy it to models/{name}.safetensors"
)
SIFT_BOW = "sift-bow"
SIFT_BOW_HOW = (
    "nothing to obtain: its vocabulary is learned from the index's own tiles at `astroapp index "
    "build --model sift-bow` and stored with the index (vocabulary.safetensors)"
)
SIFT_VOTE = "sift-vote"
SIFT_VOTE_HOW = (
    "nothing to obtain: its vocabulary and feature quantizer are learned from the index's own "
    "tiles at `astroapp index build --model sift-vote` and stored with the index"
)
BUNDLED_HOW = (
    "the file ships with astroapp in models/; rebuild it with `astroapp model train` "
    "(or `python -m astroapp.retrieval.train`)"
)


@dataclass
class ModelSpec:
    name: str
    what: str  # architecture, for messages
    how_to_get: str
    build: Callable[[dict | None], RetrievalModel]
    default_files: tuple[str, ...]
    convert: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] = field(default=lambda s: s)
    aliases: tuple[str, ...] = ()
    weight_free: bool = False  # needs no file: learns from each index's own tiles


def _build_bundled(cfg: dict | None) -> RetrievalModel:
    from .bundled import DEFAULT_CONFIG, SmallRetrievalNet

    full = dict(DEFAULT_CONFIG, **(cfg or {}))
    if cfg is not None and "input_norm" not in cfg:
        full["input_norm"] = False  # weights written before the option existed
    cfg = full
    return SmallRetrievalNet(cfg["widths"], cfg["descriptor_dim"], cfg["input_size"],
                             bool(cfg.get("input_norm", False)))


def _build_sift_bow(cfg: dict | None) -> RetrievalModel:
    from .sift_bow import DEFAULT_CONFIG, SiftBow

    return SiftBow(**dict(DEFAULT_CONFIG, **(cfg or {})))


def _build_sift_vote(cfg: dict | None) -> RetrievalModel:
    from .sift_vote import DEFAULT_CONFIG, SiftVote

    return SiftVote(**dict(DEFAULT_CONFIG, **(cfg or {})))


def _build_earthloc(cfg: dict | None) -> RetrievalModel:
    from .earthloc import EarthLoc

    return EarthLoc()


def _convert_earthloc(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    from .earthloc import to_original_keys

    return to_original_keys(state)


def _build_astroloc(variant: str) -> Callable[[dict | None], RetrievalModel]:
    def build(cfg: dict | None) -> RetrievalModel:
        from .astroloc import AstroLoc

        return AstroLoc(variant, **(cfg or {}))

    return build


def _convert_astroloc(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    from .astroloc import to_astroloc_keys

    return to_astroloc_keys(state)


SPECS: dict[str, ModelSpec] = {
    DEFAULT_MODEL: ModelSpec(
        DEFAULT_MODEL,
        "astroapp-small (5-stage CNN + GeM, 256-D, 128x128 input)",
        BUNDLED_HOW,
        _build_bundled,
        ("astroapp-small.safetensors",),
        aliases=("bundled", "default"),
    ),
    SIFT_BOW: ModelSpec(
        SIFT_BOW,
        "sift-bow (RootSIFT bag of 512 words, idf, counts^0.25; 512-D, 512x512 input; vocabulary "
        "learned from each index's own tiles, rotation invariant)",
        SIFT_BOW_HOW,
        _build_sift_bow,
        (),
        aliases=("bow",),
        weight_free=True,
    ),
    SIFT_VOTE: ModelSpec(
        SIFT_VOTE,
        "sift-vote (each tile's RootSIFT features in an IVF-PQ index, 32 B each; photo features "
        "vote for tiles by nearest neighbours, ratio-weighted; learned from each index's own "
        "tiles, rotation invariant)",
        SIFT_VOTE_HOW,
        _build_sift_vote,
        (),
        aliases=("vote",),
        weight_free=True,
    ),
    "earthloc": ModelSpec(
        "earthloc",
        "EarthLoc (ResNet-50 to layer3 + MixVPR 4x1024 + Linear 4096, 4096-D, 320x320 input)",
        EARTHLOC_HOW,
        _build_earthloc,
        ("best_trained_model.pt", "earthloc-8b632e30.pth", "earthloc.safetensors", "earthloc.pt"),
        convert=_convert_earthloc,
    ),
    "astroloc": ModelSpec(
        "astroloc",
        "AstroLoc (DINOv2 ViT-B/14 + SALAD 256+64x128 + Linear 2048, 2048-D)",
        ASTROLOC_HOW.format(name="astroloc"),
        _build_astroloc("astroloc"),
        ("astroloc.safetensors", "astroloc.pt"),
        convert=_convert_astroloc,
    ),
    "astroloc-tiny": ModelSpec(
        "astroloc-tiny",
        "AstroLoc-tiny (DINOv2 ViT-S/14 + SALAD 256+64x128 + Linear 512, 512-D)",
        ASTROLOC_HOW.format(name="astroloc-tiny"),
        _build_astroloc("astroloc-tiny"),
        ("astroloc-tiny.safetensors", "astroloc-tiny.pt"),
        convert=_convert_astroloc,
    ),
}


def available_models() -> list[str]:
    return list(SPECS)


def describe_models() -> dict[str, str]:
    """name -> architecture description."""
    return {name: spec.what for name, spec in SPECS.items()}


def get_spec(name: str) -> ModelSpec:
    key = name.strip().lower()
    for spec in SPECS.values():
        if key == spec.name or key in spec.aliases:
            return spec
    names = ", ".join(f"{s.name}" + (f" ({'/'.join(s.aliases)})" if s.aliases else "") for s in SPECS.values())
    raise ValueError(f"unknown retrieval model {name!r}; available: {names}")


def weight_dirs() -> list[Path]:
    """Where default weight files are looked for: the app's models/ then the user data dir."""
    return [config.MODELS_DIR, config.data_dir() / "models"]


def default_weights(name: str) -> Path | None:
    spec = get_spec(name)
    for folder in weight_dirs():
        for fname in spec.default_files:
            if (folder / fname).is_file():
                return folder / fname
    return None


def build_model(name: str, cfg: dict | None = None) -> RetrievalModel:
    """The architecture with random weights (no file read, nothing downloaded)."""
    return get_spec(name).build(cfg)


def load_model(name: str = DEFAULT_MODEL, weights: str | Path | None = None, device: str | None = None) -> RetrievalModel:
    """A retrieval model in eval mode on `device` (CUDA when present; half precision there).

    `weights`: a .safetensors / .pt file; None looks for the model's default file in models/
    (and the user data dir); "random" builds the architecture with random weights.
    """
    spec = get_spec(name)
    if (isinstance(weights, str) and weights == RANDOM) or (spec.weight_free and weights is None):
        model = spec.build(None)
    else:
        path = Path(weights) if weights is not None else default_weights(spec.name)
        if path is None:
            looked = ", ".join(str(d / f) for d in weight_dirs() for f in spec.default_files)
            raise WeightsError(
                f"no weights for model {spec.name!r} (looked for {looked})\n"
                f"  expected: {spec.what}\n  how to obtain: {spec.how_to_get}"
            )
        state, metadata = read_state_dict(path, spec.what, spec.how_to_get)
        cfg = parse_config(metadata, path, spec.what, spec.how_to_get)
        arch = metadata.get("architecture")
        if arch and arch != spec.name:
            raise WeightsError(
                f"weights file {path} is for model {arch!r}, not {spec.name!r}\n"
                f"  expected: {spec.what}\n  how to obtain: {spec.how_to_get}"
            )
        model = build_checked(spec.build, cfg, state, path, spec.what, spec.how_to_get)
        state = spec.convert(strip_prefixes(state))
        load_strict(model, state, path, spec.what, spec.how_to_get)
        model.weights_path = str(path)
        model.weights_metadata = metadata
        log.debug("loaded %s weights from %s", spec.name, path)
    dev = torch.device(config.pick_device(device))
    model = model.to(dev)
    if dev.type == "cuda":
        model = model.half()
    return model.eval()
