"""Helpers shared by the command-line tools: one way to fail, one way to pick a device."""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from torch_utils.misc import resolve_device


def fail(error: Exception | str) -> NoReturn:
    """Print ``error: ...`` on stderr and exit with status 1 (bad input, nothing half-written)."""
    click.echo(f"error: {error}", err=True)
    sys.exit(1)


def device_param(name: str) -> str:
    """``--device`` auto/cpu/cuda -> a torch device name; 'cuda' without a GPU is a usage error."""
    try:
        return resolve_device(name)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--device") from None
