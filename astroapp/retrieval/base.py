"""What every retrieval model exposes, and image preprocessing shared by all of them."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class RetrievalModel(nn.Module):
    """A global-descriptor network: normalised images (B,3,H,W) -> L2-normalised (B,D) float32.

    Subclasses implement `embed` (raw descriptor); `forward` moves/casts the input to the
    model's device and dtype (so callers can hand over CPU float32 batches from `preprocess`)
    and always returns float32 unit vectors, whatever precision the model runs in.
    """

    name: str = "model"
    input_size: tuple[int, int] = (224, 224)
    descriptor_dim: int = 0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def embed(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(device=self.device, dtype=self.dtype)
        return F.normalize(self.embed(x).float(), p=2, dim=-1)

    def info(self) -> dict:
        """A plain description (CLI `model info`, index metadata)."""
        return {
            "name": self.name,
            "input_size": list(self.input_size),
            "descriptor_dim": self.descriptor_dim,
            "mean": list(self.mean),
            "std": list(self.std),
            "parameters": sum(p.numel() for p in self.parameters()),
            "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""),
        }


def _as_rgb_uint8(image: np.ndarray, i: int) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image {i}: expected a numpy array, got {type(image).__name__}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"image {i}: expected an RGB array (H, W, 3), got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image {i}: empty image (shape {image.shape})")
    if image.dtype != np.uint8:
        raise ValueError(f"image {i}: expected uint8 pixels, got {image.dtype}")
    return image[:, :, :3]


def resize_rgb(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to (H, W): area averaging when shrinking (no aliasing), bilinear when growing."""
    h, w = size
    if image.shape[0] == h and image.shape[1] == w:
        return image
    shrink = image.shape[0] > h or image.shape[1] > w
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(image), (w, h), interpolation=interp)


def normalise(batch_uint8: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(B,H,W,3) uint8 -> (B,3,H,W) float32 normalised tensor."""
    x = torch.from_numpy(np.ascontiguousarray(batch_uint8)).permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - m) / s


def preprocess(images: Sequence[np.ndarray], model: RetrievalModel) -> torch.Tensor:
    """RGB uint8 images of any size -> (B,3,H,W) float32 CPU tensor for `model`.

    Each image is resized (not cropped) to the model's input size, as EarthLoc does for its
    square database tiles and squashed queries.
    """
    if len(images) == 0:
        h, w = model.input_size
        return torch.empty(0, 3, h, w)
    resized = np.stack(
        [resize_rgb(_as_rgb_uint8(im, i), tuple(model.input_size)) for i, im in enumerate(images)]
    )
    return normalise(resized, model.mean, model.std)
