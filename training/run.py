"""One training run as one process sees it: the scaffold that both training loops share.

``Run`` does what every loop does around its training step, written once:

* the run folder: the newest run in ``outdir`` with the same options is continued, or a new one is made
  (``training/run_state.py``); a start that fails removes the run folder it made (``Run.starting``);
* resuming from the newest readable training state, and saving one at the end of every tick;
* the log (``log.txt``), the tick's statistics and timing, one ``stats.jsonl`` row per tick (and
  TensorBoard scalars when tensorboard is installed), the tick's report line and a warning given once;
* network snapshots (never over a file the run did not write) and their metric lines.

What a loop trains stays in the loop, which reads as one story::

    run = Run(info, opts.outdir, desc, opts.to_json(), counters, parts, ...)
    with run.starting():                       # a failure in here removes a new run folder
        resumed = run.resume(device)
        batches = endless_batches(dataset, ...)
    while not run.done:
        ...one step...                         # advances counters["cur_nimg"]
        run.accumulate(stats)
        if not run.tick_due():
            continue
        row = run.end_tick()
        run.report(row, "bit_acc ...")
        if run.snapshot_due(opts.snap):
            path = run.save_snapshot("network", save_grids, G=G, ...)
            run.report_metric(result, path)
        run.save_state()
    return run.finish()

``counters`` is the loop's dict (saved in every training state and restored from it); besides the loop's
own entries it holds ``cur_nimg`` (images trained on), ``cur_tick`` and ``tick_start_nimg``, which ``Run``
reads and advances at each tick. ``parts`` names what a training state holds: modules and optimizers
(their ``state_dict``) and tensors updated in place (saved on the CPU, copied back on resume).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError

from data.dataset import InfiniteSampler
from metrics import metric_main
from metrics.report import plot_run
from networks.checkpoint import save_network
from torch_utils import distributed as dist_utils
from training.run_state import (
    check_snapshot_target,
    discard_on_failure,
    find_resumable_run,
    load_latest_training_state,
    restoring,
    save_training_state,
    snapshot_tag,
    start_run_dir,
    writing,
)


def split_batch(batch: int, batch_gpu: int | None, world_size: int) -> tuple[int, int]:
    """(round size, rounds per process per step) of a global ``batch`` over ``world_size`` processes.

    ``batch_gpu`` None: ``batch / world_size``, one round per step.
    """
    batch_gpu = batch_gpu or batch // world_size
    if batch % (batch_gpu * world_size) != 0:
        raise ValueError(f"batch {batch} must be a multiple of batch_gpu {batch_gpu} x processes {world_size}")
    return batch_gpu, batch // (batch_gpu * world_size)


def endless_batches(dataset: torch.utils.data.Dataset, batch: int, seed: int, step: int, workers: int,
                    device: torch.device) -> Iterator:
    """Global batches of ``dataset`` from step ``step`` on, endlessly.

    The order depends only on (seed, position) (``InfiniteSampler``), so a resumed run gets the batches
    it would have got without the interruption. Every process reads the whole global batch and keeps its
    own rounds' slice: simple and exactly the single-process order (the decoding cost is small next to a
    training step).
    """
    sampler = InfiniteSampler(len(dataset), seed, start=step * batch)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=workers,
                                         pin_memory=device.type == "cuda", persistent_workers=workers > 0,
                                         prefetch_factor=2 if workers else None)
    return iter(loader)


def sanitize_grads_(params: Iterable[torch.Tensor]) -> None:
    """The nan guard before an optimizer step: NaN gradients become 0, infinite ones +-1e5 (in place)."""
    for p in params:
        if p.grad is not None:
            torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)


def peak_rss_gb() -> float:
    try:
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    except (ImportError, AttributeError):
        return 0.0


def cuda_max_alloc_gb(device: torch.device) -> float:
    """The most memory allocated on ``device`` so far (0 off CUDA)."""
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0


def broadcast_str(value: str, world_size: int) -> str:
    """Rank 0's ``value`` on every process."""
    if world_size == 1:
        return value
    obj = [value]
    torch.distributed.broadcast_object_list(obj, src=0)
    return obj[0]


class Logger:
    """Prints and appends to ``log.txt`` (give ``None`` on processes other than the main one)."""

    def __init__(self, path: Path | None):
        self.path = path
        with writing(path):
            self.file = open(path, "a", encoding="utf-8") if path is not None else None

    def __call__(self, msg: str) -> None:
        if self.file is not None:
            print(msg, flush=True)
            with writing(self.path):
                self.file.write(msg + "\n")
                self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


class Run:
    """The run folder, log, statistics, snapshots and training states of one training run (one process).

    Creating it picks the run folder on the main process (with ``resume`` the newest run in ``outdir``
    started with the same ``options`` that has a training state, else a new ``<NNNNN>-<desc>`` holding
    the options) and tells the others, then opens the log. Every process makes one; only the main one
    writes files and log lines.

    ``total_kimg`` is the training length, ``tick_kimg`` the interval of ticks (report, statistics row,
    training state). ``minutes`` (None: no limit) ends training at the first tick after that much wall time
    (``counters["wall_ms"]``: from the end of the start through every tick, its snapshot, metrics and state
    included, summed over every start of the run); the main process's clock decides for all, so every
    process stops at the same tick.
    """

    def __init__(self, info: dist_utils.ProcessInfo, outdir: str, desc: str, options: dict[str, Any],
                 counters: dict[str, int], parts: Mapping[str, Any], *, total_kimg: float, tick_kimg: float,
                 resume: bool = True, minutes: float | None = None):
        self.info, self.options, self.counters, self.parts = info, options, counters, parts
        counters.setdefault("wall_ms", 0)           # Wall time of the ticks so far (states of older runs: 0).
        self.total_nimg = int(total_kimg * 1000)
        self.tick_kimg = tick_kimg
        self.max_ms = None if minutes is None else int(minutes * 60_000)
        self._time_up = False
        self.tb = None                              # TensorBoard writer (main process, tensorboard installed)
        self.warned = False
        self._new = None                            # The folder this start made (None: a continued run).
        path = None
        if info.is_main:
            path = find_resumable_run(outdir, options) if resume else None
            if path is None:
                self._new = start_run_dir(outdir, desc, options)
                path = self._new.path
        self.dir = Path(broadcast_str(str(path) if path else "", info.world_size))
        with discard_on_failure(self._new):
            self.log = Logger(self.dir / "log.txt" if info.is_main else None)
        self._tick_stats: dict[str, list[float]] = {}
        self._tick_start = self._wall_mark = time.time()

    # --- Start -------------------------------------------------------------------------------------
    @contextmanager
    def starting(self) -> Iterator[None]:
        """The rest of the start: a failure inside removes the run folder this start made (a continued run
        is left as it was). Then TensorBoard opens, and the first tick's clock starts."""
        with discard_on_failure(self._new):
            try:
                yield
            except BaseException:
                self.log.close()
                raise
            if self.info.is_main:
                try:
                    from torch.utils.tensorboard import SummaryWriter
                    self.tb = SummaryWriter(str(self.dir))
                except ImportError:
                    pass
        self._tick_start = self._wall_mark = time.time()

    def resume(self, map_location: str | torch.device = "cpu") -> bool:
        """Load the newest readable training state into the parts and the counters; False when there is none.

        A state that does not fit (other shapes, missing entries) is one ``ValueError`` naming the file.
        """
        loaded = load_latest_training_state(self.dir, self.log, map_location=map_location)
        if loaded is None:
            return False
        state, path = loaded
        with restoring(path):
            for name, part in self.parts.items():
                if isinstance(part, torch.Tensor):
                    part.copy_(state[name])
                else:
                    part.load_state_dict(state[name])
            self.counters.update(state["counters"])
        self._time_up = self.max_ms is not None and self.counters["wall_ms"] >= self.max_ms
        self.log(f"Resuming {self.dir.name} from {path.name} at {self.counters['cur_nimg'] / 1000:.1f} kimg")
        return True

    # --- Ticks -------------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self._time_up or self.counters["cur_nimg"] >= self.total_nimg

    def accumulate(self, stats: Mapping[str, float | torch.Tensor]) -> None:
        """Add one step's statistics to the tick's (the row holds their means over the tick)."""
        for k, v in stats.items():
            self._tick_stats.setdefault(k, []).append(float(v))

    def tick_due(self) -> bool:
        """Whether this step ends a tick: ``tick_kimg`` trained since the last one, or training done."""
        c = self.counters
        return self.done or c["cur_nimg"] >= c["tick_start_nimg"] + self.tick_kimg * 1000

    def end_tick(self, progress: Mapping[str, float] | None = None,
                 resources: Mapping[str, float] | None = None) -> dict[str, float]:
        """The tick's ``stats.jsonl`` row, appended to the file (and TensorBoard) by the main process.

        The row: the tick's mean of every statistic (sorted by name), then progress (``progress``: more of
        the loop's own after tick and kimg), timing, resources (``resources``: more after the peak memory)
        and the time. The next tick starts counting here.
        """
        now = time.time()
        c = self.counters
        seconds = now - self._tick_start
        c["wall_ms"] += int((now - self._wall_mark) * 1000)
        self._wall_mark = now
        if self.max_ms is not None:     # The main process's clock decides, so that all stop at this tick.
            self._time_up = broadcast_str(str(c["wall_ms"] >= self.max_ms), self.info.world_size) == "True"
        row = {k: float(np.mean(v)) for k, v in sorted(self._tick_stats.items())}
        row.update({"Progress/tick": c["cur_tick"], "Progress/kimg": c["cur_nimg"] / 1000,
                    "Progress/wall_min": c["wall_ms"] / 60_000, **(progress or {}),
                    "Timing/sec_per_tick": seconds,
                    "Timing/img_per_sec": (c["cur_nimg"] - c["tick_start_nimg"]) / max(seconds, 1e-8),
                    "Resources/peak_rss_gb": peak_rss_gb(), **(resources or {}), "timestamp": now})
        self._tick_stats = {}
        if self.info.is_main:
            with writing(self.dir / "stats.jsonl"), open(self.dir / "stats.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            if self.tb is not None:
                for k, v in row.items():
                    if "/" in k:
                        self.tb.add_scalar(k, v, global_step=c["cur_nimg"])
                self.tb.flush()
        c["cur_tick"] += 1
        c["tick_start_nimg"] = c["cur_nimg"]
        return row

    def report(self, row: Mapping[str, float], fields: str) -> None:
        """The tick's line in the log: tick, kimg, the loop's ``fields``, speed."""
        self.log(f"tick {row['Progress/tick']:<4d} kimg {row['Progress/kimg']:<8.1f} {fields} "
                 f"img/s {row['Timing/img_per_sec']:.1f} sec/tick {row['Timing/sec_per_tick']:.1f}")

    def warn_once(self, message: str) -> None:
        """Log ``message`` as a framed WARNING, the first time only (a guard's advice is given once)."""
        if not self.warned:
            self.warned = True
            self.log("!" * 80 + "\nWARNING: " + message + "\n" + "!" * 80)

    # --- Snapshots and training states -------------------------------------------------------------
    def snapshot_due(self, snap: int) -> bool:
        """Whether this process writes a snapshot at the end of this tick: the main one does, every ``snap``
        ticks and when training is done."""
        return self.info.is_main and (self.done or self.counters["cur_tick"] % max(snap, 1) == 0)

    def save_snapshot(self, prefix: str, save_grids: Callable[[str], None], **networks: torch.nn.Module) -> Path:
        """Write ``<prefix>-snapshot-<tag>.safetensors`` holding ``networks`` (``snapshot_tag`` of the images
        seen), after ``save_grids(tag)``; a file there that this run did not write stops the run first."""
        nimg = self.counters["cur_nimg"]
        tag = snapshot_tag(nimg)
        path = self.dir / f"{prefix}-snapshot-{tag}.safetensors"
        check_snapshot_target(path, self.dir.name, nimg)
        save_grids(tag)
        with writing(path, (OSError, RuntimeError, SafetensorError)):
            save_network(path, extra={"kimg": nimg / 1000, "run": self.dir.name, "options": self.options},
                         **networks)
        return path

    def report_metric(self, result: dict[str, Any], snapshot: Path, note: str = "", **extra: Any) -> None:
        """Append ``result`` (``metric``: its name) to ``metric-<name>.jsonl`` with the snapshot's name, kimg
        and ``extra`` (``metrics.metric_main.report_metric``), and log its numbers (``note`` in brackets)."""
        name = result["metric"]
        with writing(self.dir / f"metric-{name}.jsonl"):
            metric_main.report_metric(result, self.dir, snapshot.name, kimg=self.counters["cur_nimg"] / 1000,
                                      **extra)
        values = " ".join(f"{k} {v:.4f}" for k, v in result.items()
                          if isinstance(v, float) and k not in ("kimg", "total_time"))
        self.log(f"metric {name}{f' ({note})' if note else ''}: {values}")

    def plot_metrics(self) -> None:
        """Redraw ``metrics.png`` from the run's metric files (``metrics.report.plot_run``), when there are any."""
        with writing(self.dir / "metrics.png"):
            plot_run(self.dir)

    def save_state(self) -> None:
        """End the tick: the main process writes the training state (the parts and the counters; the newest
        two are kept), every process waits for it, and the next tick's clock starts."""
        if self.info.is_main:
            state = {name: part.detach().cpu() if isinstance(part, torch.Tensor) else part.state_dict()
                     for name, part in self.parts.items()}
            save_training_state(self.dir, self.counters["cur_nimg"], {**state, "counters": dict(self.counters)})
        dist_utils.barrier(self.info)
        self._tick_start = time.time()

    def finish(self) -> Path:
        """Log the end, close the log and TensorBoard; the run folder."""
        self.log(f"Done: {self.counters['cur_nimg'] / 1000:.1f} kimg in {self.dir}")
        if self.tb is not None:
            self.tb.close()
        self.log.close()
        return self.dir
