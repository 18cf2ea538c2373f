"""The check of every image when a data set is opened for training (data/dataset_check.py): bad images named in
one error, crafted sizes refused, results cached by content."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from data import dataset as ds
from data import dataset_check
from data.dataset import ImageDataset
from data.dataset_writer import DatasetError, image_archive_name
from tests.dataset_fixtures import coord_image, encode, make_source, random_rgb, write_lmdb

pytestmark = pytest.mark.usefixtures("check_cache")   # a fresh data-set-check cache for every test

# --- the check when a data set is opened (data/dataset_check.py) ---------------------------------

def rewrite_zip(path: Path, replace: dict[str, bytes]) -> None:
    """Rewrite a zip with some members' bytes replaced (as if tampered with)."""
    with zipfile.ZipFile(path) as z:
        members = {i.filename: z.read(i) for i in z.infolist()}
    with zipfile.ZipFile(path, "w") as z:
        for name, data in {**members, **replace}.items():
            z.writestr(name, data)


def put_image(path: Path, kind: str, name: str, data: bytes) -> str:
    """Replace image ``name`` (an archive name, or a folder file name) of a test source; returns its name."""
    if kind == "zip":
        rewrite_zip(path, {name: data})
    else:
        (path / name).write_bytes(data)
    return name


def crafted_png_header(w: int, h: int) -> bytes:
    """A PNG that claims ``w x h`` pixels but holds almost no data (a crafted file)."""
    import struct
    import zlib

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


BAD_IMAGES = {  # case: (encoded bytes, reason in the error)
    "truncated": (lambda: encode(random_rgb(np.random.default_rng(9), 8, 8))[:60], "is truncated or corrupt"),
    "wrong size": (lambda: encode(coord_image(4, 4)), "is 4x4, not 8x8"),
    "not square": (lambda: encode(coord_image(8, 4)), "is 8x4, not square"),
    "not an image": (lambda: b"hello", "is not an image"),
    "wrong mode": (lambda: encode(coord_image(8, 8).convert("L")), "has mode L, not RGB"),
    "huge header": (lambda: crafted_png_header(5000, 5000), "is 5000x5000, not 8x8"),
}


@pytest.mark.parametrize("case", list(BAD_IMAGES))
@pytest.mark.parametrize("kind", ["zip", "writer_folder", "folder"])
def test_open_checks_every_image(tmp_path, images, kind, case):
    path = make_source(kind, tmp_path, images)
    data, reason = BAD_IMAGES[case]
    name = put_image(path, kind, "000.png" if kind == "folder" else image_archive_name(3), data())
    if kind == "folder":
        reason = {"wrong size": "is 4x4, not 8x8 like most images",
                  "huge header": "is 5000x5000, larger than 4096x4096", "wrong mode": None}.get(case, reason)
    if reason is None:  # A plain folder of images may mix modes: they are converted to RGB.
        assert len(ImageDataset(path)) == 5
        return
    with pytest.raises(dataset_check.BadImagesError) as e:
        ImageDataset(path)
    assert e.value.problems == [(name, e.value.problems[0][1])] and reason in e.value.problems[0][1]
    assert f"1 of 5 images cannot be used ({reason}" in str(e.value) and f": {name})" in str(e.value)
    if kind != "folder":  # The check can be skipped (dataset.json's size is trusted).
        assert ImageDataset(path, check=False).num_images == 5


def test_open_names_every_bad_image_in_one_error(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    (tmp_path / "f").mkdir()
    for i in range(6):
        random_rgb(rng, 8, 8).save(tmp_path / "f" / f"{i}.png")
    (tmp_path / "f" / "1.png").write_bytes(encode(random_rgb(rng, 8, 8))[:70])
    (tmp_path / "f" / "4.png").write_bytes(encode(random_rgb(rng, 8, 8))[:50])
    coord_image(16, 16).save(tmp_path / "f" / "5.png")
    decoded = []
    original = Image.Image.load
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(self.size) or original(self))
    with pytest.raises(dataset_check.BadImagesError) as e:
        ImageDataset(tmp_path / "f")
    assert [n for n, _ in e.value.problems] == ["1.png", "4.png", "5.png"]
    assert "3 of 6 images cannot be used (is truncated or corrupt: 1.png, 4.png; is 16x16, not 8x8" in str(e.value)
    assert "\n" not in str(e.value)
    (tmp_path / "f" / "huge.png").write_bytes(crafted_png_header(5000, 5000))
    decoded.clear()
    with pytest.raises(dataset_check.BadImagesError, match="is 5000x5000, larger than 4096x4096: huge.png"):
        ImageDataset(tmp_path / "f")
    assert decoded and (5000, 5000) not in decoded  # The others are decoded; the crafted one is refused unread.


def test_open_refuses_crafted_sizes(tmp_path, images, monkeypatch):
    path = make_source("zip", tmp_path, images)
    monkeypatch.setattr(dataset_check, "MAX_IMAGE_BYTES", 100)
    with pytest.raises(dataset_check.BadImagesError, match="is larger than 0 MiB: 00000/img00000000.png, "):
        ImageDataset(path)
    monkeypatch.setattr(ds, "MAX_META_BYTES", 100)
    with pytest.raises(DatasetError, match=r"unreadable dataset.json \(\d+ bytes, more than"):
        ImageDataset(path)


@pytest.mark.parametrize("kind", ["zip", "writer_folder", "folder", "lmdb"])
def test_open_check_is_cached_by_content(tmp_path, images, kind, check_cache, monkeypatch):
    path = make_source(kind, tmp_path, images)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    opened = []
    original = Image.open
    monkeypatch.setattr(Image, "open", lambda *a, **k: opened.append(1) or original(*a, **k))
    assert ImageDataset(path).resolution == 8 and len(opened) >= 10  # Header and decode of each image.
    assert len(list(check_cache.glob("*.json"))) == 1
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # Nothing written beside the data.
    opened.clear()
    d = ImageDataset(path, xflip=True)
    assert opened == [] and len(d) == 10 and d.resolution == 8  # Cache hit: nothing decoded.
    assert ImageDataset(path, max_size=2).num_images == 2 and opened == []  # A prefix of a checked set.
    if kind == "lmdb":
        write_lmdb(path, {b"0001": encode(coord_image(4, 4))})
        name = "0001"
    else:
        name = put_image(path, "zip" if kind == "zip" else "folder",
                         "001.png" if kind == "folder" else image_archive_name(1), encode(coord_image(4, 4)))
    with pytest.raises(dataset_check.BadImagesError, match=f"is 4x4, not 8x8.*: {name}"):
        ImageDataset(path)  # Changed content: a new key, checked again.


@pytest.mark.parametrize("damage", ["corrupt", "unwritable"])
def test_open_check_tolerates_a_bad_cache(tmp_path, images, check_cache, monkeypatch, damage):
    path = make_source("zip", tmp_path, images)
    ImageDataset(path)
    (entry,) = check_cache.glob("*.json")
    if damage == "corrupt":
        entry.write_text('{"resolution": "x"')
    else:
        monkeypatch.setenv(dataset_check.CACHE_ENV, str(entry))  # A file where the cache folder should be.
    checks = []
    monkeypatch.setattr(dataset_check, "check_images", lambda *a, _f=dataset_check.check_images: checks.append(1)
                        or _f(*a))
    assert ImageDataset(path).resolution == 8 and ImageDataset(path).resolution == 8
    assert len(checks) == (1 if damage == "corrupt" else 2)  # Rewritten once, or checked every time.


def test_open_check_runs_once_not_per_worker(tmp_path, images, monkeypatch):
    calls = tmp_path / "calls"
    original = dataset_check.check_images

    def counted(*args):
        with open(calls, "a") as f:  # A file: forked workers would append to it too.
            f.write(f"{os.getpid()}\n")
        return original(*args)

    monkeypatch.setattr(dataset_check, "check_images", counted)
    d = ImageDataset(make_source("zip", tmp_path, images), xflip=True)
    loader = torch.utils.data.DataLoader(d, batch_size=4, num_workers=2)
    assert sum(len(x) for x, _ in loader) == 10
    pickle.loads(pickle.dumps(d))[3]
    assert calls.read_text().split() == [str(os.getpid())]
