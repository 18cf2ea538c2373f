"""``dataset_tool.py`` end to end: every subcommand on data the tests make (a fake aligned CelebA
with marked pixels, mixed-mode folders, an LSUN-style LMDB, the built-in faces), per-file skip
reports, option errors, atomic output, and 20 real CelebA images when ``shared/data`` is present."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import dataset_tool
from tests.shared_paths import DATA
from training import dataset as ds
from training.builtin_faces import make_builtin_image
from training.dataset import ImageDataset

REPO = Path(__file__).resolve().parents[1]
CELEBA_HALF = DATA / "celeba_89x109"
MARK_TL, MARK_BR = (255, 0, 255), (0, 255, 255)


def invoke(*args) -> object:
    return CliRunner().invoke(dataset_tool.cli, [str(a) for a in args])


def meta_of(dest: Path) -> dict:
    if dest.suffix == ".zip":
        with zipfile.ZipFile(dest) as z:
            return json.loads(z.read("dataset.json"))
    return json.loads((dest / "dataset.json").read_text())


def only(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture()
def fake_celeba(tmp_path) -> Path:
    """Four 178x218 "aligned" images with marked box corners, one too small and one corrupt."""
    root = tmp_path / "img_align_celeba"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        arr = rng.integers(0, 200, (218, 178, 3), dtype=np.uint8)
        arr[57, 25], arr[184, 152] = MARK_TL, MARK_BR    # (x=25, y=57) and (x=152, y=184)
        arr[56, 25] = arr[57, 24] = arr[185, 152] = arr[184, 153] = (255, 255, 255)  # just outside the box
        arr[100, 100, 2] = i                             # tells the images apart
        Image.fromarray(arr).save(root / f"{i + 1:06d}.png")
    Image.new("RGB", (100, 100)).save(root / "000002a.png")     # sorts between 000002 and 000003
    (root / "000003a.jpg").write_bytes(b"\xff\xd8 truncated")
    (root / "list.txt").write_text("ignored")
    return root


def test_create_celeba_crop_box_exact(fake_celeba, tmp_path):
    dest = tmp_path / "celeba.zip"
    r = invoke("create_celeba", "--source", fake_celeba, "--dest", dest)
    assert r.exit_code == 0, r.output
    assert "skipped 000002a.png: image is 100x100, smaller than the crop box x [25, 153) y [57, 185)" in r.stderr
    assert "skipped 000003a.jpg: cannot decode" in r.stderr
    assert "wrote 4 images (128x128)" in r.stdout and "skipped 2" in r.stdout
    d = ImageDataset(dest)
    assert len(d) == 4 and d.resolution == 128
    for i in range(4):
        x = d[i][0]
        assert tuple(x[:, 0, 0].tolist()) == MARK_TL and tuple(x[:, 127, 127].tolist()) == MARK_BR
        assert x[2, 100 - 57, 100 - 25].item() == i
    meta = meta_of(dest)
    assert meta["source_names"] == ["000001.png", "000002.png", "000003.png", "000004.png"]
    assert meta["recipe"]["crop"] == "box" and meta["recipe"]["cx"] == 89 and meta["recipe"]["size"] == 128
    assert [s["name"] for s in meta["skipped"]] == ["000002a.png", "000003a.jpg"]
    assert meta["selection"]["max_images"] == 30000


def test_create_celeba_max_images_resolution_and_folder(fake_celeba, tmp_path):
    dest = tmp_path / "celeba32"
    r = invoke("create_celeba", "--source", fake_celeba, "--dest", dest, "--resolution", 32, "--max-images", 2)
    assert r.exit_code == 0, r.output
    d = ImageDataset(dest)
    assert len(d) == 2 and d.resolution == 32
    assert meta_of(dest)["source_names"] == ["000001.png", "000002.png"]
    assert only(tmp_path) == ["celeba32", "img_align_celeba"]


def test_create_celeba_skip_makes_a_held_out_split(fake_celeba, tmp_path):
    train, held = tmp_path / "train", tmp_path / "held"
    assert invoke("create_celeba", "--source", fake_celeba, "--dest", train, "--resolution", 32,
                  "--max-images", 2).exit_code == 0
    r = invoke("create_celeba", "--source", fake_celeba, "--dest", held, "--resolution", 32, "--skip", 3)
    assert r.exit_code == 0, r.output
    # Sorted names: 000001, 000002, 000002a (too small), 000003, 000003a (corrupt), 000004; skip the first 3.
    assert meta_of(held)["source_names"] == ["000003.png", "000004.png"]
    assert not set(meta_of(held)["source_names"]) & set(meta_of(train)["source_names"])
    assert meta_of(held)["selection"]["skip"] == 3
    r = invoke("create_celeba", "--source", fake_celeba, "--dest", tmp_path / "none.zip", "--skip", 6)
    assert r.exit_code == 2 and "--skip 6 leaves none of the 6 images" in r.output


def test_create_celeba_bad_options(fake_celeba, tmp_path):
    r = invoke("create_celeba", "--source", fake_celeba, "--dest", tmp_path / "x.zip", "--size", 100)
    assert r.exit_code == 2 and "--resolution" in r.output
    r = invoke("create_celeba", "--source", tmp_path / "missing", "--dest", tmp_path / "x.zip")
    assert r.exit_code == 2 and "does not exist" in r.output
    r = invoke("create_celeba", "--source", fake_celeba, "--dest", tmp_path / "x.zip", "--cx", 10)
    assert r.exit_code == 1 and "no image could be written" in r.stderr  # every box leaves its image
    assert only(tmp_path) == ["img_align_celeba"]


@pytest.fixture()
def mixed_folder(tmp_path) -> Path:
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)).save(root / "a_wide.jpg", quality=95)
    Image.fromarray(rng.integers(0, 256, (40, 20), dtype=np.uint8), "L").save(root / "b_gray.png")
    Image.fromarray(rng.integers(0, 256, (24, 24, 4), dtype=np.uint8), "RGBA").save(root / "sub" / "c_rgba.png")
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / "sub" / "d_small.png")
    (root / "sub" / "e_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (root / "readme.md").write_text("ignored")
    return root


def test_create_from_images(mixed_folder, tmp_path):
    dest = tmp_path / "out.zip"
    r = invoke("create_from_images", "--source", mixed_folder, "--dest", dest, "--resolution", 16)
    assert r.exit_code == 0, r.output
    assert "skipped sub/e_corrupt.png: cannot decode" in r.stderr and "wrote 4 images (16x16)" in r.stdout
    d = ImageDataset(dest)
    assert len(d) == 4 and all(d[i][0].shape == (3, 16, 16) for i in range(4))
    assert meta_of(dest)["source_names"] == ["a_wide.jpg", "b_gray.png", "sub/c_rgba.png", "sub/d_small.png"]
    gray = d[1][0]
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])  # Grayscale stays gray in RGB.


def test_create_from_images_shuffle_and_max(mixed_folder, tmp_path):
    def names(seed: int, name: str) -> list[str]:
        dest = tmp_path / name
        args = ["--source", mixed_folder, "--dest", dest, "--resolution", 8, "--max-images", 3, "--shuffle"]
        r = invoke("create_from_images", *args, "--seed", seed)
        assert r.exit_code == 0, r.output
        return meta_of(dest)["source_names"]

    a, b = names(1, "a.zip"), names(1, "b.zip")
    assert a == b and len(a) == 3
    assert len({tuple(names(s, f"s{s}.zip")) for s in range(2, 8)} | {tuple(a)}) > 1
    assert meta_of(tmp_path / "a.zip")["selection"]["order"] == "shuffled (seed 1)"


def test_create_from_images_errors(mixed_folder, tmp_path):
    for res in (48, 2, "x"):
        r = invoke("create_from_images", "--source", mixed_folder, "--dest", tmp_path / "x.zip", "--resolution", res)
        assert r.exit_code == 2 and "--resolution" in r.output
    r = invoke("create_from_images", "--source", mixed_folder, "--dest", tmp_path / "x.zip")
    assert r.exit_code == 2 and "Missing option '--resolution'" in r.output
    r = invoke("create_from_images", "--source", mixed_folder, "--dest", tmp_path / "x.zip", "--resolution", 8,
               "--max-images", 0)
    assert r.exit_code == 2
    (tmp_path / "empty").mkdir()
    r = invoke("create_from_images", "--source", tmp_path / "empty", "--dest", tmp_path / "x.zip", "--resolution", 8)
    assert r.exit_code == 2 and "no .png/.jpg/.jpeg files" in r.output
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_bytes(b"nope")
    (bad / "b.jpg").write_bytes(b"nope")
    r = invoke("create_from_images", "--source", bad, "--dest", tmp_path / "x.zip", "--resolution", 8)
    assert r.exit_code == 1
    assert "skipped a.png: cannot decode" in r.stderr and "skipped b.jpg: cannot decode" in r.stderr
    assert "no image could be written (2 skipped)" in r.stderr
    assert only(tmp_path) == ["bad", "empty", "photos"]


def test_existing_dest_and_force(mixed_folder, tmp_path):
    dest = tmp_path / "out.zip"
    dest.write_bytes(b"precious")
    args = ["create_from_images", "--source", mixed_folder, "--dest", dest, "--resolution", 8]
    r = invoke(*args)
    assert r.exit_code == 2 and "already exists" in r.output and dest.read_bytes() == b"precious"
    r = invoke(*args, "--force")
    assert r.exit_code == 0, r.output
    assert ImageDataset(dest).resolution == 8
    assert only(tmp_path) == ["out.zip", "photos"]


@pytest.mark.parametrize("dest_name", ["out.zip", "out"])
def test_interrupt_leaves_nothing(mixed_folder, tmp_path, monkeypatch, dest_name):
    calls = []
    original = ds.Recipe.__call__

    def interrupted(self, img):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, img)

    monkeypatch.setattr(ds.Recipe, "__call__", interrupted)
    r = invoke("create_from_images", "--source", mixed_folder, "--dest", tmp_path / dest_name, "--resolution", 8)
    assert r.exit_code != 0 and len(calls) == 3
    assert only(tmp_path) == ["photos"]  # No dest, no temporary file or folder.


def test_create_lsun(tmp_path):
    lmdb = pytest.importorskip("lmdb")
    rng = np.random.default_rng(2)
    env = lmdb.open(str(tmp_path / "bedroom_lmdb"), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for key, (w, h) in [(b"f00", (40, 30)), (b"a11", (30, 44)), (b"c22", (32, 32))]:
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, format="JPEG")
            txn.put(key, buf.getvalue())
        txn.put(b"b99", b"corrupt")
    env.close()
    dest = tmp_path / "bedroom.zip"
    r = invoke("create_lsun", "--source", tmp_path / "bedroom_lmdb", "--dest", dest, "--resolution", 16,
               "--max-images", 2)
    assert r.exit_code == 0, r.output
    assert "skipped b99: cannot decode" in r.stderr
    assert meta_of(dest)["source_names"] == ["a11", "c22"]  # Key order; the corrupt one is replaced.
    assert ImageDataset(dest).resolution == 16
    (tmp_path / "not_lmdb").mkdir()
    r = invoke("create_lsun", "--source", tmp_path / "not_lmdb", "--dest", tmp_path / "x.zip", "--resolution", 16)
    assert r.exit_code == 2 and "not a readable LMDB" in r.output
    assert not (tmp_path / "x.zip").exists()


def test_create_builtin_deterministic(tmp_path):
    a, b, c = tmp_path / "a.zip", tmp_path / "b.zip", tmp_path / "c.zip"
    for dest, seed in [(a, 0), (b, 0), (c, 1)]:
        r = invoke("create_builtin", "--dest", dest, "--max-images", 12, "--seed", seed)
        assert r.exit_code == 0, r.output
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    d = ImageDataset(a, xflip=True)
    assert len(d) == 24 and d.resolution == 32
    assert meta_of(a)["source"] == {"kind": "builtin", "generator": "toy_faces", "seed": 0}


def test_create_builtin_subprocess_folder(tmp_path):
    dest = tmp_path / "toy64"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.run([sys.executable, "dataset_tool.py", "create_builtin", "--dest", str(dest), "--resolution", "64",
                        "--max-images", "5", "--seed", "3"], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    d = ImageDataset(dest)
    assert len(d) == 5 and d.resolution == 64
    expected = np.asarray(make_builtin_image(4, 64, seed=3)).transpose(2, 0, 1)
    assert np.array_equal(d[4][0].numpy(), expected)
    p = subprocess.run([sys.executable, "dataset_tool.py", "create_builtin", "--dest", str(dest)], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "already exists" in p.stderr


@pytest.mark.skipif(not CELEBA_HALF.is_dir(), reason=f"real CelebA images not found at {CELEBA_HALF}")
def test_real_celeba_half_size_recipe(tmp_path):
    dest = tmp_path / "celeba32.zip"
    r = invoke("create_celeba", "--source", CELEBA_HALF, "--dest", dest, "--cx", 44.5, "--cy", 60.5, "--size", 64,
               "--resolution", 32, "--max-images", 20)
    assert r.exit_code == 0, r.output
    d = ImageDataset(dest)
    assert len(d) == 20 and d.resolution == 32
    meta = meta_of(dest)
    assert meta["source_names"] == [f"{i:06d}.jpg" for i in range(1, 21)] and meta["skipped"] == []
    x = torch.stack([d[i][0] for i in range(20)]).float()
    assert 40 < x.mean() < 220 and x.std() > 30  # Real photographs, not blank crops.
