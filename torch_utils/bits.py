"""Fingerprint bits, shared by training, metrics and detection: random fingerprints and bit accuracy."""

from __future__ import annotations

import torch


def bit_accuracy(logits: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Mean fraction of bits decoded correctly (bit = logit > 0), a 0-d tensor."""
    return ((logits > 0).to(c.dtype) == c).float().mean()


def random_fingerprints(n: int, n_bits: int, generator: torch.Generator | None = None,
                        device: torch.device | str = "cpu") -> torch.Tensor:
    """n uniformly random fingerprints in {0, 1}^n_bits as float32 [n, n_bits]."""
    return torch.randint(0, 2, (n, n_bits), generator=generator, device=device).float()
