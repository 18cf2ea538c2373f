"""Small module-level helpers."""

from __future__ import annotations

from typing import TypeVar

import torch
from torch import nn

M = TypeVar("M", bound=nn.Module)


def empty_module(cls: type[M], **kwargs) -> M:
    """Build ``cls(**kwargs)`` on the meta device: no memory, no random initialisation.

    Fill it with ``module.load_state_dict(state, strict=True, assign=True)``; anything the
    state does not provide stays on the meta device, and strict loading reports it.
    """
    with torch.device("meta"):
        return cls(**kwargs)


def count_params(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameter elements."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def ema_beta(batch: int, half_life_kimg: float, cur_nimg: int, rampup: float | None = None) -> float:
    """Per-step decay of a weight moving average with a half-life of ``half_life_kimg`` thousand images,
    capped at ``rampup`` x the images seen so far when given (so it follows quickly early in a run)."""
    ema_nimg = half_life_kimg * 1000
    if rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * rampup)
    return 0.5 ** (batch / max(ema_nimg, 1e-8))


@torch.no_grad()
def update_ema(ema: nn.Module, module: nn.Module, beta: float) -> None:
    """ema <- beta * ema + (1 - beta) * module for parameters; buffers are copied."""
    for p_ema, p in zip(ema.parameters(), module.parameters()):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(ema.buffers(), module.buffers()):
        b_ema.copy_(b)
