"""Homography RANSAC on a torch device (kornia), beside OpenCV's MAGSAC on the CPU.

kornia scores its hypotheses in parallel batches on the device, which pays on a GPU when many
pairs are verified (re-ranking a shortlist); on a CPU OpenCV's MAGSAC is faster. Same contract
as `coregister.fit_homography`: (3x3 homography a -> b, inlier mask) or None.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from astroapp.matching.base import Matches
from astroapp.matching.coregister import RANSAC_THRESHOLD_PX

RANSAC_BACKENDS = ("opencv", "kornia")


@lru_cache(maxsize=8)
def _estimator(max_iters: int, seed: int) -> Any:
    from kornia.geometry.ransac import RANSAC

    # kornia draws `batch_size` hypotheses per iteration: max_iters hypotheses in all
    batch = 256
    return RANSAC(model_type="homography", inl_th=RANSAC_THRESHOLD_PX, batch_size=batch,
                  max_iter=max(1, max_iters // batch), confidence=0.999, seed=seed)


def fit_homography_kornia(matches: Matches, max_iters: int = 2000, device: str | None = None,
                          seed: int = 0) -> tuple[np.ndarray, np.ndarray] | None:
    """kornia RANSAC homography a -> b and its inlier mask (bool) on `device` (CUDA when
    present, via config.pick_device), or None when none is found."""
    import torch

    from astroapp.config import pick_device

    if len(matches) < 4:
        return None
    dev = torch.device(pick_device(device))
    a = torch.from_numpy(np.ascontiguousarray(matches.points_a, dtype=np.float32)).to(dev)
    b = torch.from_numpy(np.ascontiguousarray(matches.points_b, dtype=np.float32)).to(dev)
    with torch.inference_mode():
        h, mask = _estimator(int(max_iters), int(seed)).to(dev)(a, b)
    h = h.double().cpu().numpy()
    inl = mask.cpu().numpy().astype(bool).ravel()
    if not np.all(np.isfinite(h)) or abs(h[2, 2]) < 1e-12 or inl.sum() < 4:
        return None
    return h / h[2, 2], inl


def homography_fitter(backend: str = "opencv", device: str | None = None) -> Any:
    """The homography fit of `backend` ("opencv": MAGSAC on the CPU; "kornia": RANSAC on
    `device`), called as fit(matches, max_iters=...)."""
    if backend == "opencv":
        from astroapp.matching.coregister import fit_homography

        return fit_homography
    if backend == "kornia":
        def fit(matches: Matches, max_iters: int = 2000) -> tuple[np.ndarray, np.ndarray] | None:
            return fit_homography_kornia(matches, max_iters=max_iters, device=device)

        return fit
    raise ValueError(f"RANSAC backend must be one of {', '.join(RANSAC_BACKENDS)}, "
                     f"got {backend!r}")
