"""The training data set: ``ImageDataset`` reads a prepared data set, ``InfiniteSampler`` orders it.

The data modules, one job each: ``data/sources.py`` reads source images (files, LSUN LMDBs, the built-in
toy faces); ``data/prepare.py`` turns them into dataset images (``Recipe``) and writes a data set
(``prepare_dataset``); ``data/dataset_writer.py`` holds the project's dataset format and its atomic
writer (``DatasetWriter``); ``data/dataset_check.py`` the check run when a data set is opened (every
image decoded once, good results cached).
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from data import dataset_check
from data.dataset_check import ImageTooLarge
from data.dataset_writer import (
    DATASET_FORMAT,
    MAX_META_BYTES,
    DatasetError,
)
from data.prepare import (
    to_rgb,
)
from data.sources import (
    IMAGE_EXTENSIONS,
    _key_name,
    _open_lmdb,
    decode_image,
    is_lmdb,
    list_image_files,
)
from dnnlib.util import seed_for


class ImageDataset(torch.utils.data.Dataset):
    """Square RGB images from a dataset zip, a folder of PNG/JPEG files (recursive) or an LMDB.

    ``dataset[i]`` is ``(image, i)``: ``image`` a ``uint8`` tensor ``[3, R, R]`` (CHW, values
    0..255). With ``xflip=True`` the data set has ``2N`` items; item ``i >= N`` is item ``i - N``
    mirrored left-right. ``max_size`` keeps the first images (sorted names / key order).

    Files are opened lazily and per process (the zip or LMDB handle is reopened when ``os.getpid()``
    changes and is never pickled), so the object works with ``DataLoader(num_workers > 0)``.
    Opening checks every image (``check=True``, the default; ``data/dataset_check.py``): each one
    is decoded once, must be square, of one size (``dataset.json``'s resolution when there is one,
    else the most common side) and, in the project's own format, stored as RGB; every bad image is
    named in one ``BadImagesError``. A good result is cached by content hash, so opening the same
    data again costs no decoding. The check runs in the constructor only, never in DataLoader
    workers (they receive a copy). Every image is checked again when loaded.
    """

    def __init__(
        self,
        path: str | os.PathLike,            # dataset zip, folder or LMDB (folder with data.mdb, or a .mdb file)
        *,
        resolution: int | None = None,      # expected resolution (checked); None: whatever the data has
        max_size: int | None = None,        # keep only the first max_size images
        xflip: bool = False,                # append mirrored copies (doubles the length)
        check: bool = True,                 # decode every image now (cached); False: read sizes only
    ):
        self.path = Path(path)
        if not self.path.exists():
            raise DatasetError(f"{self.path}: no such file or folder")
        if is_lmdb(self.path):
            self.kind = "lmdb"
        elif self.path.is_dir():
            self.kind = "folder"
        elif zipfile.is_zipfile(self.path):
            self.kind = "zip"
        else:
            raise DatasetError(f"{self.path}: not a dataset zip, a folder of images or an LMDB")
        self.xflip = bool(xflip)
        self._pid: int | None = None
        self._zip: zipfile.ZipFile | None = None
        self._env = None
        try:
            keys = self._list_keys()
            meta = self._read_meta()
            if not keys:
                raise DatasetError(f"{self.path}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)}"
                                   f"{' or LMDB records' if self.kind == 'lmdb' else ''})")
            if meta is not None and meta.get("num_images") != len(keys):
                raise DatasetError(f"{self.path}: dataset.json says {meta.get('num_images')} images, "
                                   f"found {len(keys)}")
            if max_size is not None and max_size < 1:
                raise DatasetError(f"max_size must be >= 1, got {max_size}")
            self._keys = keys[:max_size]
            expected = int(meta["resolution"]) if meta is not None else None
            if check:
                self._resolution = self._check(keys, expected, require_rgb=meta is not None)
            else:
                self._resolution = expected if expected is not None else self._scan_sizes()
        except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile) as e:
            raise DatasetError(f"{self.path}: cannot be read ({type(e).__name__}: {e}); check the file, or prepare "
                               f"the data set again with dataset_tool.py") from e
        finally:
            self.close()  # Workers open their own handles.
        if resolution is not None and resolution != self._resolution:
            raise DatasetError(f"{self.path}: images are {self._resolution}x{self._resolution}, "
                               f"expected {resolution}x{resolution}")

    # Handles, per process.
    def _open(self) -> None:
        if self._pid == os.getpid():
            return
        self._zip, self._env = None, None  # Inherited from a parent process: never use them here.
        if self.kind == "zip":
            self._zip = zipfile.ZipFile(self.path)
        elif self.kind == "lmdb":
            self._env = _open_lmdb(self.path)
        self._pid = os.getpid()

    def close(self) -> None:
        if self._pid == os.getpid():
            if self._zip is not None:
                self._zip.close()
            if self._env is not None:
                self._env.close()
        self._zip, self._env, self._pid = None, None, None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_zip": None, "_env": None, "_pid": None}

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def _list_keys(self) -> list:
        if self.kind == "folder":
            return list_image_files(self.path)
        if self.kind == "zip":
            self._open()
            return sorted(n for n in self._zip.namelist() if Path(n).suffix.lower() in IMAGE_EXTENSIONS)
        self._open()
        with self._env.begin(write=False) as txn:
            return [bytes(k) for k in txn.cursor().iternext(keys=True, values=False)]

    def _read_meta(self) -> dict[str, Any] | None:
        try:
            if self.kind == "folder" and (self.path / "dataset.json").is_file():
                size = (self.path / "dataset.json").stat().st_size
                read = (self.path / "dataset.json").read_bytes
            elif self.kind == "zip" and "dataset.json" in self._zip.namelist():
                size = self._zip.getinfo("dataset.json").file_size
                read = lambda: self._zip.read("dataset.json")  # noqa: E731
            else:
                return None
            if size > MAX_META_BYTES:
                raise ValueError(f"{size} bytes, more than the {MAX_META_BYTES >> 20} MiB allowed")
            meta = json.loads(read())
            if not isinstance(meta, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise DatasetError(f"{self.path}: unreadable dataset.json ({e}); prepare the data set again with "
                               f"dataset_tool.py") from e
        if meta.get("format") != DATASET_FORMAT:
            return None  # Someone else's dataset.json (e.g. StyleGAN2-ADA labels): check the images instead.
        if meta.get("channels") != 3 or not isinstance(meta.get("resolution"), int):
            raise DatasetError(f"{self.path}: dataset.json has channels={meta.get('channels')!r}, "
                               f"resolution={meta.get('resolution')!r}; expected 3 channels and an integer resolution")
        return meta

    def _key_name(self, key) -> str:
        return _key_name(key) if isinstance(key, bytes) else key

    def _read_bytes(self, key) -> bytes:
        """The encoded image ``key``; files over ``dataset_check.MAX_IMAGE_BYTES`` are refused unread."""
        self._open()
        if self.kind == "folder":
            size = (self.path / key).stat().st_size
        elif self.kind == "zip":
            size = self._zip.getinfo(key).file_size
        else:
            with self._env.begin(write=False, buffers=True) as txn:
                value = txn.get(key)
                if value is None:
                    raise DatasetError(f"{self.path}: LMDB record {self._key_name(key)} disappeared")
                size = len(value)
                if size <= dataset_check.MAX_IMAGE_BYTES:
                    return bytes(value)
        if size > dataset_check.MAX_IMAGE_BYTES:
            raise ImageTooLarge(f"{self.path}: {self._key_name(key)} is {size} bytes, more than the "
                                f"{dataset_check.MAX_IMAGE_BYTES >> 20} MiB an image may have")
        return (self.path / key).read_bytes() if self.kind == "folder" else self._zip.read(key)

    def _fingerprint(self, all_keys: list) -> str:
        self._open()
        if self.kind == "zip":
            return dataset_check.zip_fingerprint(self._zip)
        if self.kind == "folder":
            return dataset_check.folder_fingerprint(self.path, all_keys)
        data_file = self.path / "data.mdb" if self.path.is_dir() else self.path
        return dataset_check.lmdb_fingerprint(data_file, self._env)

    def _check(self, all_keys: list, expected: int | None, require_rgb: bool) -> int:
        """Check every kept image (or find a cached good result); return the common side."""
        key = dataset_check.cache_key(kind=self.kind, fingerprint=self._fingerprint(all_keys), expected=expected,
                                      require_rgb=require_rgb)
        hit = dataset_check.load_check(key)
        if hit is not None and hit["checked"] >= len(self._keys):
            return hit["resolution"]
        side = dataset_check.check_images(self.path, self._keys, self._read_bytes, self._key_name,
                                          lambda data: to_rgb(decode_image(data)), expected, require_rgb)
        dataset_check.save_check(key, side, max(len(self._keys), hit["checked"] if hit else 0))
        return side

    def _scan_sizes(self) -> int:
        first: tuple[str, int] | None = None
        for key in self._keys:
            name = self._key_name(key)
            try:
                w, h = Image.open(io.BytesIO(self._read_bytes(key))).size
            except Exception as e:
                raise DatasetError(f"{self.path}: {name}: cannot decode ({type(e).__name__}: {e})") from e
            if w != h:
                raise DatasetError(f"{self.path}: all images must be square; {name} is {w}x{h}")
            if first is None:
                first = (name, w)
            elif w != first[1]:
                raise DatasetError(f"{self.path}: all images must be {first[1]}x{first[1]} (like {first[0]}); "
                                   f"{name} is {w}x{h}")
        return first[1]

    # Public interface.
    @property
    def resolution(self) -> int:
        return self._resolution

    @property
    def num_channels(self) -> int:
        return 3

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (3, self._resolution, self._resolution)

    @property
    def num_images(self) -> int:
        """Distinct images (without the mirrored copies)."""
        return len(self._keys)

    @property
    def names(self) -> list[str]:
        return [self._key_name(k) for k in self._keys]

    def __len__(self) -> int:
        return len(self._keys) * (2 if self.xflip else 1)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        n = len(self._keys)
        key = self._keys[index % n]
        name = self._key_name(key)
        try:
            img = to_rgb(decode_image(self._read_bytes(key)))
        except DatasetError:
            raise
        except Exception as e:
            raise DatasetError(f"{self.path}: {name}: cannot decode ({type(e).__name__}: {e})") from e
        R = self._resolution
        if img.size != (R, R):
            raise DatasetError(f"{self.path}: all images must be {R}x{R}; {name} is {img.width}x{img.height}")
        arr = np.asarray(img)
        if index >= n:
            arr = arr[:, ::-1]
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))), index


class InfiniteSampler(torch.utils.data.Sampler):
    """Endless shuffled indices; the order depends only on (seed, position), so it can restart anywhere."""

    def __init__(self, size: int, seed: int, start: int = 0):
        self.size, self.seed, self.start = size, seed, start

    def __iter__(self):
        pos = self.start
        while True:
            epoch, offset = divmod(pos, self.size)
            order = np.random.default_rng(seed_for(self.seed, epoch)).permutation(self.size)
            for i in order[offset:]:
                yield int(i)
                pos += 1
