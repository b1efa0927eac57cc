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
from astroapp.matching.learned import (
    ALIASES,
    LEARNED,
    build_learned,
    kornia_installed,
    learned_weights,
)
from astroapp.matching.sift import SiftMatcher

WEIGHTS_DIR_ENV = "ASTROAPP_MATCHER_WEIGHTS"


def weights_dir() -> Path:
    """An extra folder for learned matchers' weights (besides <data dir>/models, where `model fetch` puts them)."""
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
    """Names that `get_matcher` can build here (learned ones need kornia and their weights on disk)."""
    names = list(BUILTIN)
    learned = [n for n in LEARNED if not learned_weights(n, [weights_dir()])[1]]
    return names + (learned if learned and kornia_installed() else [])


def _learned(name: str) -> Matcher:
    return build_learned(name, [weights_dir()])


def get_matcher(name: str = "sift", calibrated: bool = True) -> Matcher:
    """Build a matcher by name, with its calibration (models/matchers/<name>.json) attached."""
    key = name.lower()
    key = ALIASES.get(key, key)
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
