"""The dataset library: preparation geometry, colour modes, readers, the atomic writer, the training
``ImageDataset`` (zip, folder, LMDB; xflip; DataLoader workers) and the built-in toy faces. All
data is made by the tests."""

from __future__ import annotations

import io
import json
import pickle
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from data.builtin_faces import make_builtin_image, make_builtin_images
from data.dataset import ImageDataset
from data.dataset_writer import DatasetError, DatasetWriter, image_archive_name
from data.prepare import Recipe, SkipImage, center_crop_square, crop_box, prepare_dataset, resize_square, to_rgb
from data.sources import decode_image, list_image_files, lmdb_num_entries, read_image_files, read_lsun_lmdb
from tests.dataset_fixtures import chw, coord_image, encode, leftovers, make_source, random_rgb, write_lmdb

pytestmark = pytest.mark.usefixtures("check_cache")   # a fresh data-set-check cache for every test

# --- preparation ----------------------------------------------------------------------------------

def test_center_crop_square_geometry():
    assert np.array_equal(np.asarray(center_crop_square(coord_image(10, 6))), np.asarray(coord_image(10, 6))[:, 2:8])
    assert np.array_equal(np.asarray(center_crop_square(coord_image(5, 8))), np.asarray(coord_image(5, 8))[1:6])
    assert np.asarray(center_crop_square(coord_image(7, 4)))[0, 0, 0] == 1  # Odd difference: the extra pixel right.
    img = coord_image(6, 6)
    assert center_crop_square(img) is img


def test_crop_box_celeba_exact():
    arr = np.asarray(coord_image(178, 218)).copy()
    arr[57, 25] = (255, 0, 255)       # (x=25, y=57): the box's top-left pixel
    arr[184, 152] = (0, 255, 255)     # its bottom-right pixel
    img = Image.fromarray(arr)
    out = crop_box(img, 89, 121, 128)
    assert out.size == (128, 128)
    got = np.asarray(out)
    assert tuple(got[0, 0]) == (255, 0, 255) and tuple(got[127, 127]) == (0, 255, 255)
    assert np.array_equal(got, arr[57:185, 25:153])
    assert Recipe("box", 128, cx=89, cy=121, size=128)(img).tobytes() == out.tobytes()


def test_crop_box_fractional_half_size():
    # A smooth full-size image and its exact 2x box-down-sampled copy: the half-size box centred at
    # (44.5, 60.5) covers the same region as the full-size box, so both recipes agree at 32x32.
    y, x = np.mgrid[:218, :178].astype(np.float64)
    full = np.stack([128 + 100 * np.sin(x / 17), 128 + 100 * np.cos(y / 23), (x + y) / 2], -1)
    full_img = Image.fromarray(np.round(full).astype(np.uint8))
    half_img = Image.fromarray(np.round(full.reshape(109, 2, 89, 2, 3).mean((1, 3))).astype(np.uint8))
    a = np.asarray(crop_box(full_img, 89, 121, 128, resolution=32), np.float64)
    b = np.asarray(crop_box(half_img, 44.5, 60.5, 64, resolution=32), np.float64)
    assert a.shape == b.shape == (32, 32, 3)
    assert np.abs(a - b).mean() < 1.5 and np.abs(a - b).max() < 8
    # Shifting the centre by a whole half-size pixel moves the result visibly.
    c = np.asarray(crop_box(half_img, 46.5, 60.5, 64, resolution=32), np.float64)
    assert np.abs(a - c).mean() > 3


def test_crop_box_outside_is_skipped():
    with pytest.raises(SkipImage, match=r"image is 100x100, smaller than the crop box x \[25, 153\)"):
        crop_box(coord_image(100, 100), 89, 121, 128)


def test_resize_square_sizes_and_antialiasing():
    checker = Image.fromarray((np.indices((64, 64)).sum(0) % 2 * 255).astype(np.uint8)).convert("RGB")
    small = resize_square(checker, 16)
    assert small.size == (16, 16)
    assert np.abs(np.asarray(small, np.float64) - 127.5).max() < 3  # A proper filter averages the pattern out.
    assert resize_square(coord_image(20, 20), 64).size == (64, 64)
    img = coord_image(8, 8)
    assert resize_square(img, 8) is img
    assert Recipe("center", 16)(coord_image(30, 20)).size == (16, 16)


def test_to_rgb_modes():
    gray = Image.fromarray(np.full((4, 4), 77, np.uint8), "L")
    assert to_rgb(gray).mode == "RGB" and np.all(np.asarray(to_rgb(gray)) == 77)
    bilevel = Image.fromarray(np.array([[0, 255]], np.uint8)).convert("1", dither=Image.Dither.NONE)
    assert np.asarray(to_rgb(bilevel))[0].tolist() == [[0, 0, 0], [255, 255, 255]]
    pal = Image.fromarray(np.full((4, 4, 3), (10, 200, 30), np.uint8)).convert("P", palette=Image.Palette.ADAPTIVE)
    assert tuple(np.asarray(to_rgb(pal))[0, 0]) == (10, 200, 30)
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (200, 100, 50, 255)   # opaque
    rgba[0, 1] = (200, 100, 50, 0)     # transparent: becomes black
    rgba[1, 0] = (200, 100, 50, 128)   # half: premultiplied
    out = np.asarray(to_rgb(Image.fromarray(rgba, "RGBA")))
    assert tuple(out[0, 0]) == (200, 100, 50) and tuple(out[0, 1]) == (0, 0, 0)
    assert np.abs(out[1, 0].astype(int) - np.array([100, 50, 25])).max() <= 1
    la = Image.fromarray(np.array([[[90, 0]]], np.uint8), "LA")
    assert tuple(np.asarray(to_rgb(la))[0, 0]) == (0, 0, 0)
    wide = Image.fromarray(np.array([[65535, 0]], np.uint16))  # 16-bit grayscale
    assert wide.mode.startswith("I;16")
    assert np.asarray(to_rgb(wide))[0, :, 0].tolist() == [255, 0]
    assert to_rgb(Image.new("CMYK", (3, 3))).mode == "RGB"


def test_decode_image_png_rgba_round_trip_and_truncation():
    rgba = Image.new("RGBA", (5, 5), (10, 20, 30, 255))
    assert to_rgb(decode_image(encode(rgba))).getpixel((2, 2)) == (10, 20, 30)
    data = encode(random_rgb(np.random.default_rng(0), 64, 64), "JPEG")
    with pytest.raises(OSError):
        decode_image(data[: len(data) // 2])


def test_decode_image_applies_exif_orientation():
    img = coord_image(8, 4)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    out = decode_image(encode(img, "PNG", exif=exif))
    assert out.size == (4, 8)


# --- readers --------------------------------------------------------------------------------------

def test_list_and_read_image_files(tmp_path):
    (tmp_path / "b" / "c").mkdir(parents=True)
    coord_image(4, 4).save(tmp_path / "b" / "c" / "z.png")
    coord_image(4, 4).save(tmp_path / "a.JPG", format="JPEG")
    coord_image(4, 4).save(tmp_path / "b" / "y.jpeg", format="JPEG")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "bad.png").write_bytes(b"garbage")
    names = list_image_files(tmp_path)
    assert names == ["a.JPG", "b/c/z.png", "b/y.jpeg", "bad.png"]
    items = list(read_image_files(tmp_path, names))
    assert [n for n, _ in items] == names
    assert all(isinstance(im, Image.Image) for _, im in items[:3])
    assert isinstance(items[3][1], Exception)
    with pytest.raises(DatasetError, match="not a folder"):
        list_image_files(tmp_path / "missing")


def test_read_image_files_is_lazy(tmp_path):
    gen = read_image_files(tmp_path, ["missing.png"])  # Nothing is read before iteration.
    name, err = next(gen)
    assert name == "missing.png" and isinstance(err, FileNotFoundError)


def test_read_lsun_lmdb_key_order_and_errors(tmp_path):
    rng = np.random.default_rng(1)
    records = {b"c2": encode(random_rgb(rng, 12, 8), "JPEG"), b"a0": encode(random_rgb(rng, 8, 12), "WEBP"),
               b"b1": b"not an image"}
    path = write_lmdb(tmp_path / "lsun", records)
    items = list(read_lsun_lmdb(path))
    assert [n for n, _ in items] == ["a0", "b1", "c2"]
    assert items[0][1].size == (8, 12) and items[2][1].size == (12, 8)
    assert isinstance(items[1][1], Exception)
    assert lmdb_num_entries(path) == 3


# --- the writer -----------------------------------------------------------------------------------

def test_archive_names():
    assert image_archive_name(0) == "00000/img00000000.png"
    assert image_archive_name(999) == "00000/img00000999.png"
    assert image_archive_name(1000) == "00001/img00001000.png"


@pytest.mark.parametrize("suffix", [".zip", ""])
def test_writer_layout_and_metadata(tmp_path, suffix):
    dest = tmp_path / f"out{suffix}"
    imgs = [random_rgb(np.random.default_rng(i), 8, 8) for i in range(3)]
    with DatasetWriter(dest) as w:
        for i, img in enumerate(imgs):
            assert w.add(img, f"src{i}") == image_archive_name(i)
        w.metadata.update(source={"kind": "test"}, recipe={"crop": "center"})
    if suffix:
        with zipfile.ZipFile(dest) as z:
            names = sorted(z.namelist())
            meta = json.loads(z.read("dataset.json"))
            first = Image.open(io.BytesIO(z.read(names[0])))
            assert all(zi.date_time == (1980, 1, 1, 0, 0, 0) for zi in z.infolist())
    else:
        names = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
        meta = json.loads((dest / "dataset.json").read_text())
        first = Image.open(dest / names[0])
        assert dest.stat().st_mode & 0o755 == 0o755
    assert names == ["00000/img00000000.png", "00000/img00000001.png", "00000/img00000002.png", "dataset.json"]
    assert np.array_equal(np.asarray(first), np.asarray(imgs[0]))
    assert meta["resolution"] == 8 and meta["num_images"] == 3 and meta["channels"] == 3
    assert meta["labels"] is None and meta["format"] == "sgf-dataset"
    assert meta["source"] == {"kind": "test"} and meta["recipe"] == {"crop": "center"}
    assert meta["source_names"] == ["src0", "src1", "src2"]
    assert leftovers(tmp_path, {dest.name}) == []


@pytest.mark.parametrize("suffix", [".zip", ""])
@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_writer_failure_leaves_nothing(tmp_path, suffix, exc):
    dest = tmp_path / f"out{suffix}"
    with pytest.raises(exc):
        with DatasetWriter(dest) as w:
            w.add(coord_image(4, 4), "a")
            w.add(coord_image(4, 4), "b")
            raise exc("boom")
    assert leftovers(tmp_path, set()) == []


@pytest.mark.parametrize("suffix", [".zip", ""])
def test_writer_existing_dest(tmp_path, suffix):
    dest = tmp_path / f"out{suffix}"
    with DatasetWriter(dest) as w:
        w.add(coord_image(4, 4), "first")
    before = sorted(p.read_bytes() for p in ([dest] if suffix else dest.rglob("*.*")))
    with pytest.raises(DatasetError, match="already exists.*--force"):
        DatasetWriter(dest)
    with pytest.raises(RuntimeError):  # Forced but failing: the old dest survives intact.
        with DatasetWriter(dest, force=True) as w:
            w.add(coord_image(8, 8), "x")
            raise RuntimeError("boom")
    assert sorted(p.read_bytes() for p in ([dest] if suffix else dest.rglob("*.*"))) == before
    with DatasetWriter(dest, force=True) as w:  # Forced and succeeding: replaced.
        w.add(coord_image(8, 8), "second")
    assert ImageDataset(dest).resolution == 8
    assert leftovers(tmp_path, {dest.name}) == []


def test_writer_refuses_empty_and_mixed(tmp_path):
    with pytest.raises(DatasetError, match="no image"):
        with DatasetWriter(tmp_path / "empty.zip"):
            pass
    with pytest.raises(DatasetError, match=r"all images must be 4x4; b is 8x8"):
        with DatasetWriter(tmp_path / "mixed.zip") as w:
            w.add(coord_image(4, 4), "a")
            w.add(coord_image(8, 8), "b")
    assert leftovers(tmp_path, set()) == []


def test_prepare_dataset_skips_counts_and_max(tmp_path):
    items = [("a", coord_image(20, 10)), ("bad", OSError("truncated")), ("tiny", coord_image(3, 3)),
             ("b", coord_image(10, 20)), ("c", coord_image(16, 16))]
    messages = []
    report = prepare_dataset(iter(items), tmp_path / "d.zip", Recipe("box", 8, cx=5, cy=5, size=8),
                             source={"kind": "test"}, max_images=2, progress=False, log=messages.append)
    assert report.num_images == 2 and report.resolution == 8
    assert [n for n, _ in report.skipped] == ["bad", "tiny"]
    assert messages[0] == "skipped bad: cannot decode (OSError: truncated)"
    assert messages[1].startswith("skipped tiny: image is 3x3, smaller than the crop box")
    d = ImageDataset(tmp_path / "d.zip")
    assert d.names == ["00000/img00000000.png", "00000/img00000001.png"]
    with zipfile.ZipFile(tmp_path / "d.zip") as z:
        meta = json.loads(z.read("dataset.json"))
    assert meta["source_names"] == ["a", "b"]  # "c" is never read: max_images counts written images.
    assert meta["skipped"] == [{"name": "bad", "reason": "cannot decode (OSError: truncated)"},
                               {"name": "tiny", "reason": messages[1][len("skipped tiny: "):]}]


def test_prepare_dataset_failure_mid_write_is_atomic(tmp_path, monkeypatch):
    calls = []
    original = DatasetWriter.add

    def failing_add(self, img, name=""):
        calls.append(name)
        if len(calls) == 3:
            raise OSError("disk full")
        return original(self, img, name)

    monkeypatch.setattr(DatasetWriter, "add", failing_add)
    for dest in (tmp_path / "d.zip", tmp_path / "d"):
        calls.clear()
        items = ((f"i{k}", coord_image(8, 8)) for k in range(10))
        with pytest.raises(OSError, match="disk full"):
            prepare_dataset(items, dest, Recipe("center", 8), source={}, progress=False)
        assert leftovers(tmp_path, set()) == []


def test_prepare_dataset_nothing_written(tmp_path):
    with pytest.raises(DatasetError, match="no image could be written"):
        prepare_dataset(iter([("x", ValueError("bad"))]), tmp_path / "d.zip", Recipe("center", 8), source={},
                        progress=False)
    assert leftovers(tmp_path, set()) == []


# --- ImageDataset ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["zip", "writer_folder", "folder", "lmdb"])
def test_image_dataset_sources(tmp_path, images, kind):
    path = make_source(kind, tmp_path, images)
    d = ImageDataset(path)
    assert d.kind == ("lmdb" if kind == "lmdb" else "zip" if kind == "zip" else "folder")
    assert len(d) == 5 and d.resolution == 8 and d.num_channels == 3 and d.image_shape == (3, 8, 8)
    order = [0, 2, 4, 1, 3] if kind == "folder" else list(range(5))  # Folder: sorted relative paths.
    for i in range(5):
        x, idx = d[i]
        assert x.dtype == torch.uint8 and x.shape == (3, 8, 8) and idx == i
        assert torch.equal(x, chw(images[order[i]]))
    with pytest.raises(IndexError):
        d[5]


def test_image_dataset_xflip_and_max_size(tmp_path, images):
    d = ImageDataset(make_source("zip", tmp_path, images), xflip=True, max_size=3)
    assert len(d) == 6 and d.num_images == 3
    for i in range(3):
        assert torch.equal(d[i + 3][0], d[i][0].flip(-1))
        assert d[i + 3][1] == i + 3
    with pytest.raises(DatasetError, match="expected 16x16"):
        ImageDataset(tmp_path / "d.zip", resolution=16)


def test_image_dataset_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images found"):
        ImageDataset(tmp_path / "empty")
    with pytest.raises(DatasetError, match="no such file"):
        ImageDataset(tmp_path / "missing.zip")
    (tmp_path / "ns").mkdir()
    coord_image(64, 32).save(tmp_path / "ns" / "img123.png")
    with pytest.raises(DatasetError, match=r"is 64x32, not square: img123.png"):
        ImageDataset(tmp_path / "ns")
    (tmp_path / "mixed").mkdir()
    coord_image(32, 32).save(tmp_path / "mixed" / "a.png")
    coord_image(16, 16).save(tmp_path / "mixed" / "b.png")
    with pytest.raises(DatasetError, match=r"is 16x16, not 32x32 like most images: b.png"):
        ImageDataset(tmp_path / "mixed")
    with pytest.raises(DatasetError, match=r"all images must be square; img123.png is 64x32"):
        ImageDataset(tmp_path / "ns", check=False)  # Sizes only (headers).
    (tmp_path / "notzip.zip").write_bytes(b"nope")
    with pytest.raises(DatasetError, match="not a dataset zip"):
        ImageDataset(tmp_path / "notzip.zip")


def test_image_dataset_checks_dataset_json_and_each_image(tmp_path, images):
    dest = make_source("writer_folder", tmp_path, images)
    d = ImageDataset(dest)
    coord_image(4, 4).save(dest / "00000" / "img00000002.png")  # Tampered after opening.
    with pytest.raises(DatasetError, match=r"all images must be 8x8; 00000/img00000002.png is 4x4"):
        d[2]
    (dest / "00000" / "img00000004.png").unlink()
    with pytest.raises(DatasetError, match="dataset.json says 5 images, found 4"):
        ImageDataset(dest)


def test_image_dataset_is_lazy_and_picklable(tmp_path, images):
    d = ImageDataset(make_source("zip", tmp_path, images))
    assert d._zip is None  # Construction closes its handles.
    d[0]
    assert d._zip is not None
    d2 = pickle.loads(pickle.dumps(d))
    assert d2._zip is None and torch.equal(d2[1][0], d[1][0])
    d._pid = -1  # As if inherited from a parent process: the handle is reopened, not reused.
    stale = d._zip
    d[0]
    assert d._zip is not stale


@pytest.mark.parametrize("kind", ["zip", "lmdb"])
def test_image_dataset_dataloader_workers(tmp_path, images, kind):
    d = ImageDataset(make_source(kind, tmp_path, images), xflip=True)
    d[0]  # A handle opened in the parent must not be used by the workers.
    loader = torch.utils.data.DataLoader(d, batch_size=3, num_workers=2, shuffle=False)
    xs, idx = zip(*loader)
    x, idx = torch.cat(xs), torch.cat(idx)
    assert x.shape == (10, 3, 8, 8) and x.dtype == torch.uint8 and idx.tolist() == list(range(10))
    expected = torch.stack([chw(img) for img in images])
    assert torch.equal(x[:5], expected) and torch.equal(x[5:], expected.flip(-1))


# --- built-in toy faces ---------------------------------------------------------------------------

def test_builtin_deterministic_and_index_addressed():
    a = [im.tobytes() for im in make_builtin_images(6, 32, seed=3)]
    b = [im.tobytes() for im in make_builtin_images(6, 32, seed=3)]
    c = [im.tobytes() for im in make_builtin_images(6, 32, seed=4)]
    assert a == b and a != c
    assert make_builtin_image(4, 32, seed=3).tobytes() == a[4]
    assert len(set(a)) == 6


@pytest.mark.parametrize("res", [32, 64, 128])
def test_builtin_resolutions_are_the_same_faces(res):
    img = make_builtin_image(7, res, seed=0)
    assert img.size == (res, res) and img.mode == "RGB"
    ref = np.asarray(make_builtin_image(7, 32, seed=0), np.float64)
    down = np.asarray(img.resize((32, 32), Image.Resampling.BOX), np.float64)
    assert np.abs(down - ref).mean() < 4


def test_builtin_is_varied_but_structured():
    x = np.stack([np.asarray(im, np.float64) for im in make_builtin_images(128, 32, seed=0)]).reshape(128, -1)
    assert x.std(0).mean() > 25  # Images differ from each other...
    x -= x.mean(0)
    energy = np.linalg.svd(x, compute_uv=False) ** 2
    assert energy[:10].sum() / energy.sum() > 0.5  # ...along few directions (i.i.d. noise: ~0.1).


@pytest.mark.parametrize("make, why", [
    (lambda p: p.write_text("my thesis"), "it is not a zip file"),
    (lambda p: zipfile.ZipFile(p, "w").close(), "it has no dataset.json"),
    (lambda p: p.mkdir(), "it is not a file"),
    (lambda p: p.symlink_to(p.parent / "elsewhere.zip"), "it is a symbolic link"),
])
def test_writer_force_replaces_only_its_own_output(tmp_path, make, why):
    dest = tmp_path / "out.zip"
    make(dest)
    with pytest.raises(DatasetError, match=f"not a data set written by dataset_tool \\({why}\\)"):
        DatasetWriter(dest, force=True)
    with DatasetWriter(tmp_path / "ours.zip") as w:
        w.add(coord_image(4, 4), "a")
    with zipfile.ZipFile(tmp_path / "ours.zip", "a") as z:
        z.writestr("notes.txt", "mine")
    with pytest.raises(DatasetError, match=r"it holds notes.txt, which this tool never writes"):
        DatasetWriter(tmp_path / "ours.zip", force=True)
