"""Running metrics: one name, one function, one JSONL file per run.

A metric is a function ``fn(opts: MetricOptions) -> dict`` of plain numbers (and short strings),
registered under its name with ``@register_metric`` (``metrics/metric_registry.py``).
``calc_metric`` runs one and adds ``metric`` (its name), ``total_time`` (s) and ``seed`` to the result;
``report_metric`` appends it, with the snapshot and anything else given, as one flat JSON line to
``<run_dir>/metric-<name>.jsonl``.
The training loop (``--metrics``) and ``calc_metrics.py`` use the same two calls, so a metric
computed during training and afterwards is the same computation.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

# The modules that define metrics register them on import.
from metrics import fid, fingerprint, quality, robustness  # noqa: F401
from metrics.metric_registry import (
    _ALIASES,
    _FINGERPRINT_ONLY,
    _METRICS,
    _NEEDS_INCEPTION,
    MetricOptions,
    register_metric,
)

__all__ = ["MetricOptions", "calc_metric", "canonical_name", "fingerprint_only", "list_metrics", "needs_inception",
           "register_metric", "report_metric"]


def canonical_name(name: str) -> str:
    """The registered name of ``name`` (resolving aliases); ValueError naming the choices if unknown."""
    name = _ALIASES.get(name, name)
    if name not in _METRICS:
        raise ValueError(f"unknown metric {name!r}; available: {', '.join(list_metrics())}")
    return name


def fingerprint_only(name: str) -> bool:
    """Whether metric ``name`` measures the fingerprint only (nothing to measure for a plain generator)."""
    return canonical_name(name) in _FINGERPRINT_ONLY


def needs_inception(name: str) -> bool:
    """Whether metric ``name`` needs an Inception network (``MetricOptions.inception``)."""
    return canonical_name(name) in _NEEDS_INCEPTION


def list_metrics() -> list[str]:
    """Registered metric names and aliases, sorted."""
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
