"""Photometric preparation for matching astronaut photos against satellite mosaics.

Astronaut photos are taken through the atmosphere and a window: blue haze lifts and flattens
every channel, clouds and ISS hardware fill parts of the frame, black space shows past the
horizon. Sentinel-2 mosaics are cloud-free and haze-corrected. Two things bring the two
closer before detection:
- `normalise`: a per-channel contrast stretch (percentiles of the valid pixels, so clouds and
  space do not set the range), then optionally CLAHE on luminance only (colours unchanged);
- `keypoint_mask`: where the photo's keypoints may lie. Clouds (bright, near-white), black
  space and dark neutral hardware are left out, slightly dilated so that the strong edges
  around them (which match nothing on the ground) are left out too.
"""

from __future__ import annotations

import cv2
import numpy as np

STRETCH_PERCENTILES = (1.0, 99.0)
CLOUD_MIN_LUMA = 175  # after the stretch: near-white...
CLOUD_MAX_SATURATION = 0.18  # ...and colourless,
RAW_MAX_SATURATION = 0.15  # grey before the stretch too (sand, salt keep some colour)
CLOUD_MAX_STD = 10.0  # a cloud has a smooth interior somewhere
DARK_MAX_LUMA = 12  # black space, unlit hardware (raw photo)
MIN_KEPT_FRACTION = 0.15  # below this the mask would starve detection: keep everything


def _luma_saturation(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    img = image.astype(np.float32)
    luma = 0.299 * img[..., 0] + 0.587 * img[..., 1] + 0.114 * img[..., 2]
    mx = img.max(axis=2)
    sat = (mx - img.min(axis=2)) / np.maximum(mx, 1.0)
    return luma, sat


def keypoint_mask(image: np.ndarray) -> np.ndarray:
    """uint8 mask (255: usable ground) of an RGB uint8 photo; all 255 when the masked part
    would leave less than `MIN_KEPT_FRACTION` of the frame (a snowfield is not a cloud deck
    we can do without).

    Cloud: white once the haze is stretched away, grey in the raw photo too (sand and salt
    keep some colour), and a blob with a smooth interior (bright roofs and roads are
    textured or thin). Black space and unlit hardware: nearly black in the raw photo.
    """
    h, w = image.shape[:2]
    raw_luma, raw_sat = _luma_saturation(image)
    luma, sat = _luma_saturation(normalise(image))
    white = (luma >= CLOUD_MIN_LUMA) & (sat <= CLOUD_MAX_SATURATION) & (raw_sat <= RAW_MAX_SATURATION)
    win = (max(3, round(min(h, w) / 70) | 1),) * 2
    mean = cv2.blur(luma, win)
    std = np.sqrt(np.maximum(cv2.blur(luma * luma, win) - mean * mean, 0.0))
    core = white & (std <= CLOUD_MAX_STD)
    n, labels = cv2.connectedComponents(white.astype(np.uint8), connectivity=8)
    has_core = np.zeros(n, bool)
    has_core[np.unique(labels[core])] = True
    has_core[0] = False
    cloud = has_core[labels]
    dark = raw_luma <= DARK_MAX_LUMA
    bad = (cloud | dark).astype(np.uint8)
    # Specks (a white roof, a dark pixel) are not clouds or hardware: open them away first.
    k = max(3, round(min(h, w) / 170) | 1)
    bad = cv2.morphologyEx(bad, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    grow = max(3, round(min(h, w) / 60) | 1)
    bad = cv2.dilate(bad, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (grow, grow)))
    mask = np.where(bad > 0, 0, 255).astype(np.uint8)
    if (mask > 0).mean() < MIN_KEPT_FRACTION:
        return np.full((h, w), 255, np.uint8)
    return mask


def normalise(image: np.ndarray, mask: np.ndarray | None = None, clahe: bool = False) -> np.ndarray:
    """Per-channel contrast stretch of an RGB uint8 image (percentiles over `mask` > 0),
    then CLAHE on luminance when `clahe` (for matchers that do not equalise themselves)."""
    valid = image.reshape(-1, 3)
    if mask is not None and (mask > 0).any():
        valid = valid[(mask > 0).ravel()]
    if len(valid) > 200_000:  # percentiles of a regular subsample are as good and faster
        valid = valid[:: len(valid) // 200_000]
    lo, hi = np.percentile(valid, STRETCH_PERCENTILES, axis=0)
    span = np.maximum(hi - lo, 8.0)  # a flat channel is not blown up into noise
    lut = np.clip((np.arange(256)[:, None] - lo[None, :]) * (255.0 / span[None, :]), 0, 255)
    lut = lut.astype(np.uint8)
    out = np.empty_like(image)
    for c in range(3):
        out[..., c] = cv2.LUT(np.ascontiguousarray(image[..., c]), lut[:, c])
    if clahe:
        lab = cv2.cvtColor(out, cv2.COLOR_RGB2LAB)
        lab[..., 0] = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(lab[..., 0])
        out = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    return out
