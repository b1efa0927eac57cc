"""Matchers and EarthMatch coregistration (photo -> footprint + calibrated confidence)."""

from astroapp.matching.base import Features, Matcher, MatcherUnavailable, Matches
from astroapp.matching.calibration import Calibration, calibration_path, fit_calibration
from astroapp.matching.cancel import CoregCancelled
from astroapp.matching.coregister import CoregResult, PreparedPhoto, coregister
from astroapp.matching.registry import available_matchers, get_matcher, matcher_names

__all__ = [
    "Calibration",
    "CoregCancelled",
    "CoregResult",
    "Features",
    "Matcher",
    "MatcherUnavailable",
    "Matches",
    "PreparedPhoto",
    "available_matchers",
    "calibration_path",
    "coregister",
    "fit_calibration",
    "get_matcher",
    "matcher_names",
]
