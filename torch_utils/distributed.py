"""Process-group helpers: one code path for 1 process, N spawned processes, or torchrun."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class ProcessInfo:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


def init_process(rank: int, world_size: int, device_kind: str, init_method: str | None) -> ProcessInfo:
    """Join the process group (NCCL on CUDA, gloo on CPU) and pick this rank's device."""
    if device_kind == "cuda":
        local = int(os.environ.get("LOCAL_RANK", rank))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if world_size > 1:
        backend = "nccl" if device_kind == "cuda" else "gloo"
        dist.init_process_group(backend, init_method=init_method or "env://", rank=rank, world_size=world_size)
    return ProcessInfo(rank, world_size, device)


def all_reduce_sum_(tensors: list[torch.Tensor], info: ProcessInfo) -> None:
    """Sum tensors over all processes, in place (one flat collective)."""
    if info.world_size == 1 or not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for t in tensors:
        t.copy_(flat[offset:offset + t.numel()].reshape(t.shape))
        offset += t.numel()


def all_reduce_grads_(params: list[torch.nn.Parameter], info: ProcessInfo) -> None:
    """Sum the gradients of ``params`` over all processes.

    Parameters without a gradient are left alone (so an optimizer skips them, as it would in a
    single process); which ones have gradients must be the same on every process, as it is when
    all processes run the same phase of the same step.
    """
    all_reduce_sum_([p.grad for p in params if p.grad is not None], info)


def barrier(info: ProcessInfo) -> None:
    if info.world_size > 1:
        dist.barrier()


def shutdown(info: ProcessInfo) -> None:
    if info.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def _spawned(rank: int, loop: Callable, opts, world_size: int, device_kind: str, init_file: str, kwargs: dict) -> None:
    info = init_process(rank, world_size, device_kind, f"file://{init_file}")
    try:
        loop(opts, info, **kwargs)
    finally:
        shutdown(info)


def launch(loop: Callable, opts, world_size: int, device_kind: str, **kwargs) -> None:
    """Run ``loop(opts, info, **kwargs)``: in this process (1 process, or one rank under torchrun),
    or in ``world_size`` spawned processes joined through a file in a temporary folder.
    ``loop`` must be a module-level function (spawned processes import it)."""
    if launched_by_torchrun():
        info = init_process(int(os.environ["RANK"]), world_size, device_kind, None)
        try:
            loop(opts, info, **kwargs)
        finally:
            shutdown(info)
    elif world_size == 1:
        loop(opts, ProcessInfo(device=torch.device(device_kind)), **kwargs)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            torch.multiprocessing.spawn(_spawned, args=(loop, opts, world_size, device_kind,
                                                        os.path.join(tmp, "init"), kwargs), nprocs=world_size)
