"""Run folders and training-state checkpoints: append-only runs, atomic states, exact resume; error lines.

A run folder is ``<outdir>/<NNNNN>-<desc>/``. Its training state files
``training-state-<images seen:09d>.pt`` hold the ``state_dict`` of every network and optimizer plus
the loop's counters; they are written atomically, the newest two are kept, and they are read
with ``torch.load(weights_only=True)`` (no code from the file runs). A truncated or otherwise
unreadable newest state is reported and the previous one used.

Failures are reported as one clear error naming the file: a run folder that cannot be created, a file
of the run that cannot be written (``RunWriteError``), a state that does not fit the networks. A start
that fails removes the run folder it created (``NewRun``), and a snapshot never replaces a file that
its run did not write (``check_snapshot_target``). Snapshot names (``snapshot_tag``) are unique per
image count and sort in training order. ``training/run.py`` puts these together for the training loops.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dnnlib.util import OutputPathError, atomic_path
from networks.checkpoint import CheckpointError, read_header

RUN_DIR_RE = re.compile(r"^(\d{5})-(.+)$")
STATE_RE = re.compile(r"^training-state-(\d{9,})\.pt$")
STATE_FORMAT = 1
# Options that do not change the training trajectory: a run may be continued with other values
# (e.g. a larger --total-kimg trains an existing run longer). ``cfg`` names where the defaults came from;
# the options it set are recorded and compared one by one.
NON_TRAJECTORY_OPTIONS = frozenset({"total_kimg", "minutes", "metrics", "inception", "guard_kimg", "workers", "snap",
                                    "cfg"})


class RunWriteError(OSError):
    """A file of a run could not be written (disk full, read-only folder, ...); the message names it."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its type when it has none)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _cause(error: BaseException) -> str:
    return error.strerror if isinstance(error, OSError) and error.strerror else first_line(error)


@contextmanager
def writing(path: Path, errors: tuple[type[BaseException], ...] = (OSError,)) -> Iterator[None]:
    """Turn ``errors`` raised while writing ``path`` into a ``RunWriteError`` naming the file and what to do.

    ``torch.save`` reports a full disk as a ``RuntimeError`` ("unexpected pos ..."): pass it in ``errors``
    around writes that go through it.
    """
    try:
        yield
    except RunWriteError:
        raise
    except errors as e:
        raise RunWriteError(f"cannot write {path} ({_cause(e)}); free disk space or make the folder writable, "
                            "then rerun the same command: it continues from the last training state") from e


class NewRun:
    """``<outdir>/<next index>-<desc>`` (indices never reused), which ``discard`` removes again with the
    parents it made.

    Creating it creates ``outdir`` (and missing parents) if needed and picks the next free index; a
    folder or parent that cannot be made is one ``RunWriteError`` naming ``outdir``.
    """

    def __init__(self, outdir: str | os.PathLike, desc: str):
        outdir = Path(outdir)
        self.made = [p for p in [outdir, *outdir.parents] if not p.exists()][::-1]   # outermost first
        try:
            outdir.mkdir(parents=True, exist_ok=True)
            ids = [int(m.group(1)) for p in outdir.iterdir() if (m := RUN_DIR_RE.match(p.name)) and p.is_dir()]
            self.path = outdir / f"{max(ids, default=-1) + 1:05d}-{desc}"
            self.path.mkdir()
        except OSError as e:
            self._remove_made_parents()
            raise RunWriteError(f"cannot create a run folder in {outdir} ({_cause(e)}); choose a writable "
                                "--outdir") from e
        self.made.append(self.path)

    def _remove_made_parents(self) -> None:
        for folder in reversed(self.made):
            try:
                folder.rmdir()              # only if still empty
            except OSError:
                break

    def discard(self) -> None:
        """Remove the run folder and the parents this start made; nothing else."""
        shutil.rmtree(self.path, ignore_errors=True)
        self.made.remove(self.path)
        self._remove_made_parents()


def start_run_dir(outdir: str | os.PathLike, desc: str, options: dict[str, Any]) -> NewRun:
    """A new run folder holding ``training_options.json`` and ``environment.json``; nothing is left on failure."""
    run = NewRun(outdir, desc)
    with discard_on_failure(run):
        for name, content in (("training_options.json", options), ("environment.json", environment())):
            with writing(run.path / name):
                (run.path / name).write_text(json.dumps(content, indent=2) + "\n")
    return run


@contextmanager
def discard_on_failure(run: NewRun | None) -> Iterator[None]:
    """Remove ``run`` (a run folder this start created; None: nothing) if the block raises."""
    try:
        yield
    except BaseException:
        if run is not None:
            run.discard()
        raise


def state_files(run_dir: Path) -> list[Path]:
    """Training-state files of a run, newest first."""
    found = [(int(m.group(1)), p) for p in run_dir.glob("training-state-*.pt") if (m := STATE_RE.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


# Option names of runs made before the vocabulary was unified (2026-12-06): the bit count was c_dim (GAN) or bits
# (autoencoder); such runs still continue.
LEGACY_OPTION_NAMES = {"c_dim": "n_bits", "bits": "n_bits"}


def _trajectory(options: dict[str, Any]) -> dict[str, Any]:
    # An option set to None or False means "off / the default", as does its absence in a run made before
    # it existed.
    options = {LEGACY_OPTION_NAMES.get(k, k) if "n_bits" not in options else k: v for k, v in options.items()}
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
    """Write the state atomically (a failure is a ``RunWriteError``; the previous states stay), keep ``keep``."""
    path = run_dir / f"training-state-{nimg:09d}.pt"
    with writing(path, (OSError, RuntimeError)), atomic_path(path) as tmp:
        torch.save({"format": STATE_FORMAT, **state}, tmp)
    for old in state_files(run_dir)[keep:]:
        old.unlink(missing_ok=True)
    return path


@contextmanager
def restoring(path: Path) -> Iterator[None]:
    """Turn a training state that does not fit the networks (or lacks entries) into one clear ``ValueError``."""
    try:
        yield
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"the training state {path} does not fit this run's networks ({first_line(e)}); move it "
                         "out of the run folder to continue from the previous state, or start a new run with "
                         "--resume none") from e


def snapshot_tag(nimg: int) -> str:
    """The progress part of snapshot and grid names: ``000052`` at 52 kimg, ``000052_256`` at 52.256 kimg.

    Whole kimg keep the names of earlier versions. Image counts are integers, so three decimals are exact
    and no two counts share a tag; and names sort in training order: ``_`` sorts after the ``.`` that
    follows a whole-kimg tag (``...000052.safetensors`` < ``...000052_256.safetensors`` < ``...000053...``).
    """
    whole, frac = divmod(nimg, 1000)
    return f"{whole:06d}" if frac == 0 else f"{whole:06d}_{frac:03d}"


def check_snapshot_target(path: Path, run_name: str, nimg: int) -> None:
    """Refuse (``OutputPathError``) to replace a file at ``path`` that this run did not write.

    The one file a run may replace is its own snapshot of the same progress, written before an
    interruption that came before the training state was saved (resuming then writes it again).
    """
    if not (path.exists() or path.is_symlink()):
        return
    try:
        extra = {} if path.is_symlink() or not path.is_file() else read_header(path)["extra"]
    except CheckpointError:
        extra = {}
    if not (isinstance(extra, dict) and extra.get("run") == run_name and extra.get("kimg") == nimg / 1000):
        raise OutputPathError(f"{path} exists and was not written by this run; refusing to overwrite it: move it "
                              "away, or train into another --outdir")


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


# What the training CLIs turn into one ``error:`` line (anything else is a bug, and keeps its traceback).
TRAINING_ERRORS = (ValueError, OSError, MemoryError, torch.OutOfMemoryError, KeyboardInterrupt,
                   torch.multiprocessing.ProcessRaisedException, torch.multiprocessing.ProcessExitedException)
_RESUME_HINT = "rerun the same command to continue from the last training state"


def error_line(error: BaseException) -> str:
    """One line saying what stopped a training run, for ``error: ...`` (see ``TRAINING_ERRORS``)."""
    text = str(error)
    if "Traceback (most recent call last)" in text:
        # Raised again from another process (a spawned trainer, a DataLoader worker): the message ends with
        # that process's traceback, whose last line is "module.Type: message".
        last = [line for line in text.splitlines() if line.strip()][-1]
        return re.sub(r"^[\w.]+: ", "", last.strip())
    if isinstance(error, torch.multiprocessing.ProcessExitedException):
        return f"a training process stopped ({first_line(error)}); {_RESUME_HINT}"
    if isinstance(error, KeyboardInterrupt):
        return f"interrupted; {_RESUME_HINT}"
    if isinstance(error, (MemoryError, torch.OutOfMemoryError)):
        return (f"out of memory while training ({first_line(error)}); use a smaller --batch-gpu (the same results "
                "in more rounds per step) or a device with more memory, then rerun the same command")
    if isinstance(error, OSError) and not isinstance(error, RunWriteError) and error.filename and error.strerror:
        return f"{error.strerror}: {error.filename}; check that path and its permissions"
    return " ".join(text.split()) or type(error).__name__


def environment() -> dict[str, Any]:
    """What a run ran on, for ``environment.json``."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, text=True,
                             capture_output=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        sha = None
    from training.configs import native_bf16  # (configs imports click; only a starting run needs this)

    return {"git_sha": sha, "python": sys.version.split()[0], "torch": torch.__version__,
            "numpy": np.__version__, "platform": platform.platform(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_bf16_native": native_bf16("cpu")[0]}
