"""Reading the sources a data set is prepared from: image files, LSUN LMDBs and the built-in toy faces.

Readers yield ``(name, image)`` lazily, where ``image`` is a decoded PIL image or the exception that
decoding raised, so that a tool can report and skip bad files (``data/prepare.py`` does). The built-in
data set (``make_builtin_image``, ``data/builtin_faces.py``) is procedural: toy faces drawn from code,
deterministic from a seed. ``data/dataset.py``'s ``ImageDataset`` reads prepared data sets with the same
decoding and LMDB helpers.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from PIL import Image, ImageOps

from data.builtin_faces import make_builtin_image
from data.dataset_writer import DatasetError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")

SourceItem = tuple[str, "Image.Image | Exception"]


def decode_image(data: bytes) -> Image.Image:
    """Decode encoded image bytes fully (truncated files raise here) and apply EXIF orientation."""
    img = Image.open(io.BytesIO(data))
    img.load()
    ImageOps.exif_transpose(img, in_place=True)
    return img


# --- source readers --------------------------------------------------------------------------------

def list_image_files(root: str | os.PathLike) -> list[str]:
    """Relative POSIX paths of the PNG/JPEG files under ``root`` (recursive), sorted; others ignored."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def read_image_files(root: str | os.PathLike, names: Iterable[str]) -> Iterator[SourceItem]:
    """Yield ``(name, image or exception)`` for ``root / name``, in the given order, lazily."""
    root = Path(root)
    for name in names:
        try:
            yield name, decode_image((root / name).read_bytes())
        except Exception as e:
            yield name, e


def is_lmdb(path: Path) -> bool:
    return (path.is_dir() and (path / "data.mdb").is_file()) or (path.is_file() and path.suffix == ".mdb")


def _open_lmdb(path: Path):
    import lmdb  # Imported here: only LMDB sources need it.

    if not path.exists():
        raise DatasetError(f"{path}: no such LMDB")
    return lmdb.open(str(path), readonly=True, lock=False, readahead=False, subdir=path.is_dir(), max_readers=256)


def _key_name(key: bytes) -> str:
    return key.decode("utf-8", "backslashreplace")


def lmdb_num_entries(path: str | os.PathLike) -> int:
    """Number of records in an LMDB environment."""
    env = _open_lmdb(Path(path))
    try:
        return int(env.stat()["entries"])
    finally:
        env.close()


def read_lsun_lmdb(path: str | os.PathLike, skip: int = 0) -> Iterator[SourceItem]:
    """Yield ``(key, image or exception)`` from an LSUN LMDB (values: encoded images), in key order, after the
    first ``skip`` records (passed over undecoded)."""
    env = _open_lmdb(Path(path))
    try:
        with env.begin(write=False) as txn:
            for index, (key, value) in enumerate(txn.cursor()):
                if index < skip:
                    continue
                try:
                    yield _key_name(key), decode_image(bytes(value))
                except Exception as e:
                    yield _key_name(key), e
    finally:
        env.close()


# --- the built-in data set (data/builtin_faces.py) ------------------------------------------------

def read_builtin(n: int, resolution: int = 32, seed: int = 0, skip: int = 0) -> Iterator[SourceItem]:
    """The built-in data set as a source: ``(f"toyface{index:08d}", image)`` for ``index`` from ``skip`` on."""
    for index in range(skip, skip + n):
        yield f"toyface{index:08d}", make_builtin_image(index, resolution, seed)

