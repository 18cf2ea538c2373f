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


def one_fingerprint(c, n_bits: int, like: torch.Tensor) -> torch.Tensor:
    """``c`` as one fingerprint [1, n_bits] of 0/1 values, with ``like``'s dtype and device (what baking takes);
    ValueError for another shape or value."""
    c = torch.as_tensor(c, dtype=like.dtype, device=like.device)
    if c.ndim == 1:
        c = c[None]
    if c.shape != (1, n_bits):
        raise ValueError(f"bake takes one fingerprint of shape [1, {n_bits}], got {tuple(c.shape)}")
    if not bool(((c == 0) | (c == 1)).all()):
        raise ValueError("fingerprint bits must be 0 or 1")
    return c
