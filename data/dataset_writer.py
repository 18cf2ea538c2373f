"""The dataset format and its writer: atomic writes, safe replacement, and clean-up after a killed run.

The format (read by ``data.dataset.ImageDataset``) is a zip file, or a folder with the same
contents when the destination has no ``.zip`` suffix:
  * ``NNNNN/imgIIIIIIII.png``: image ``I`` (8 digits) in folder ``I // 1000`` (5 digits), RGB,
    ``R x R``, losslessly stored; sorted names are in index order;
  * ``dataset.json``: ``format`` (``"sgf-dataset"``, written only by this module), ``format_version``,
    ``resolution``, ``num_images``, ``channels`` (3), ``labels`` (``null``), plus what the caller adds
    (``source``, ``recipe``, ``selection``, ``skipped``) and ``source_names`` (by index).
Zip members carry a fixed timestamp, so the same inputs give a byte-identical file.

Safety rules:
  * Everything is written to a temporary file or folder beside the destination, named
    ``.<dest name>.<pid>-<8 hex>.tmp`` and locked (``flock``) while this process writes it; it is
    renamed onto the destination only when complete.
  * An existing destination is refused unless ``force=True``, and even then it is replaced only if
    it is a data set this module wrote: a zip or a folder holding nothing but image files named as
    above and a ``dataset.json`` whose ``format`` is ``"sgf-dataset"``. Never a symbolic link, a text
    file, or a folder with anything else in it. A folder is swapped: the old one is renamed aside
    (``.<dest name>.<pid>-<8 hex>.old``), the new one renamed in, then the old one deleted.
  * A run killed on the spot (SIGKILL, power loss) leaves its temporary behind. The next writer for
    the same destination removes the temporaries whose process is gone and whose lock is free (and
    puts back an aside copy if the destination itself is missing), and says so through ``log``.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import re
import secrets
import shutil
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

DATASET_FORMAT = "sgf-dataset"
DATASET_FORMAT_VERSION = 1
IMAGES_PER_FOLDER = 1000
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)  # Fixed member timestamps: deterministic zip bytes.
MAX_META_BYTES = 64 << 20  # A dataset.json larger than this is refused (a crafted file, not ours).

_FOLDER_RE = re.compile(r"\d{5}")
_IMAGE_RE = re.compile(r"img\d{8}\.png")
_MEMBER_RE = re.compile(r"\d{5}/img\d{8}\.png")


class DatasetError(ValueError):
    """A source, a destination or a dataset is empty, inconsistent or unusable."""


def image_archive_name(index: int) -> str:
    """Where image ``index`` lives inside a dataset: ``NNNNN/imgIIIIIIII.png``."""
    return f"{index // IMAGES_PER_FOLDER:05d}/img{index:08d}.png"


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- is an existing destination ours? --------------------------------------------------------------

def _is_our_meta(raw: bytes) -> bool:
    try:
        meta = json.loads(raw)
    except ValueError:
        return False
    return isinstance(meta, dict) and meta.get("format") == DATASET_FORMAT


def _foreign_in_zip(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            for info in infos:
                if info.filename != "dataset.json" and not _MEMBER_RE.fullmatch(info.filename):
                    if not (info.is_dir() and _FOLDER_RE.fullmatch(info.filename.rstrip("/"))):
                        return f"it holds {info.filename}, which this tool never writes"
            meta = [i for i in infos if i.filename == "dataset.json"]
            if not meta:
                return "it has no dataset.json"
            if meta[0].file_size > MAX_META_BYTES or not _is_our_meta(z.read(meta[0])):
                return "its dataset.json was not written by this tool"
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError):
        return "it is not a zip file"
    except OSError as e:
        return f"it cannot be read: {e.strerror or e}"
    return None


def _foreign_in_folder(path: Path) -> str | None:
    meta = None
    with os.scandir(path) as entries:
        for e in entries:
            if e.name == "dataset.json" and e.is_file(follow_symlinks=False):
                meta = Path(e.path)
            elif not (_FOLDER_RE.fullmatch(e.name) and e.is_dir(follow_symlinks=False)):
                return f"it holds {e.name}, which this tool never writes"
            else:
                with os.scandir(e.path) as images:
                    for img in images:
                        if not (_IMAGE_RE.fullmatch(img.name) and img.is_file(follow_symlinks=False)):
                            return f"it holds {e.name}/{img.name}, which this tool never writes"
    if meta is None:
        return "it has no dataset.json"
    if meta.stat().st_size > MAX_META_BYTES or not _is_our_meta(meta.read_bytes()):
        return "its dataset.json was not written by this tool"
    return None


def check_replaceable(dest: str | os.PathLike) -> None:
    """Raise ``DatasetError`` unless ``dest`` is absent or is a data set this module wrote.

    "Ours" means: not a symbolic link; for a ``.zip`` destination a zip file, otherwise a folder;
    holding only ``NNNNN/imgIIIIIIII.png`` images and a ``dataset.json`` with our ``format``.
    """
    dest = Path(dest)
    if not dest.exists() and not dest.is_symlink():
        return
    if dest.is_symlink():
        why = "it is a symbolic link"
    elif dest.suffix.lower() == ".zip":
        why = _foreign_in_zip(dest) if dest.is_file() else "it is not a file"
    else:
        why = _foreign_in_folder(dest) if dest.is_dir() else "it is not a folder"
    if why is not None:
        raise DatasetError(f"{dest} is not a data set written by dataset_tool ({why}); --force only replaces "
                           f"such a data set: choose another destination, or move it away yourself")


# --- temporaries: naming, locking, stale clean-up ---------------------------------------------------

def _temp_re(dest: Path) -> re.Pattern:
    return re.compile(rf"\.{re.escape(dest.name)}\.(\d+)-[0-9a-f]{{8}}\.(tmp|old)")


def _temp_name(dest: Path, kind: str) -> Path:
    return dest.with_name(f".{dest.name}.{os.getpid()}-{secrets.token_hex(4)}.{kind}")


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # Gone, or no process could have that number.
        return False
    except PermissionError:
        return True  # Someone else's live process.
    return True


def _lock(fd: int, wait: bool = True) -> bool:
    """Take an exclusive advisory lock on ``fd``; False if another process holds it (``wait=False``)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        return True
    except BlockingIOError:
        return False


def _is_stale(path: Path, pid: int) -> bool:
    """The process that named ``path`` is gone and nobody holds its lock (``.old``: only the pid counts)."""
    if _pid_alive(pid):
        return False
    if path.suffix == ".old":
        return True
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        return _lock(fd, wait=False)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def remove_stale_temporaries(dest: str | os.PathLike, log: Callable[[str], None] = _stderr) -> list[Path]:
    """Remove what killed writers of ``dest`` left beside it; returns the paths removed (or restored).

    Only names of our exact pattern for this destination (``.<name>.<pid>-<8 hex>.tmp|.old``), only
    plain files and folders, and only when the process is gone and the lock is free. If ``dest`` is
    missing but an aside ``.old`` copy exists (killed mid-swap), the copy is put back instead.
    """
    dest = Path(dest)
    pattern = _temp_re(dest)
    try:
        with os.scandir(dest.parent) as it:
            entries = sorted(it, key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return []
    done = []
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m is None or entry.is_symlink() or not (entry.is_file() or entry.is_dir()):
            continue
        path, pid = Path(entry.path), int(m.group(1))
        if not _is_stale(path, pid):
            continue
        if m.group(2) == "old" and not (dest.exists() or dest.is_symlink()):
            os.replace(path, dest)
            log(f"restored {dest} from {path.name}, left aside by process {pid} (killed while replacing it)")
        else:
            _remove(path)
            log(f"removed {path}, left behind by process {pid} (killed while writing {dest.name})")
        done.append(path)
    return done


# --- the writer ------------------------------------------------------------------------------------

def _check_dest(dest: Path, force: bool) -> None:
    if dest.exists() or dest.is_symlink():
        if not force:
            raise DatasetError(f"{dest} already exists; choose another destination or pass --force to replace it")
        check_replaceable(dest)


def _make_parents(folder: Path) -> list[Path]:
    """``mkdir -p folder``; returns the folders it created, deepest first (to undo on failure)."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for p in reversed(missing):
        p.mkdir(exist_ok=True)
    return missing


class DatasetWriter:
    """Writes the dataset format to ``dest`` (a zip if it ends in ``.zip``, else a folder), atomically.

    Use as a context manager; ``add`` images, update ``metadata`` and leave the block. Everything
    goes to a locked temporary beside ``dest`` that is renamed onto it only when the block ends
    without an exception and at least one image was added; otherwise (any exception,
    KeyboardInterrupt and SystemExit included) the temporary output, and any parent folder this
    writer created, is removed and ``dest`` is untouched. An existing ``dest`` is refused unless
    ``force=True``, and then only replaced if this module wrote it (``check_replaceable``). Stale
    temporaries of ``dest`` left by killed runs are removed first, with a message through ``log``.
    """

    def __init__(self, dest: str | os.PathLike, *, force: bool = False, log: Callable[[str], None] | None = None):
        self.dest = Path(dest)
        self.force = force
        self.log = log or _stderr
        self.is_zip = self.dest.suffix.lower() == ".zip"
        self.metadata: dict[str, Any] = {}     # Extra dataset.json fields (source, recipe, ...).
        self.source_names: list[str] = []      # Source name of each image, by index.
        self.resolution: int | None = None
        self._tmp: Path | None = None
        self._fd: int | None = None            # Holds the lock on the temporary.
        self._file = None
        self._zip: zipfile.ZipFile | None = None
        self._made: list[Path] = []
        remove_stale_temporaries(self.dest, self.log)
        _check_dest(self.dest, force)

    @property
    def num_images(self) -> int:
        return len(self.source_names)

    def __enter__(self) -> DatasetWriter:
        try:
            self._made = _make_parents(self.dest.parent)
            self._tmp = _temp_name(self.dest, "tmp")
            if self.is_zip:
                self._fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                _lock(self._fd)
                self._file = os.fdopen(os.dup(self._fd), "wb")
                self._zip = zipfile.ZipFile(self._file, "w", compression=zipfile.ZIP_STORED)
            else:
                os.mkdir(self._tmp)  # 0777 & ~umask, the mode an ordinary mkdir gives.
                self._fd = os.open(self._tmp, os.O_RDONLY)
                _lock(self._fd)
        except BaseException:
            self._abort()
            raise
        return self

    def _write(self, name: str, data: bytes) -> None:
        if self._zip is not None:
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
            info.external_attr = 0o644 << 16
            self._zip.writestr(info, data)
        else:
            path = self._tmp / name
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(data)

    def add(self, img: Image.Image, source_name: str = "") -> str:
        """Append an RGB square image (all of one size); returns its name inside the dataset."""
        if self._tmp is None:
            raise RuntimeError("DatasetWriter.add outside its with-block")
        if img.mode != "RGB" or img.width != img.height:
            raise DatasetError(f"{source_name}: the writer takes square RGB images, "
                               f"got {img.mode} {img.width}x{img.height}")
        if self.resolution is None:
            self.resolution = img.width
        elif img.width != self.resolution:
            raise DatasetError(f"all images must be {self.resolution}x{self.resolution}; "
                               f"{source_name} is {img.width}x{img.height}")
        name = image_archive_name(self.num_images)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        self._write(name, buf.getvalue())
        self.source_names.append(source_name)
        return name

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            try:
                self._commit()
            except BaseException:
                self._abort()
                raise
        else:
            self._abort()
        return False

    def _commit(self) -> None:
        if self.num_images == 0:
            raise DatasetError(f"no image could be written to {self.dest}")
        _check_dest(self.dest, self.force)  # Again: it may have appeared or changed meanwhile.
        meta = {"format": DATASET_FORMAT, "format_version": DATASET_FORMAT_VERSION, "resolution": self.resolution,
                "num_images": self.num_images, "channels": 3, "labels": None, **self.metadata,
                "source_names": self.source_names}
        self._write("dataset.json", (json.dumps(meta, indent=1) + "\n").encode())
        if self._zip is not None:
            self._zip.close()
            self._zip = None
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            os.replace(self._tmp, self.dest)  # Atomic, also over an existing zip.
        else:
            old = None
            if self.dest.exists():  # force (checked ours): move the old one aside, swap, delete it.
                old = _temp_name(self.dest, "old")
                os.replace(self.dest, old)
            os.replace(self._tmp, self.dest)
            if old is not None:
                shutil.rmtree(old)
        self._tmp = None
        self._release()

    def _release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _abort(self) -> None:
        for closer in (self._zip, self._file):
            if closer is not None:
                with contextlib.suppress(Exception):
                    closer.close()
        self._zip = self._file = None
        if self._tmp is not None and (self._tmp.exists() or self._tmp.is_symlink()):
            with contextlib.suppress(OSError):
                _remove(self._tmp)
        self._tmp = None
        self._release()
        for folder in self._made:  # Deepest first; only if still empty.
            with contextlib.suppress(OSError):
                folder.rmdir()
        self._made = []
