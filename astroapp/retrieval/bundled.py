"""astroapp-small: the bundled default model, a small CNN + GeM fast enough for a laptop CPU."""

from __future__ import annotations

import torch
from torch import nn

from .base import IMAGENET_MEAN, IMAGENET_STD, RetrievalModel

NAME = "astroapp-small"
DEFAULT_CONFIG = {"widths": [24, 32, 64, 128, 256], "descriptor_dim": 256, "input_size": [128, 128],
                  "input_norm": True}


def conv_bn_relu(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class GeM(nn.Module):
    """Generalised-mean pooling (learnable p): between average (p=1) and max pooling."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6):
        super().__init__()
        self.p = nn.Parameter(torch.tensor([p]))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.p.to(x.dtype)
        return x.clamp(min=self.eps).pow(p).mean(dim=(2, 3)).pow(1.0 / p)


class SmallRetrievalNet(RetrievalModel):
    """(Per-image input normalisation) -> five stride-2 conv stages -> GeM -> Linear -> L2.

    Global pooling keeps the descriptor nearly insensitive to the photo's in-plane rotation
    between the 90-degree steps at which the database is embedded. With `input_norm`, each
    image's channels are standardised first (instance norm without parameters): haze, a
    camera's white balance and exposure change a photo roughly by a per-channel gain and
    offset, which this removes before the network sees the ground.
    """

    def __init__(
        self,
        widths: list[int] | tuple[int, ...] = tuple(DEFAULT_CONFIG["widths"]),
        descriptor_dim: int = 256,
        input_size: tuple[int, int] | list[int] = (128, 128),
        input_norm: bool = False,
    ):
        super().__init__()
        self.name = NAME
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.descriptor_dim = int(descriptor_dim)
        self.mean = IMAGENET_MEAN
        self.std = IMAGENET_STD
        self.config = {"widths": list(widths), "descriptor_dim": self.descriptor_dim,
                       "input_size": list(self.input_size), "input_norm": bool(input_norm)}
        self.input_norm: nn.Module = nn.InstanceNorm2d(3) if input_norm else nn.Identity()
        layers: list[nn.Module] = [conv_bn_relu(3, widths[0], 2)]
        for cin, cout in zip(widths[:-1], widths[1:], strict=True):
            layers += [conv_bn_relu(cin, cout, 2), conv_bn_relu(cout, cout, 1)]
        self.features = nn.Sequential(*layers)
        self.pool = GeM()
        self.fc = nn.Linear(widths[-1], self.descriptor_dim)
        self._init()

    def _init(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(self.input_norm(x))))
