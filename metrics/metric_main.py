"""The registry of metrics: one name, one function, one JSONL file per run.

A metric is a function ``fn(opts: MetricOptions) -> dict`` of plain numbers (and short strings),
registered under its name with ``@register_metric``. ``calc_metric`` runs one and adds ``metric``
(its name), ``total_time`` (s) and ``seed`` to the result; ``report_metric`` appends it, with the
snapshot and anything else given, as one flat JSON line to ``<run_dir>/metric-<name>.jsonl``.
The training loop (``--metrics``) and ``calc_metrics.py`` use the same two calls, so a metric
computed during training and afterwards is the same computation.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
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


def register_metric(name: str, aliases: tuple[str, ...] = ()):
    """Decorator: register ``fn(opts) -> dict`` as metric ``name`` (and ``aliases``)."""
    def deco(fn: Callable[[MetricOptions], dict]) -> Callable[[MetricOptions], dict]:
        for n in (name, *aliases):
            if n in _METRICS or n in _ALIASES:
                raise ValueError(f"metric name {n!r} registered twice")
        _METRICS[name] = fn
        for a in aliases:
            _ALIASES[a] = name
        return fn
    return deco


def _load_builtin_metrics() -> None:
    # The modules that define metrics register them on import.
    from metrics import fid, fingerprint, quality, robustness  # noqa: F401


def canonical_name(name: str) -> str:
    """The registered name of ``name`` (resolving aliases); ValueError naming the choices if unknown."""
    _load_builtin_metrics()
    name = _ALIASES.get(name, name)
    if name not in _METRICS:
        raise ValueError(f"unknown metric {name!r}; available: {', '.join(list_metrics())}")
    return name


def list_metrics() -> list[str]:
    """Registered metric names and aliases, sorted."""
    _load_builtin_metrics()
    return sorted([*_METRICS, *_ALIASES])


def calc_metric(name: str, opts: MetricOptions) -> dict[str, Any]:
    """Run metric ``name`` (or an alias): its results plus ``metric``, ``total_time`` and ``seed``."""
    canon = canonical_name(name)
    t0 = time.time()
    results = _METRICS[canon](opts)
    clash = {"metric", "total_time", "seed"} & set(results)
    if clash:
        raise RuntimeError(f"metric {canon} returned reserved keys {sorted(clash)}")
    return {**results, "metric": canon, "total_time": round(time.time() - t0, 3), "seed": opts.seed}


def report_metric(result: dict[str, Any], run_dir: str | os.PathLike | None, snapshot: str | None = None,
                  **extra) -> None:
    """Append ``result`` (from ``calc_metric``) as one line to ``run_dir/metric-<name>.jsonl``."""
    if run_dir is None:
        return
    line = {**result, "snapshot": snapshot, **extra}
    path = Path(run_dir) / f"metric-{result['metric']}.jsonl"
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")
