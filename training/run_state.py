"""Run folders and training-state checkpoints: append-only runs, atomic states, exact resume; the log.

A run folder is ``<outdir>/<NNNNN>-<desc>/``. Its training state files
``training-state-<images seen:09d>.pt`` hold the ``state_dict`` of every network and optimizer plus
the loop's counters; they are written atomically, the newest two are kept, and they are read
with ``torch.load(weights_only=True)`` (no code from the file runs). A truncated or otherwise
unreadable newest state is reported and the previous one used.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dnnlib.util import atomic_path

RUN_DIR_RE = re.compile(r"^(\d{5})-(.+)$")
STATE_RE = re.compile(r"^training-state-(\d{9,})\.pt$")
STATE_FORMAT = 1
# Options that do not change the training trajectory: a run may be continued with other values
# (e.g. a larger --total-kimg trains an existing run longer).
NON_TRAJECTORY_OPTIONS = frozenset({"total_kimg", "metrics", "inception", "guard_kimg", "workers", "snap"})


def new_run_dir(outdir: str | os.PathLike, desc: str) -> Path:
    """Create ``<outdir>/<next index>-<desc>`` (indices never reused)."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    ids = [int(m.group(1)) for p in outdir.iterdir() if (m := RUN_DIR_RE.match(p.name)) and p.is_dir()]
    run_dir = outdir / f"{max(ids, default=-1) + 1:05d}-{desc}"
    run_dir.mkdir()
    return run_dir


def state_files(run_dir: Path) -> list[Path]:
    """Training-state files of a run, newest first."""
    found = [(int(m.group(1)), p) for p in run_dir.glob("training-state-*.pt") if (m := STATE_RE.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def _trajectory(options: dict[str, Any]) -> dict[str, Any]:
    # An option set to None or False means "off / the default", as does its absence in a run made before
    # it existed.
    return {k: v for k, v in options.items() if k not in NON_TRAJECTORY_OPTIONS and v is not None and v is not False}


def find_resumable_run(outdir: str | os.PathLike, options: dict[str, Any]) -> Path | None:
    """The newest run in ``outdir`` with a training state, started with the same options (up to
    ``NON_TRAJECTORY_OPTIONS``)."""
    outdir = Path(outdir)
    if not outdir.is_dir():
        return None
    runs = sorted((p for p in outdir.iterdir() if RUN_DIR_RE.match(p.name) and p.is_dir()), reverse=True)
    for run in runs:
        try:
            saved = json.loads((run / "training_options.json").read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if _trajectory(saved) == _trajectory(options) and state_files(run):
            return run
    return None


def save_training_state(run_dir: Path, nimg: int, state: dict[str, Any], keep: int = 2) -> Path:
    path = run_dir / f"training-state-{nimg:09d}.pt"
    with atomic_path(path) as tmp:
        torch.save({"format": STATE_FORMAT, **state}, tmp)
    for old in state_files(run_dir)[keep:]:
        old.unlink(missing_ok=True)
    return path


def load_training_state(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError(f"{path}: not a training state of this project")
    return state


def load_latest_training_state(run_dir: Path, log: Callable[[str], None],
                               map_location: str | torch.device = "cpu") -> tuple[dict[str, Any], Path] | None:
    """The newest readable training state of ``run_dir`` (skipping unreadable ones), or None."""
    for path in state_files(run_dir):
        try:
            return load_training_state(path, map_location), path
        except Exception as e:   # truncated zip, wrong content: fall back to the previous state
            log(f"WARNING: cannot read {path.name} ({type(e).__name__}: {e}); trying the previous state")
    return None


class Logger:
    """Prints and appends to ``log.txt`` (give ``None`` on processes other than the main one)."""

    def __init__(self, path: Path | None):
        self.file = open(path, "a", encoding="utf-8") if path is not None else None

    def __call__(self, msg: str) -> None:
        if self.file is not None:
            print(msg, flush=True)
            self.file.write(msg + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def environment() -> dict[str, Any]:
    """What a run ran on, for ``environment.json``."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, text=True,
                             capture_output=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        sha = None
    return {"git_sha": sha, "python": sys.version.split()[0], "torch": torch.__version__,
            "numpy": np.__version__, "platform": platform.platform()}


def peak_rss_gb() -> float:
    try:
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    except (ImportError, AttributeError):
        return 0.0


def broadcast_str(value: str, world_size: int) -> str:
    """Rank 0's ``value`` on every process."""
    if world_size == 1:
        return value
    obj = [value]
    torch.distributed.broadcast_object_list(obj, src=0)
    return obj[0]
