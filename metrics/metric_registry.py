"""The metric registry (a leaf module): ``MetricOptions`` and ``@register_metric``.

Modules that define metrics import only this; ``metrics/metric_main.py`` imports them all and runs them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass
class MetricOptions:
    G: nn.Module                                  # The generator to measure (G_ema of a snapshot, or a baked G).
    F: nn.Module | None = None                    # Its fingerprint decoder (None: metrics that need none).
    data: str | None = None                       # Training data set (zip / folder / LMDB) for FID, SWD.
    device: torch.device | str = "cpu"
    seed: int = 0
    inception: str | None = None                  # TorchScript Inception-v3 (path or URL) for FID.
    cache_dir: str | None = None                  # Cache of reference statistics and downloads.
    registry: str | None = None                   # Registry (SQLite) for attribution metrics.
    calibration: str | None = None                # Decoder calibration (detect_attribute.py calibrate).
    progress: bool = False                        # Progress bars.
    extra: dict[str, Any] = field(default_factory=dict)   # Metric-specific settings (documented per metric).


_METRICS: dict[str, Callable[[MetricOptions], dict]] = {}
_ALIASES: dict[str, str] = {}
_FINGERPRINT_ONLY: set[str] = set()
_NEEDS_INCEPTION: set[str] = set()


def register_metric(name: str, aliases: tuple[str, ...] = (), fingerprint: bool = False, inception: bool = False):
    """Decorator: register ``fn(opts) -> dict`` as metric ``name`` (and ``aliases``); ``fingerprint``: it
    measures the fingerprint only, so a plain generator has nothing to measure; ``inception``: it needs
    ``MetricOptions.inception`` (checked when a run or calc_metrics.py starts, not at the first snapshot)."""
    def deco(fn: Callable[[MetricOptions], dict]) -> Callable[[MetricOptions], dict]:
        for n in (name, *aliases):
            if n in _METRICS or n in _ALIASES:
                raise ValueError(f"metric name {n!r} registered twice")
        _METRICS[name] = fn
        if fingerprint:
            _FINGERPRINT_ONLY.add(name)
        if inception:
            _NEEDS_INCEPTION.add(name)
        for a in aliases:
            _ALIASES[a] = name
        return fn
    return deco
