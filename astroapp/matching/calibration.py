"""Inlier-count calibration: P(correct | inliers) by logistic regression, threshold at 0.999.

Inlier counts mean different things for different matchers (SIFT-NN and LoFTR differ by an
order of magnitude), so each matcher carries its own fit, stored next to it as
`models/matchers/<name>.json` and produced by `astroapp calibrate`.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from astroapp import config
from astroapp.atomic import atomic_text

log = logging.getLogger(__name__)

TARGET_PROBABILITY = 0.999


@dataclass
class Calibration:
    """Logistic model P = sigmoid(intercept + slope * inliers), threshold where P >= target."""

    matcher: str
    intercept: float
    slope: float
    threshold: int
    target: float = TARGET_PROBABILITY
    calibrated: bool = True
    samples: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""

    def probability(self, inliers: float | np.ndarray) -> float | np.ndarray:
        z = self.intercept + self.slope * np.asarray(inliers, dtype=np.float64)
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))
        return float(p) if np.ndim(p) == 0 else p

    def to_json(self) -> dict:
        return asdict(self)

    def save(self, path: Path | None = None) -> Path:
        path = Path(path) if path else user_calibration_path(self.matcher)
        with atomic_text(path) as f:
            f.write(json.dumps(self.to_json(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: Path) -> Calibration:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def calibration_path(matcher_name: str) -> Path:
    """The calibration shipped with the app (models/matchers/<name>.json)."""
    return config.MODELS_DIR / "matchers" / f"{matcher_name}.json"


def user_calibration_path(matcher_name: str) -> Path:
    """Where `astroapp calibrate` writes by default; it wins over the shipped file."""
    return config.data_dir() / "matchers" / f"{matcher_name}.json"


def uncalibrated(matcher_name: str) -> Calibration:
    """A deliberately strict stand-in used until `astroapp calibrate` has run for a matcher.

    It accepts nothing automatically (threshold out of reach) so every result goes to review,
    while still ranking candidates by inliers through a gentle curve.
    """
    return Calibration(
        matcher=matcher_name, intercept=-6.0, slope=0.05, threshold=10**9, calibrated=False
    )


def calibration_for(matcher: Any) -> Calibration:
    """The matcher's attached calibration, else its file, else the strict stand-in."""
    cal = getattr(matcher, "calibration", None)
    if cal is not None:
        return cal
    return calibration_named(matcher.name, matcher.settings() if hasattr(matcher, "settings") else {})


def calibration_named(name: str, settings: dict[str, Any]) -> Calibration:
    """The calibration file for `name` (the user's, else the shipped one), else the strict
    stand-in; a warning when it was made with other `settings`."""
    for path in (user_calibration_path(name), calibration_path(name)):
        if path.is_file():
            cal = Calibration.load(path)
            common = set(cal.settings) & set(settings)
            if any(cal.settings[k] != settings[k] for k in common):
                log.warning("calibration %s was made with other %s settings (%s, now %s): "
                            "re-run `astroapp calibrate`", path, name, cal.settings, settings)
            return cal
    path = calibration_path(name)
    log.warning(
        "matcher %r has no calibration (%s): nothing will be auto-accepted; run `astroapp calibrate`",
        name,
        path,
    )
    return uncalibrated(name)


def fit_logistic(inliers: np.ndarray, labels: np.ndarray, iters: int = 200) -> tuple[float, float]:
    """Logistic fit by Firth's penalised likelihood (Jeffreys prior), returns (intercept, slope).

    Correct and wrong pairs are often perfectly separated by their inlier counts, where the
    plain maximum-likelihood slope runs off to infinity; Firth's penalty is the standard
    remedy and keeps the estimate finite and unbiased to first order.
    """
    x = np.asarray(inliers, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("inliers and labels must be 1-D arrays of equal length")
    if y.min() == y.max():
        raise ValueError("calibration needs both correct and wrong pairs")
    # Standardise for conditioning, then map the coefficients back.
    mu, sd = x.mean(), x.std() or 1.0
    design = np.column_stack([np.ones_like(x), (x - mu) / sd])

    def penalised(w: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        eta = design @ w
        p = 1.0 / (1.0 + np.exp(-np.clip(eta, -60, 60)))
        weight = p * (1 - p)
        info = (design * weight[:, None]).T @ design + 1e-12 * np.eye(2)
        loglik = float(np.sum(y * eta - np.logaddexp(0.0, eta)))
        return loglik + 0.5 * float(np.linalg.slogdet(info)[1]), p, weight, info

    w = np.zeros(2)
    value, p, weight, info = penalised(w)
    for _ in range(iters):
        info_inv = np.linalg.inv(info)
        root = design * np.sqrt(weight)[:, None]
        hat = np.einsum("ij,jk,ik->i", root, info_inv, root)
        step = info_inv @ (design.T @ (y - p + hat * (0.5 - p)))
        step *= min(1.0, 5.0 / max(np.abs(step).max(), 1e-12))  # damp the first steps
        # Halve the step until the penalised likelihood does not drop (as logistf does):
        # a tiny separated set (one correct pair) otherwise oscillates to a negative slope.
        for _ in range(30):
            new = penalised(w + step)
            if new[0] >= value - 1e-12:
                break
            step = step / 2
        w = w + step
        value, p, weight, info = new
        if np.abs(step).max() < 1e-10:
            break
    slope = w[1] / sd
    intercept = w[0] - w[1] * mu / sd
    return float(intercept), float(slope)


def fit_calibration(
    matcher_name: str,
    inliers: np.ndarray,
    labels: np.ndarray,
    target: float = TARGET_PROBABILITY,
    settings: dict | None = None,
    source: str = "",
) -> Calibration:
    """Fit P(correct | inliers) and put the threshold where it first reaches `target`.

    The threshold is never below the largest inlier count seen on a wrong pair plus one, so
    the calibration set itself has no false accepts.
    """
    inliers = np.asarray(inliers, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    intercept, slope = fit_logistic(inliers, labels.astype(np.float64))
    if slope <= 0:
        raise ValueError("inlier counts do not separate correct from wrong pairs (slope <= 0)")
    logit = math.log(target / (1 - target))
    threshold = max(math.ceil((logit - intercept) / slope), 1)
    wrong_max = int(inliers[~labels].max()) if (~labels).any() else 0
    threshold = max(threshold, wrong_max + 1)
    return _calibration(matcher_name, intercept, slope, threshold, target, inliers, labels,
                        "logistic regression, Firth-penalised", settings, source)


def _calibration(name: str, intercept: float, slope: float, threshold: int, target: float,
                 inliers: np.ndarray, labels: np.ndarray, fit: str, settings: dict | None,
                 source: str) -> Calibration:
    """A fitted Calibration with its record of the samples it came from."""
    right = inliers[labels]
    samples = {
        "source": source,
        "correct": int(labels.sum()),
        "wrong": int((~labels).sum()),
        "wrong_max_inliers": int(inliers[~labels].max()) if (~labels).any() else 0,
        "fit": fit,
        "correct_median_inliers": float(np.median(right)) if right.size else None,
        "correct_recall_at_threshold": float((right >= threshold).mean()) if right.size else None,
    }
    return Calibration(
        matcher=name,
        intercept=intercept,
        slope=slope,
        threshold=int(threshold),
        target=target,
        samples=samples,
        settings=settings or {},
        created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
    )


NULL_TAIL_RATE = 1e-5  # chance of a wrong pair reaching the threshold, by the fitted tail


def fit_null_tail(
    name: str,
    inliers: np.ndarray,
    labels: np.ndarray,
    rate: float = NULL_TAIL_RATE,
    target: float = TARGET_PROBABILITY,
    settings: dict | None = None,
    source: str = "",
) -> Calibration:
    """A calibration from the wrong pairs' distribution alone, for a stage whose correct
    calibration pairs are not the photos it will meet.

    The dense stage runs only on photos keypoints could not match; the renders it can be
    calibrated on are mostly ones keypoints match, and whatever it finds of them says little
    about a hazy or frozen real photo. What must hold is that a wrong pair does not pass, so
    the threshold comes from the wrong pairs' upper tail: inlier counts above their median
    `m` fitted as exponential (mean excess `e`, the maximum-likelihood fit), and the threshold
    where that tail falls to `rate` (never below the largest wrong count + 1). The curve
    P(correct | inliers) = sigmoid((inliers - threshold) / e + logit(target)) rises one
    e-fold per `e` inliers, as the tail's odds do, and reaches `target` at the threshold.
    """
    inliers = np.asarray(inliers, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    wrong = inliers[~labels]
    if wrong.size < 20:
        raise ValueError(f"a tail fit needs at least 20 wrong pairs, got {wrong.size}")
    median = float(np.median(wrong))
    excess = wrong[wrong > median] - median
    mean_excess = float(excess.mean()) if excess.size else 1.0
    tail = median + mean_excess * math.log(0.5 / rate)
    threshold = max(math.ceil(tail), int(wrong.max()) + 1)
    slope = 1.0 / mean_excess
    intercept = math.log(target / (1 - target)) - slope * threshold
    fit = (f"wrong pairs' tail: median {median:.1f}, mean excess {mean_excess:.2f}, "
           f"exponential tail at {rate:g}")
    return _calibration(name, intercept, slope, threshold, target, inliers, labels, fit,
                        settings, source)
