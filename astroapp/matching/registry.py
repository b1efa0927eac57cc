"""Matcher registry: `get_matcher(name)` with its calibration attached.

Learned matchers (LightGlue, LoFTR) would download weights when constructed by kornia; the
app runs offline, so they are offered only when a weights file is already on disk.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from astroapp import config
from astroapp.matching.base import Matcher, MatcherUnavailable
from astroapp.matching.calibration import calibration_for
from astroapp.matching.sift import SiftMatcher

WEIGHTS_DIR_ENV = "ASTROAPP_MATCHER_WEIGHTS"

# Learned matchers: registry name -> (kornia class, expected weights file, where to get it).
LEARNED = {
    "lightglue": (
        "kornia.feature.LightGlueMatcher (SIFT + LightGlue)",
        "sift_lightglue.pth",
        "https://github.com/cvg/LightGlue/releases (sift_lightglue.pth)",
    ),
    "loftr": (
        "kornia.feature.LoFTR (outdoor)",
        "loftr_outdoor.ckpt",
        "https://github.com/zju3dv/LoFTR (outdoor checkpoint)",
    ),
}


def weights_dir() -> Path:
    return Path(os.environ.get(WEIGHTS_DIR_ENV) or config.MODELS_DIR / "matchers" / "weights")


def _sift() -> Matcher:
    return SiftMatcher(name="sift")


def _sift_nn() -> Matcher:
    # Plain SIFT + ratio test, as in EarthMatch's "SIFT-NN" baseline: for comparison.
    return SiftMatcher(name="sift-nn", root=False, clahe=False, mutual=False, ratio=0.8,
                       contrast_threshold=0.04)


BUILTIN: dict[str, Callable[[], Matcher]] = {"sift": _sift, "sift-nn": _sift_nn}


def matcher_names() -> list[str]:
    return [*BUILTIN, *LEARNED]


def available_matchers() -> list[str]:
    """Names that `get_matcher` can build here (learned ones need their weights on disk)."""
    names = list(BUILTIN)
    names += [n for n, (_, fname, _) in LEARNED.items() if (weights_dir() / fname).is_file()]
    return names


def _learned(name: str) -> Matcher:
    cls, fname, url = LEARNED[name]
    path = weights_dir() / fname
    if not path.is_file():
        raise MatcherUnavailable(
            f"matcher {name!r} needs its weights file {path}; astroapp never downloads at run "
            f"time. Download {fname} from {url} on a machine with network access, put it in "
            f"{weights_dir()} (or set {WEIGHTS_DIR_ENV}), install kornia, then run "
            f"`astroapp calibrate --matcher {name}`. The default matcher 'sift' needs no weights."
        )
    try:
        import kornia  # noqa: F401
    except ImportError as exc:
        raise MatcherUnavailable(
            f"matcher {name!r} uses {cls}: install kornia (`pip install kornia`) to use it"
        ) from exc
    raise MatcherUnavailable(
        f"matcher {name!r}: weights found at {path}, but this build of astroapp has no {cls} "
        "adapter yet; use 'sift'"
    )


def get_matcher(name: str = "sift", calibrated: bool = True) -> Matcher:
    """Build a matcher by name, with its calibration (models/matchers/<name>.json) attached."""
    key = name.lower()
    if key in BUILTIN:
        matcher = BUILTIN[key]()
    elif key in LEARNED:
        matcher = _learned(key)
    else:
        raise MatcherUnavailable(
            f"unknown matcher {name!r}; known: {', '.join(matcher_names())}"
        )
    if calibrated:
        matcher.calibration = calibration_for(matcher)  # type: ignore[attr-defined]
    return matcher
