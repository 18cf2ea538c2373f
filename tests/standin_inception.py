"""A stand-in for StyleGAN2-ADA's TorchScript Inception-v3 (same call signature, a few features), for tests."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn


class StandInInception(nn.Module):
    """The call signature of StyleGAN2-ADA's TorchScript Inception: uint8 [N, 3, H, W] -> features [N, 12].

    A fixed random conv on the image resized to 16x16, ReLU, then mean and max pooling.
    """

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(123)
        self.conv = nn.Conv2d(3, 6, 3, stride=2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=gen))
            self.conv.bias.copy_(torch.randn(self.conv.bias.shape, generator=gen))

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        x = x.to(torch.float32) / 127.5 - 1
        x = nn.functional.interpolate(x, size=[16, 16], mode="bilinear", align_corners=False)
        h = torch.relu(self.conv(x))
        return torch.cat([h.mean(dim=[2, 3]), h.amax(dim=[2, 3])], dim=1)


def save_standin(path: Path) -> Path:
    """Script the stand-in and save it with torch.jit.save (the format of the real file)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(StandInInception()), str(path))
    return path
