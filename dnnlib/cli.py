"""Helpers shared by the command-line tools: one way to fail, one way to pick a device, one way to parse."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click


def fail(error: Exception | str) -> NoReturn:
    """Print ``error: ...`` on stderr and exit with status 1 (bad input, nothing half-written)."""
    click.echo(f"error: {error}", err=True)
    sys.exit(1)


class FiniteFloat(click.FloatRange):
    """A click float range that also refuses nan and inf (``FloatRange`` lets nan through every bound)."""

    name = "finite float"

    def convert(self, value, param, ctx):
        v = super().convert(value, param, ctx)
        if not math.isfinite(v):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return v


def resolve_device(name: str) -> str:
    """'auto' -> 'cuda' when available, else 'cpu'; 'cuda' without a GPU is a ValueError."""
    import torch  # only the CLIs that take --device pay for it

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA is not available")
    return name


def device_param(name: str) -> str:
    """``--device`` auto/cpu/cuda -> a torch device name; 'cuda' without a GPU is a usage error."""
    try:
        return resolve_device(name)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--device") from None


def parsed_by(parse: Callable[[str], Any]):
    """A click option callback: ``parse(value)`` (None stays None); its ValueError becomes a usage error."""
    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
        if value is None:
            return None
        try:
            return parse(value)
        except ValueError as e:
            raise click.BadParameter(str(e), ctx=ctx, param=param) from None
    return callback
