"""Small helpers shared by the tools: atomic writes, output checks, hashing, seeds."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np


def make_parents(dest: Path) -> list[Path]:
    """Create the missing folders above ``dest``; returns them, deepest first (for ``remove_empty``)."""
    missing = [p for p in dest.parents if not p.exists()]
    dest.parent.mkdir(parents=True, exist_ok=True)
    return missing


def remove_empty(folders: list[Path]) -> None:
    """Remove the folders a failed write created (deepest first), as long as they are still empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _default_mode(full: int) -> int:
    """The mode an ordinary open() / mkdir() would give: ``full & ~umask`` (mkstemp and mkdtemp use 0600/0700)."""
    umask = os.umask(0)
    os.umask(umask)
    return full & ~umask


@contextlib.contextmanager
def _temporary_beside(dest: str | os.PathLike, make: Callable[[Path], Path],
                      remove: Callable[[Path], None]) -> Iterator[tuple[Path, Path]]:
    """Yield ``(dest, tmp)``: a temporary made by ``make`` beside ``dest`` (missing parents created). Whatever
    happens, a temporary still there at the end is removed; on failure, so are the parents it created."""
    dest = Path(dest)
    created = make_parents(dest)
    try:
        tmp = make(dest)
    except OSError:
        remove_empty(created)
        raise
    ok = False
    try:
        yield dest, tmp
        ok = True
    finally:
        if tmp.exists() or tmp.is_symlink():
            remove(tmp)
        if not ok:
            remove_empty(created)


def _new_file(dest: Path) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    return Path(tmp)


def _new_dir(dest: Path) -> Path:
    return Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success rename it onto ``dest`` atomically.

    On any exception (including KeyboardInterrupt) the temporary file is removed and
    ``dest`` is left untouched, so readers never see a half-written file.
    """
    with _temporary_beside(dest, _new_file, Path.unlink) as (dest, tmp):
        yield tmp
        os.chmod(tmp, _default_mode(0o666))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dest)


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a new temporary folder beside ``dest``; on success it replaces ``dest`` (kept until the swap).

    The caller decides beforehand whether an existing ``dest`` may be replaced. On any exception the
    temporary folder is removed and ``dest`` is left as it was. The old ``dest`` is renamed aside, the new
    one renamed into place, and only then is the old one deleted.
    """
    with _temporary_beside(dest, _new_dir, lambda t: shutil.rmtree(t, ignore_errors=True)) as (dest, tmp):
        yield tmp
        os.chmod(tmp, _default_mode(0o777))
        old = None
        if dest.exists() or dest.is_symlink():
            old = dest.with_name(f"{tmp.name[:-4]}.old")
            os.replace(dest, old)
        os.replace(tmp, dest)
        if old is not None:
            shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()


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


def file_head(path: str | os.PathLike, size: int = 4096) -> bytes:
    """The first ``size`` bytes of a file (b"" when it cannot be read)."""
    try:
        with open(path, "rb") as f:
            return f.read(size)
    except OSError:
        return b""


def refuse_foreign(path: str | os.PathLike | None, option: str, what: str, is_ours: Callable[[Path], bool]) -> None:
    """Refuse to replace ``path`` unless it is missing or ``is_ours(path)`` says this tool wrote it.

    ``what`` names the kind of file (``"results CSV of detect_attribute.py"``); ``is_ours`` looks at the
    file (cheaply: ``file_head``). A folder, a link to a folder or any file that does not look like ours is
    refused with an ``OutputPathError``; nothing is written.
    """
    if path is None:
        return
    path = Path(path)
    if not (path.exists() or path.is_symlink()):
        return
    if path.is_file() and is_ours(path):
        return
    kind = "a folder" if path.is_dir() else "a file that is not a " + what
    raise OutputPathError(f"{option} {path} exists and is {kind}; refusing to overwrite it: remove it or choose "
                          f"another {option}")


def csv_header_is(columns) -> Callable[[Path], bool]:
    """An ``is_ours`` test for ``refuse_foreign``: the file's first line is exactly these CSV columns."""
    want = ",".join(columns).encode()

    def test(path: Path) -> bool:
        return file_head(path, len(want) + 2).splitlines()[:1] == [want]
    return test


def json_starts_with(*keys: str) -> Callable[[Path], bool]:
    """An ``is_ours`` test for ``refuse_foreign``: a JSON object whose first keys are these, in order."""
    def test(path: Path) -> bool:
        head = file_head(path).decode("utf-8", "replace")
        pos = 0
        if not head.lstrip().startswith("{"):
            return False
        for key in keys:
            pos = head.find(f'"{key}":', pos)
            if pos < 0:
                return False
        return True
    return test


def is_png(path: Path) -> bool:
    """An ``is_ours`` test for figures: the file is a PNG (a figure is redrawn in place; anything else is kept)."""
    return file_head(path, 8) == b"\x89PNG\r\n\x1a\n"


def check_figure_output(out: Path, **inputs) -> None:
    """For the figure scripts: ``--out`` is not an input, and replaces only a PNG; raises ``OutputPathError``."""
    check_outputs({"--out": out}, {f"--{k.replace('_', '-')}": v for k, v in inputs.items()})
    refuse_foreign(out, "--out", "PNG image", is_png)


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
