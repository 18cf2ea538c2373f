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
