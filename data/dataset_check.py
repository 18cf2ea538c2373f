"""Check every image of a data set once, when it is opened, and remember the data sets found good.

A truncated, mis-sized or wrong-mode image should stop a run when the data set is opened, not hours
later when a batch reaches it. ``check_images`` reads each image's header (size, mode), then decodes
it fully (a truncated PNG or JPEG only fails there), and raises one ``BadImagesError`` naming every
bad image. Headers come first so that a crafted header (a huge side) is refused before decoding.

A good result is cached, keyed by a hash of the data set's content as far as it can be learnt
cheaply: for a zip its central directory (names, CRC-32s, sizes); for a folder the names, sizes
and modification times; for an LMDB the data file's size and modification time and the last
transaction id. The cache lives in ``$SGF_CACHE_DIR/dataset-checks`` (default ``~/.cache/sgf``),
never beside the data (data folders may be read-only); it is written atomically, and a missing,
corrupt or unwritable cache only means the images are checked again.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from data.dataset_writer import DatasetError
from dnnlib.util import atomic_path

CHECK_VERSION = 1
CACHE_ENV = "SGF_CACHE_DIR"
DEFAULT_CACHE = "~/.cache/sgf"
MAX_SIDE = 4096  # Larger images are refused before decoding (a 4096² RGB image is 48 MB).
MAX_IMAGE_BYTES = 64 << 20  # Larger image files are refused unread.


class ImageTooLarge(DatasetError):
    """An image file larger than ``MAX_IMAGE_BYTES`` (refused before it is read)."""


class BadImagesError(DatasetError):
    """Some images of a data set cannot be used; ``problems`` lists ``(name, reason)`` for each."""

    def __init__(self, path: Path, problems: list[tuple[str, str]], total: int):
        self.problems = problems
        groups: dict[str, list[str]] = {}
        for name, reason in problems:
            groups.setdefault(reason, []).append(name)
        listed = "; ".join(f"{reason}: {', '.join(names)}" for reason, names in groups.items())
        super().__init__(f"{path}: {len(problems)} of {total} images cannot be used ({listed}); remove or "
                         f"replace them, or prepare the data set again with dataset_tool.py")


# --- the check -------------------------------------------------------------------------------------

def _header_problem(img: Image.Image, expected: int | None, require_rgb: bool) -> str | None:
    w, h = img.size
    if w != h:
        return f"is {w}x{h}, not square"
    if expected is not None and w != expected:
        return f"is {w}x{h}, not {expected}x{expected}"
    if w > MAX_SIDE:
        return f"is {w}x{h}, larger than {MAX_SIDE}x{MAX_SIDE}"
    if require_rgb and img.mode != "RGB":
        return f"has mode {img.mode}, not RGB"
    return None


def check_images(
    path: Path,                             # the data set (for messages)
    keys: Sequence,                         # its images, in order
    read: Callable[[Any], bytes],           # key -> encoded bytes
    name_of: Callable[[Any], str],          # key -> name for messages
    decode: Callable[[bytes], Image.Image],  # encoded bytes -> the RGB image training will see
    expected: int | None = None,            # the side every image must have; None: the most common one
    require_rgb: bool = False,              # images must be stored as RGB (the project's own format)
) -> int:
    """Check every image (header, then a full decode); return the common side or raise ``BadImagesError``."""
    problems: list[tuple[str, str]] = []
    sides: dict[str, int] = {}
    for key in keys:
        name = name_of(key)
        try:
            data = read(key)
        except ImageTooLarge:
            problems.append((name, f"is larger than {MAX_IMAGE_BYTES >> 20} MiB"))
            continue
        except Exception as e:
            problems.append((name, f"cannot be read ({type(e).__name__})"))
            continue
        try:
            header = Image.open(io.BytesIO(data))
        except Exception:
            problems.append((name, "is not an image"))
            continue
        problem = _header_problem(header, expected, require_rgb)
        if problem is None:
            try:
                img = decode(data)
                problem = _header_problem(img, expected, False)
            except Exception:
                problem = "is truncated or corrupt"
        if problem is None:
            sides[name] = img.width
        else:
            problems.append((name, problem))
    if expected is None and sides:
        counts: dict[int, int] = {}
        for side in sides.values():
            counts[side] = counts.get(side, 0) + 1
        expected = max(counts, key=counts.get)  # Ties: the side seen first.
        problems += [(name, f"is {side}x{side}, not {expected}x{expected} like most images")
                     for name, side in sides.items() if side != expected]
    if problems:
        order = {name_of(k): i for i, k in enumerate(keys)}
        raise BadImagesError(path, sorted(problems, key=lambda p: order[p[0]]), len(keys))
    return expected


# --- content fingerprints --------------------------------------------------------------------------

def _digest(rows) -> str:
    h = hashlib.sha256()
    for row in rows:
        h.update(json.dumps(row).encode())
        h.update(b"\n")
    return h.hexdigest()


def zip_fingerprint(z: zipfile.ZipFile) -> str:
    """Hash of a zip's central directory: every member's name, CRC-32 and size."""
    return _digest(sorted((i.filename, i.CRC, i.file_size) for i in z.infolist()))


def folder_fingerprint(root: Path, names: Sequence[str]) -> str:
    """Hash of the names, sizes and modification times of ``names`` (and ``dataset.json``) under ``root``."""
    rows = []
    for name in [*names, "dataset.json"]:
        try:
            st = (root / name).stat()
            rows.append((name, st.st_size, st.st_mtime_ns))
        except FileNotFoundError:
            rows.append((name, None, None))
    return _digest(rows)


def lmdb_fingerprint(data_file: Path, env) -> str:
    """Hash of an LMDB's data file size and modification time, record count and last transaction id."""
    st = data_file.stat()
    return _digest([(st.st_size, st.st_mtime_ns, env.stat()["entries"], env.info()["last_txnid"])])


# --- the cache -------------------------------------------------------------------------------------

def cache_dir() -> Path:
    """``$SGF_CACHE_DIR/dataset-checks``, else ``~/.cache/sgf/dataset-checks``."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser() / "dataset-checks"


def cache_key(**what: Any) -> str:
    """A file name for the check of ``what`` (kind, fingerprint, expected side, ...)."""
    return hashlib.sha256(json.dumps({"check_version": CHECK_VERSION, **what}, sort_keys=True).encode()).hexdigest()


def load_check(key: str) -> dict[str, int] | None:
    """The cached result ``{"resolution", "checked"}`` for ``key``, or None (missing, unreadable, corrupt)."""
    try:
        entry = json.loads((cache_dir() / f"{key}.json").read_text())
        if isinstance(entry.get("resolution"), int) and isinstance(entry.get("checked"), int):
            return entry
    except (OSError, ValueError, AttributeError):
        pass
    return None


def save_check(key: str, resolution: int, checked: int) -> None:
    """Remember that the first ``checked`` images are good and ``resolution``²; errors are ignored."""
    try:
        with atomic_path(cache_dir() / f"{key}.json") as tmp:
            tmp.write_text(json.dumps({"resolution": resolution, "checked": checked}) + "\n")
    except OSError:
        pass  # An unwritable cache: the next open checks again.
