"""Small helpers shared by the tools: atomic writes, output checks, hashing, seeds."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success rename it onto ``dest`` atomically.

    On any exception (including KeyboardInterrupt) the temporary file is removed and
    ``dest`` is left untouched, so readers never see a half-written file.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        # mkstemp (and some writers) create 0600 files: give the result the mode an ordinary
        # open() would have given it, 0666 & ~umask.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


class OutputPathError(ValueError):
    """An output that would overwrite an input, another output, or something the tool did not create."""


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)  # also through hard links
    except OSError:
        return False


def _is_within(child: Path, parent: Path) -> bool:
    try:
        child.relative_to(parent)
        return True
    except ValueError:
        return False


def check_outputs(outputs: dict[str, str | os.PathLike | None],
                  inputs: dict[str, str | os.PathLike | None | list] | None = None) -> None:
    """Refuse outputs that resolve to an input, lie inside an input folder, contain an input, or collide.

    ``outputs`` and ``inputs`` map an option name (``--out``) to a path (``None`` is skipped; an input may be
    a list of paths). Paths are compared after resolving symbolic links (``realpath``) and, where both exist,
    by device and inode (hard links). Raises ``OutputPathError`` naming both options; nothing is written.
    """
    def pairs(mapping):
        for name, value in (mapping or {}).items():
            for v in (value if isinstance(value, (list, tuple)) else [value]):
                if v is not None:
                    yield name, Path(v), Path(os.path.realpath(v))

    ins = list(pairs(inputs))
    outs = list(pairs(outputs))
    for i, (oname, opath, oreal) in enumerate(outs):
        for iname, ipath, ireal in ins:
            if oreal == ireal or _same_file(opath, ipath):
                raise OutputPathError(f"{oname} {opath} is the input {iname} {ipath}; refusing to overwrite it: "
                                      f"choose another {oname}")
            if ipath.is_dir() and _is_within(oreal, ireal) and opath.exists():
                raise OutputPathError(f"{oname} {opath} is a file inside the input folder {iname} {ipath}; "
                                      f"refusing to overwrite it: choose another {oname}")
            if _is_within(ireal, oreal):
                raise OutputPathError(f"{oname} {opath} contains the input {iname} {ipath}; refusing to replace "
                                      f"it: choose another {oname}")
        for oname2, opath2, oreal2 in outs[i + 1:]:
            if oreal == oreal2 or _same_file(opath, opath2):
                raise OutputPathError(f"{oname} and {oname2} are the same file ({opath}); choose two paths")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def seed_for(*keys: int) -> int:
    """A 32-bit seed determined by the integer ``keys`` (e.g. seed, step, phase, round)."""
    return int(np.random.SeedSequence([k & 0xFFFFFFFF for k in keys]).generate_state(1)[0])
