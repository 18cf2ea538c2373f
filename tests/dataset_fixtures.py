"""Helpers shared by the data-set tests: small images, encodings, LMDBs and sources of every kind (their
fixtures ``images`` and ``check_cache`` are in tests/conftest.py)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from data.dataset_writer import DatasetWriter


def coord_image(w: int, h: int) -> Image.Image:
    """RGB image whose pixel (x, y) is (x, y, 7): positions are readable from the values."""
    y, x = np.mgrid[:h, :w]
    return Image.fromarray(np.stack([x, y, np.full_like(x, 7)], -1).astype(np.uint8), "RGB")


def encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def random_rgb(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def write_lmdb(path: Path, records: dict[bytes, bytes]) -> Path:
    lmdb = pytest.importorskip("lmdb")
    env = lmdb.open(str(path), map_size=1 << 26)
    with env.begin(write=True) as txn:
        for k, v in records.items():
            txn.put(k, v)
    env.close()
    return path


def leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def chw(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img).transpose(2, 0, 1).copy())


def make_source(kind: str, root: Path, images: list[Image.Image]) -> Path:
    if kind in ("zip", "writer_folder"):
        dest = root / ("d.zip" if kind == "zip" else "d")
        with DatasetWriter(dest) as w:
            for i, img in enumerate(images):
                w.add(img, str(i))
        return dest
    if kind == "folder":
        (root / "f" / "sub").mkdir(parents=True)
        for i, img in enumerate(images):
            img.save(root / "f" / ("sub" if i % 2 else "") / f"{i:03d}.png")
        return root / "f"
    return write_lmdb(root / "l", {f"{i:04d}".encode(): encode(img) for i, img in enumerate(images)})
