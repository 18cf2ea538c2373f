"""Reading a ``torch.save`` file without running anything in it, within bounds: the file's size, and for the zip
format its entry count and unpacked size (no compression bombs), then ``torch.load(weights_only=True)``, whose
unpickler builds only tensors and plain containers and refuses anything else. Used for the artificial-fingerprinting
release's autoencoders (``art_import``) and NVlabs state dicts (``sg2ada_state_dict``)."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

MAX_SOURCE_BYTES = 2 << 30       # A 1024x1024 StyleGAN2's G, G_ema and D are ~0.4 GB; more is not a network's state.
MAX_ZIP_ENTRIES = 4000           # torch.save's zip holds one entry per tensor storage and a few more.


def _check_zip(path: Path, error: type[Exception], what: str) -> None:
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise error(f"{path}: not a readable torch.save file ({e}); {what}") from e
    if len(infos) > MAX_ZIP_ENTRIES:
        raise error(f"{path}: a zip of {len(infos)} entries, more than a state dict's {MAX_ZIP_ENTRIES}; {what}")
    total = sum(i.file_size for i in infos)
    if total > MAX_SOURCE_BYTES:
        raise error(f"{path}: its entries unpack to {total:,d} bytes, more than the {MAX_SOURCE_BYTES:,d} read; "
                    f"{what}")


def read_weights_only(path: str | os.PathLike, error: type[Exception], what: str) -> Any:
    """The object in ``path`` (tensors and plain containers only, on the CPU); ``error`` with one line ending in
    ``what`` (what the file should have been) when it is too large, unreadable, or holds anything else."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise error(f"{path}: cannot be read ({e.strerror or e}); check the path") from e
    if size > MAX_SOURCE_BYTES:
        raise error(f"{path}: {size:,d} bytes, more than the {MAX_SOURCE_BYTES:,d} read; {what}")
    if zipfile.is_zipfile(path):
        _check_zip(path, error, what)
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:  # whatever the weights-only unpickler refuses or trips on: all mean "not ours"
        lines = [line.strip() for line in str(e).splitlines() if line.strip()] or [type(e).__name__]
        if isinstance(e, pickle.UnpicklingError) and "weights only" in lines[0].lower():
            # torch's first line suggests loading without weights_only: never. Say what was refused instead.
            why = next((line for line in lines if "GLOBAL" in line or "nsupported" in line), lines[-1])
            raise error(f"{path}: refused by weights-only loading, nothing in it was run ({why}); {what}") from e
        raise error(f"{path}: not a readable torch.save file ({type(e).__name__}: {lines[0]}); truncated? "
                    f"{what}") from e
