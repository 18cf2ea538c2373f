"""The passive attribution baseline of the paper's Table 3: a classifier of an image's source.

Passive attribution (Yu, Davis & Fritz, ICCV 2019) trains a CNN whose classes are the known sources (here: the
registered users' generators and "real") on images of each, then names the class of a new image. It needs no
fingerprint, no decoder and no registry, but it has no answer for a source it was not trained on: in the open
world every image of an unknown generator goes to a known user or to "real". The paper reports it falling to
0.102 attribution accuracy in the open world with 10 generators, where the fingerprint stays at 1.000.

``SourceClassifier`` is a plain convolutional classifier (two 3x3 convolutions per halving of the side, LeakyReLU,
down to 4x4, one linear layer); ``train_classifier`` fits it with class-balanced cross-entropy and Adam;
``predict`` returns class indices. ``scripts/table3_passive.py`` runs it on scripts/table3.sh's images.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn


class SourceClassifier(nn.Module):
    def __init__(self, n_classes: int, resolution: int, channels: int = 32, max_channels: int = 256):
        super().__init__()
        if resolution < 4 or resolution & (resolution - 1):
            raise ValueError(f"resolution {resolution}: a power of two >= 4")
        layers: list[nn.Module] = []
        c_in, c, r = 3, channels, resolution
        while r > 4:
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.LeakyReLU(0.2),
                       nn.Conv2d(c, c, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
            c_in, c, r = c, min(2 * c, max_channels), r // 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in * 16, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:      # x: [N, 3, R, R] in [-1, 1] -> logits [N, classes]
        return self.head(self.features(x).flatten(1))


def to_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 3, R, R] (0..255) -> float in [-1, 1], as the generators' outputs."""
    return images.float() / 127.5 - 1


def train_classifier(images: torch.Tensor, labels: torch.Tensor, n_classes: int, *, epochs: int = 30,
                     batch: int = 64, lr: float = 1e-3, seed: int = 0, device: str = "cpu",
                     log: Callable[[str], None] | None = None) -> SourceClassifier:
    """A ``SourceClassifier`` fitted to ``images`` (uint8 [N, 3, R, R]) with ``labels`` (int64 [N], 0..n_classes-1).

    Each class weighs the same in the loss whatever its number of images (the real class usually has many more);
    the data are shuffled each epoch by ``seed``'s generator, so a run is reproducible on one device."""
    if len(images) != len(labels) or not len(images):
        raise ValueError(f"{len(images)} images and {len(labels)} labels: give one label per image, and some")
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = SourceClassifier(n_classes, images.shape[-1]).to(device)
    counts = torch.bincount(labels, minlength=n_classes).float()
    weight = torch.where(counts > 0, counts.sum() / (n_classes * counts.clamp(min=1)), torch.zeros_like(counts))
    loss_fn = nn.CrossEntropyLoss(weight=weight.to(device))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for epoch in range(epochs):
        order = torch.randperm(len(images), generator=gen)
        total, right = 0.0, 0
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            x, y = to_input(images[idx]).to(device), labels[idx].to(device)
            logits = model(x)
            loss = loss_fn(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            right += int((logits.argmax(1) == y).sum())
        if log and (epoch + 1) % max(1, epochs // 5) == 0:
            log(f"  epoch {epoch + 1}/{epochs}: loss {total / len(images):.4f}, "
                f"train accuracy {right / len(images):.4f}")
    return model.eval()


@torch.no_grad()
def predict(model: SourceClassifier, images: torch.Tensor, *, batch: int = 256, device: str = "cpu") -> np.ndarray:
    """The class index of each image (uint8 [N, 3, R, R])."""
    out = [model(to_input(images[i:i + batch]).to(device)).argmax(1).cpu() for i in range(0, len(images), batch)]
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.int64)
