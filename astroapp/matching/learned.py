"""Learned matchers from kornia, optional (`pip install 'astroapp[learned]'`).

- `lightglue-disk`: DISK keypoints ('depth' weights) matched by LightGlue;
- `lightglue-sift`: OpenCV SIFT (CLAHE, RootSIFT, scale and orientation) matched by LightGlue;
- `loftr`: LoFTR (outdoor), a detector-free dense matcher.

kornia's own constructors download weights from the internet; the app runs offline, so every
module is built without weights and loaded from a local file (`astroapp model fetch NAME`
puts the published files into <data dir>/models) with torch.load(weights_only=True).

Calibration: each matcher's inlier counts mean something different, so each needs its own
`astroapp calibrate --matcher NAME` run with its real weights. None ships (the machines this
release was built on could not download the weights), and until a user runs it the registry
attaches `calibration.uncalibrated`: a threshold out of reach, so a learned matcher never
auto-accepts and every result goes to review.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from astroapp.matching.base import Features, MatcherUnavailable, Matches

INSTALL_HINT = "pip install 'astroapp[learned]'  (kornia)"


def kornia_installed() -> bool:
    """Whether the optional extra is installed (without importing it)."""
    try:
        return importlib.util.find_spec("kornia") is not None
    except (ImportError, ValueError):
        return False


def _torch_image(image: np.ndarray, gray: bool = False):
    """(1, C, H, W) float32 in [0, 1] from an RGB (or grey) uint8 image."""
    import torch

    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    if gray and image.ndim == 3:
        image = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    elif not gray and image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    t = torch.from_numpy(np.ascontiguousarray(image)).float() / 255.0
    return t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]


def _inside(mask: np.ndarray | None, pts: np.ndarray) -> np.ndarray:
    """Which points fall on non-zero mask pixels (all of them without a mask)."""
    if mask is None or len(pts) == 0:
        return np.ones(len(pts), bool)
    h, w = mask.shape[:2]
    x = np.clip(np.rint(pts[:, 0]).astype(int), 0, w - 1)
    y = np.clip(np.rint(pts[:, 1]).astype(int), 0, h - 1)
    return mask[y, x] > 0


def _cells(pts: np.ndarray, stride: int, cols: int) -> np.ndarray:
    """Index of the coarse grid cell (`stride` px, `cols` per row) nearest to each point."""
    return (np.rint(pts[:, 1] / stride) * cols + np.rint(pts[:, 0] / stride)).astype(np.int64)


def load_weights(module, path: Path, what: str, how_to_get: str,
                 rename: Callable[[dict], dict] | None = None) -> None:
    """Load a published checkpoint into `module` (weights_only), refusing one that does not fit.

    Buffers the file may lack (LightGlue's confidence thresholds are computed, not learned)
    keep their constructed values; a missing parameter or an unknown key is an error.
    """
    import torch

    from astroapp.checkpoints import WeightsError, read_state_dict, strip_prefixes

    state, _ = read_state_dict(path, what, how_to_get)  # unwraps 'state_dict', 'extractor'...
    state = strip_prefixes(state, ("module.", "matcher."))
    if rename is not None:
        state = rename(state)
    own = module.state_dict()
    params = {name for name, _ in module.named_parameters()}
    missing = sorted(k for k in set(own) - set(state) if k in params)
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        raise WeightsError(
            f"weights file {path} does not fit {what}: {len(missing)} missing, "
            f"{len(unexpected)} unexpected, {len(wrong)} wrongly shaped keys "
            f"(e.g. {(missing + unexpected + wrong)[:3]})\n  how to obtain: {how_to_get}"
        )
    with torch.no_grad():
        module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=False)


def _lightglue_names(n_layers: int) -> Callable[[dict], dict]:
    """The published LightGlue files' layer names (`self_attn.0`) -> kornia's (`transformers.0.self_attn`)."""

    def rename(state: dict) -> dict:
        out = {}
        for key, value in state.items():
            for i in range(n_layers):
                key = key.replace(f"self_attn.{i}.", f"transformers.{i}.self_attn.")
                key = key.replace(f"cross_attn.{i}.", f"transformers.{i}.cross_attn.")
            out[key] = value
        return out

    return rename


# LightGlue's configuration per feature type (kornia's `LightGlue.features`, without weights).
LIGHTGLUE_CONF = {"disk": {"input_dim": 128}, "sift": {"input_dim": 128, "add_scale_ori": True}}


class _LightGlueBase:
    """Shared LightGlue matching; subclasses provide keypoint features."""

    name = "lightglue"
    rotation_invariant = False  # LightGlue was trained on upright views: coregistration tries 4 turns
    features_kind = "disk"

    def __init__(self, filter_threshold: float = 0.1, device: str | None = None,
                 window_search: bool | None = None) -> None:
        import torch
        from kornia.feature import LightGlue

        from astroapp import config

        self.device = torch.device(config.pick_device(device))
        self.filter_threshold = filter_threshold
        self.window_search = self.device.type == "cuda" if window_search is None else window_search
        conf = dict(LIGHTGLUE_CONF[self.features_kind], filter_threshold=filter_threshold)
        self.lightglue = LightGlue(None, **conf).eval().to(self.device)  # None: no download

    def load_lightglue(self, path: Path, how_to_get: str) -> None:
        load_weights(self.lightglue, path, f"LightGlue for {self.features_kind.upper()} features",
                     how_to_get, rename=_lightglue_names(self.lightglue.conf.n_layers))

    def _side(self, feats: Features) -> dict:
        import torch

        side = {
            "keypoints": torch.from_numpy(feats.keypoints)[None].to(self.device),
            "descriptors": torch.from_numpy(feats.descriptors)[None].to(self.device),
            "image_size": torch.tensor([feats.image_size], dtype=torch.float32, device=self.device),
        }
        for key in ("scales", "oris"):
            if key in feats.extra:
                side[key] = torch.from_numpy(feats.extra[key])[None].to(self.device)
        return side

    def _match_indices(self, feats_a: Features, feats_b: Features) -> np.ndarray:
        """(M, 2) indices of matched keypoints of a and b."""
        import torch

        if len(feats_a) < 2 or len(feats_b) < 2:
            return np.zeros((0, 2), np.int64)
        with torch.inference_mode():
            out = self.lightglue({"image0": self._side(feats_a), "image1": self._side(feats_b)})
        return out["matches"][0].cpu().numpy()

    def match(self, feats_a: Features, feats_b: Features) -> Matches:
        idx = self._match_indices(feats_a, feats_b)
        return Matches(feats_a.keypoints[idx[:, 0]], feats_b.keypoints[idx[:, 1]])

    @property
    def match_subsets(self) -> Callable[..., list[Matches]] | None:
        """The window search's batch matching, offered only where it is affordable.

        One LightGlue pass of the photo against the whole surroundings (thousands of
        keypoints) takes ~25 s of CPU at 1024 x 8192 keypoints (benchmarks/learned_matchers),
        and the search makes one per scale and rotation: minutes per pair. So by default it
        is offered on a GPU only; on a CPU coregistration keeps EarthMatch's central start
        (coregister searches only with matchers that have `match_subsets`).
        """
        return self._match_subsets if self.window_search else None

    def _match_subsets(self, feats_a: Features, feats_b: Features,
                       members: list[np.ndarray]) -> list[Matches]:
        """Matches of a into each subset (window) of b's keypoints, from one LightGlue pass
        (LightGlue's attention is global: one pass against all of b, split by window)."""
        idx = self._match_indices(feats_a, feats_b)
        out = []
        for sel in members:
            sel = np.flatnonzero(sel) if sel.dtype == bool else sel
            inside = idx[np.isin(idx[:, 1], sel)]
            out.append(Matches(feats_a.keypoints[inside[:, 0]], feats_b.keypoints[inside[:, 1]]))
        return out


class DiskLightGlue(_LightGlueBase):
    """DISK keypoints and descriptors, matched by LightGlue."""

    name = "lightglue-disk"
    features_kind = "disk"

    def __init__(self, max_keypoints: int = 2048, filter_threshold: float = 0.1,
                 device: str | None = None, window_search: bool | None = None) -> None:
        from kornia.feature import DISK

        super().__init__(filter_threshold, device, window_search)
        self.max_keypoints = max_keypoints
        self.disk = DISK().eval().to(self.device)  # the constructor downloads nothing

    def settings(self) -> dict:
        return {"max_keypoints": self.max_keypoints, "filter_threshold": self.filter_threshold}

    def load(self, disk: Path, lightglue: Path, how_to_get: str) -> DiskLightGlue:
        load_weights(self.disk, disk, "DISK (U-Net, 128-D descriptors)", how_to_get)
        self.load_lightglue(lightglue, how_to_get)
        return self

    def features(self, image: np.ndarray, mask: np.ndarray | None = None) -> Features:
        import torch

        h, w = image.shape[:2]
        with torch.inference_mode():
            out = self.disk(_torch_image(image).to(self.device), n=self.max_keypoints,
                            pad_if_not_divisible=True)[0]
        pts = out.keypoints.float().cpu().numpy().astype(np.float32)
        desc = out.descriptors.float().cpu().numpy().astype(np.float32)
        keep = _inside(mask, pts)
        return Features(np.ascontiguousarray(pts[keep]), np.ascontiguousarray(desc[keep]), (w, h))


class SiftLightGlue(_LightGlueBase):
    """OpenCV SIFT (as LightGlue's own SIFT extractor: RootSIFT, size, angle in radians) + LightGlue."""

    name = "lightglue-sift"
    features_kind = "sift"

    def __init__(self, max_keypoints: int = 2048, filter_threshold: float = 0.1,
                 device: str | None = None, window_search: bool | None = None) -> None:
        super().__init__(filter_threshold, device, window_search)
        self.max_keypoints = max_keypoints
        self._sift = cv2.SIFT_create(nfeatures=max_keypoints, contrastThreshold=0.02)
        self.clahe = True  # equalises itself (coregistration then adds no CLAHE of its own)
        self._clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))  # haze, as in SiftMatcher

    def settings(self) -> dict:
        return {"max_keypoints": self.max_keypoints, "filter_threshold": self.filter_threshold}

    def load(self, lightglue: Path, how_to_get: str) -> SiftLightGlue:
        self.load_lightglue(lightglue, how_to_get)
        return self

    def features(self, image: np.ndarray, mask: np.ndarray | None = None) -> Features:
        gray = image if image.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
        h, w = gray.shape[:2]
        kps, desc = self._sift.detectAndCompute(self._clahe.apply(gray), mask)
        if desc is None or not kps:
            return Features(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32), (w, h),
                            {"scales": np.zeros(0, np.float32), "oris": np.zeros(0, np.float32)})
        desc = desc.astype(np.float32)
        desc /= np.maximum(desc.sum(axis=1, keepdims=True), 1e-7)
        desc = np.sqrt(desc)  # RootSIFT: unit L2 norm
        extra = {"scales": np.array([k.size for k in kps], np.float32),
                 "oris": np.deg2rad(np.array([k.angle for k in kps], np.float32))}
        pts = np.array([k.pt for k in kps], np.float32)
        return Features(pts, np.ascontiguousarray(desc), (w, h), extra)


class LoftrMatcher:
    """LoFTR (outdoor): dense matching on a 1/8 grid refined at 1/2 resolution.

    Detector-free, so `features` caches the backbone's feature maps of the whole image (the
    photo's are computed once per coregistration) and reports the coarse grid cells as its
    keypoints. A subset of those cells (a window of the surroundings) keeps the maps and
    restricts the matches to its cells. Features merged from tiles cannot carry the maps:
    matching them gives no matches, so coregistration's window search finds no seed with
    LoFTR and falls back to EarthMatch's loop from the central tile.
    """

    name = "loftr"
    rotation_invariant = False

    def __init__(self, confidence: float = 0.2, device: str | None = None) -> None:
        import copy

        import torch
        from kornia.feature import LoFTR
        from kornia.feature.loftr.loftr import default_cfg

        from astroapp import config

        self.device = torch.device(config.pick_device(device))
        self.confidence = confidence
        cfg = copy.deepcopy(default_cfg)
        cfg["match_coarse"]["thr"] = confidence  # the coarse matches' confidence threshold
        self.loftr = LoFTR(pretrained=None, config=cfg).eval().to(self.device)  # None: no download

    def settings(self) -> dict:
        return {"confidence": self.confidence}

    def load(self, path: Path, how_to_get: str) -> LoftrMatcher:
        load_weights(self.loftr, path, "LoFTR (outdoor)", how_to_get)
        return self

    def features(self, image: np.ndarray, mask: np.ndarray | None = None) -> Features:
        import torch

        h, w = image.shape[:2]
        with torch.inference_mode():
            maps = self.loftr.extract_features(_torch_image(image, gray=True).to(self.device))
        stride = self.loftr.config["resolution"][0]
        gx, gy = np.meshgrid(np.arange(0, w, stride), np.arange(0, h, stride))
        grid = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)
        keep = _inside(mask, grid)
        return Features(grid[keep], np.zeros((int(keep.sum()), 0), np.float32), (w, h),
                        {"maps": maps, "mask": mask})

    def match(self, feats_a: Features, feats_b: Features) -> Matches:
        import torch

        empty = Matches(np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32))
        if len(feats_a) < 2 or len(feats_b) < 2:
            return empty
        if "maps" not in feats_a.extra or "maps" not in feats_b.extra:
            return empty  # merged from tiles: no whole-image maps to match (see the class doc)
        with torch.inference_mode():
            out = self.loftr({"features0": feats_a.extra["maps"], "features1": feats_b.extra["maps"]})
        conf = out["confidence"].float().cpu().numpy()
        pa = out["keypoints0"].float().cpu().numpy().astype(np.float32)
        pb = out["keypoints1"].float().cpu().numpy().astype(np.float32)
        keep = ((conf >= self.confidence) & _inside(feats_a.extra.get("mask"), pa)
                & _inside(feats_b.extra.get("mask"), pb)
                & self._in_cells(feats_a, pa) & self._in_cells(feats_b, pb))
        return Matches(np.ascontiguousarray(pa[keep]), np.ascontiguousarray(pb[keep]))

    def _in_cells(self, feats: Features, pts: np.ndarray) -> np.ndarray:
        """Which points fall in the coarse cells that `feats` kept (all, for a whole image)."""
        stride = self.loftr.config["resolution"][0]
        w, h = feats.image_size
        cols = -(-w // stride)
        if len(feats) == cols * -(-h // stride):
            return np.ones(len(pts), bool)
        return np.isin(_cells(pts, stride, cols), _cells(feats.keypoints, stride, cols))


@dataclass(frozen=True)
class LearnedSpec:
    """A learned matcher: what it is and the published weight files it needs."""

    name: str
    what: str
    weights: tuple[str, ...]  # names in astroapp.fetch.PUBLISHED, in the order `build` takes them
    build: Callable[..., Any]  # (paths..., how_to_get) -> matcher


def _build_disk_lightglue(disk: Path, lightglue: Path, how: str) -> DiskLightGlue:
    return DiskLightGlue().load(disk, lightglue, how)


def _build_sift_lightglue(lightglue: Path, how: str) -> SiftLightGlue:
    return SiftLightGlue().load(lightglue, how)


def _build_loftr(path: Path, how: str) -> LoftrMatcher:
    return LoftrMatcher().load(path, how)


LEARNED: dict[str, LearnedSpec] = {
    s.name: s
    for s in (
        LearnedSpec("lightglue-disk", "DISK + LightGlue (kornia)", ("disk", "disk-lightglue"),
                    _build_disk_lightglue),
        LearnedSpec("lightglue-sift", "SIFT + LightGlue (kornia)", ("sift-lightglue",),
                    _build_sift_lightglue),
        LearnedSpec("loftr", "LoFTR outdoor (kornia)", ("loftr-outdoor",), _build_loftr),
    )
}
ALIASES = {"lightglue": "lightglue-sift"}  # EarthMatch's default pairing


def learned_weights(name: str, extra_dirs: list[Path]) -> tuple[list[Path], list[str]]:
    """(found paths, names of missing published files) for a learned matcher."""
    from astroapp.fetch import find_weights

    found, missing = [], []
    for wname in LEARNED[name].weights:
        path = find_weights(wname, extra_dirs)
        if path is None:
            missing.append(wname)
        else:
            found.append(path)
    return found, missing


def build_learned(name: str, extra_dirs: list[Path]) -> Any:
    """A learned matcher with its weights loaded from local files, or MatcherUnavailable."""
    from astroapp.checkpoints import WeightsError
    from astroapp.fetch import get_published, weights_home

    spec = LEARNED[name]
    found, missing = learned_weights(name, extra_dirs)
    how = " and ".join(f"`astroapp model fetch {w}`" for w in spec.weights)
    problems = []
    if not kornia_installed():
        problems.append(f"it needs kornia: {INSTALL_HINT}")
    if missing:
        files = ", ".join(get_published(w).filename for w in missing)
        problems.append(
            f"its weights are not on disk ({files}); astroapp never downloads at run time: run "
            + " and ".join(f"`astroapp model fetch {w}`" for w in missing)
            + f", or put the published files into {weights_home()}"
        )
    if problems:
        raise MatcherUnavailable(
            f"matcher {name!r} ({spec.what}) cannot run here: " + "; ".join(problems)
            + f". Then run `astroapp calibrate --matcher {name}` (until then it never auto-accepts). "
            "The default matcher 'sift' needs no weights."
        )
    try:
        return spec.build(*found, how)
    except WeightsError as exc:
        raise MatcherUnavailable(f"matcher {name!r}: {exc}") from exc


__all__ = ["ALIASES", "LEARNED", "DiskLightGlue", "LoftrMatcher", "SiftLightGlue", "build_learned",
           "kornia_installed", "learned_weights", "load_weights"]
