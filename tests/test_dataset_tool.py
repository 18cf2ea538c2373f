"""``dataset_tool.py`` end to end: every subcommand on data the tests make (a fake aligned CelebA
with marked pixels, mixed-mode folders, an LSUN-style LMDB, the built-in faces), per-file skip
reports, option errors, atomic output, and 20 real CelebA images when ``shared/data`` is present."""

from __future__ import annotations

import errno
import io
import json
import os
import signal
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
from data import dataset_check
from data.builtin_faces import make_builtin_image
from data.dataset import ImageDataset
from data.prepare import Recipe
from tests.shared_paths import DATA

REPO = Path(__file__).resolve().parents[1]
CELEBA_HALF = DATA / "celeba_89x109"
MARK_TL, MARK_BR = (255, 0, 255), (0, 255, 255)


def invoke(*args) -> object:
    return CliRunner().invoke(dataset_tool.cli, [str(a) for a in args])


@pytest.fixture(autouse=True)
def check_cache(tmp_path_factory, monkeypatch) -> None:
    """Data set checks cache outside ``tmp_path`` (whose listing the tests compare) and ``~/.cache``."""
    monkeypatch.setenv(dataset_check.CACHE_ENV, str(tmp_path_factory.mktemp("cache")))


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
    r = invoke(*args, "--force")  # Not a data set this tool wrote: kept.
    assert r.exit_code == 1 and "not a data set written by dataset_tool" in r.stderr
    assert dest.read_bytes() == b"precious" and only(tmp_path) == ["out.zip", "photos"]


@pytest.mark.parametrize("dest_name", ["out.zip", "out"])
def test_interrupt_leaves_nothing(mixed_folder, tmp_path, monkeypatch, dest_name):
    calls = []
    original = Recipe.__call__

    def interrupted(self, img):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, img)

    monkeypatch.setattr(Recipe, "__call__", interrupted)
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


# --- never destroy a user's files; clean up after killed runs; one-line errors (issue 14) ------------

def tree(root: Path) -> dict[str, object]:
    """Everything under ``root`` (links not followed): file bytes, link targets, folders."""
    out: dict[str, object] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(folder) / name
            rel = p.relative_to(root).as_posix()
            out[rel] = ("link", os.readlink(p)) if p.is_symlink() else p.read_bytes() if p.is_file() else "folder"
    return out


def one_error_line(stderr: str) -> str:
    assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    return stderr


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def make_ours(tmp_path: Path, source: Path, name: str, *extra) -> Path:
    dest = tmp_path / name
    r = invoke("create_from_images", "--source", source, "--dest", dest, "--resolution", 8, *extra)
    assert r.exit_code == 0, r.output
    return dest


def foreign_folder(tmp_path: Path, source: Path) -> Path:
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "thesis.tex").write_text("chapter 1")
    (tmp_path / "work" / "results.bin").write_bytes(b"\0\1\2")
    return tmp_path / "work"


def ours_plus_foreign(tmp_path: Path, source: Path) -> Path:
    dest = make_ours(tmp_path, source, "ds")
    (dest / "00000" / "notes.txt").write_text("mine")
    return dest


def foreign_zip(tmp_path: Path, source: Path) -> Path:
    with zipfile.ZipFile(tmp_path / "backup.zip", "w") as z:
        z.writestr("dataset.json", '{"format": "sgf-dataset"}')
        z.writestr("thesis.tex", "chapter 1")
    return tmp_path / "backup.zip"


def text_file(tmp_path: Path, source: Path) -> Path:
    (tmp_path / "victim.txt").write_text("dear diary")
    return tmp_path / "victim.txt"


def link_to(target: str, name: str):
    def make(tmp_path: Path, source: Path) -> Path:
        if target == "ours.zip":
            make_ours(tmp_path, source, target)
        (tmp_path / name).symlink_to(source if target == "source" else tmp_path / target)
        return tmp_path / name
    return make


def empty_folder(tmp_path: Path, source: Path) -> Path:
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


FORCE_REFUSED = {  # case: (make the existing --dest, words in the error)
    "the source folder": (lambda t, s: s, "is the input --source"),
    "a parent of the source": (lambda t, s: t, "contains the input --source"),
    "a symlink to the source": (link_to("source", "link"), "is the input --source"),
    "a folder with foreign files": (foreign_folder, "which this tool never writes"),
    "our folder plus a foreign file": (ours_plus_foreign, "it holds 00000/notes.txt, which this tool never writes"),
    "a zip of other files": (foreign_zip, "it holds thesis.tex, which this tool never writes"),
    "a text file": (text_file, "it is not a folder"),
    "a symlink to our zip": (link_to("ours.zip", "link.zip"), "it is a symbolic link"),
    "an empty folder": (empty_folder, "it has no dataset.json"),
}


@pytest.mark.parametrize("case", list(FORCE_REFUSED))
def test_force_never_replaces_what_it_did_not_write(mixed_folder, tmp_path, case):
    make, words = FORCE_REFUSED[case]
    dest = make(tmp_path, mixed_folder)
    before = tree(tmp_path)
    r = invoke("create_from_images", "--source", mixed_folder, "--dest", dest, "--resolution", 8, "--force")
    assert r.exit_code == 1 and words in one_error_line(r.stderr) and str(dest) in r.stderr
    assert tree(tmp_path) == before


@pytest.mark.parametrize("name", ["ours.zip", "ours"])
def test_force_replaces_its_own_output(mixed_folder, tmp_path, name):
    dest = make_ours(tmp_path, mixed_folder, name)
    assert ImageDataset(dest).num_images == 4
    r = invoke("create_from_images", "--source", mixed_folder, "--dest", dest, "--resolution", 16, "--max-images", 2,
               "--force")
    assert r.exit_code == 0, r.output
    d = ImageDataset(dest)
    assert d.resolution == 16 and d.num_images == 2  # Replaced, not merged.
    assert only(tmp_path) == sorted([name, "photos"])


CHILD = """
import sys
import dataset_tool

original = dataset_tool.read_builtin

def paused(n, resolution, seed):
    for i, item in enumerate(original(n, resolution, seed)):
        if i == 3:
            print("writing", flush=True)
            sys.stdin.readline()  # Waits here, mid-write, for the signal.
        yield item

dataset_tool.read_builtin = paused
sys.argv = ["dataset_tool.py", "create_builtin", "--dest", sys.argv[1], "--max-images", "8"]
dataset_tool.main()
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
@pytest.mark.parametrize("name", ["toy.zip", "toy"])
def test_killed_run_leaves_nothing_for_long(tmp_path, sig, name):
    dest = tmp_path / name
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(dest)], cwd=REPO, env=env, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "writing\n"
        temps = only(tmp_path)
        assert len(temps) == 1 and temps[0].startswith(f".{name}.{p.pid}-") and temps[0].endswith(".tmp")
        p.send_signal(sig)
        _, err = p.communicate(timeout=60)
    finally:
        p.kill()
    if sig == signal.SIGTERM:  # Caught: the writer removes its temporary itself.
        assert p.returncode == 128 + signal.SIGTERM
        assert err.splitlines()[-1] == f"error: stopped by SIGTERM; nothing was written to {dest}"
        assert only(tmp_path) == []
        return
    assert p.returncode == -signal.SIGKILL and only(tmp_path) == temps  # Left behind...
    r = invoke("create_builtin", "--dest", dest, "--max-images", 4)  # ...until the next run for that --dest.
    assert r.exit_code == 0, r.output
    assert f"removed {tmp_path / temps[0]}, left behind by process {p.pid}" in r.stderr
    assert only(tmp_path) == [name] and ImageDataset(dest).num_images == 4


def test_stale_temporaries_only_ours_and_only_dead(tmp_path):
    import fcntl

    pid = dead_pid()
    stale = [f".out.zip.{pid}-0123abcd.tmp", f".out.zip.{pid}-89abcdef.tmp", f".out.zip.{10**30}-0123abcd.tmp"]
    (tmp_path / stale[0]).write_bytes(b"half a zip")
    (tmp_path / stale[1] / "00000").mkdir(parents=True)
    (tmp_path / stale[2]).write_bytes(b"")
    keep = [f".out.zip.{os.getpid()}-00000000.tmp",      # its process is alive
            f".out.zip.{pid}-feedf00d.tmp",              # locked (a writer on another machine)
            ".out.zip.notes.tmp", f".other.zip.{pid}-0123abcd.tmp", f"out.zip.{pid}-0123abcd.tmp",
            f".out.zip.{pid}-0123abcd.tmp.bak", f".out.zip.{pid}-0123ABCD.tmp", ".out.zip.-1-0123abcd.tmp"]
    for name in keep:
        (tmp_path / name).write_text("keep")
    fd = os.open(tmp_path / keep[1], os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        r = invoke("create_builtin", "--dest", tmp_path / "out.zip", "--max-images", 2)
    finally:
        os.close(fd)
    assert r.exit_code == 0, r.output
    assert all(f"removed {tmp_path / n}, left behind by process {n.split('.')[3].split('-')[0]}" in r.stderr
               for n in stale)
    assert only(tmp_path) == sorted(["out.zip", *keep])


def test_killed_while_swapping_folders_puts_the_old_one_back(mixed_folder, tmp_path):
    dest = make_ours(tmp_path, mixed_folder, "ds")
    before = tree(dest)
    pid = dead_pid()
    os.replace(dest, tmp_path / f".ds.{pid}-0123abcd.old")  # As if killed between the two renames.
    (tmp_path / f".ds.{pid}-4567abcd.tmp" / "00000").mkdir(parents=True)
    r = invoke("create_from_images", "--source", mixed_folder, "--dest", dest, "--resolution", 16)
    assert r.exit_code == 1 and f"restored {dest} from .ds.{pid}-0123abcd.old" in r.stderr
    assert r.stderr.splitlines()[-1].startswith(f"error: {dest} already exists")
    assert tree(dest) == before and only(tmp_path) == ["ds", "photos"]


@pytest.fixture()
def read_only(tmp_path, monkeypatch) -> Path:
    """A folder nobody may create anything in (as root, where modes do not bind, os.open/os.mkdir refuse it)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    if os.geteuid() == 0:
        def refuse(path) -> None:
            if Path(os.path.abspath(path)).is_relative_to(folder):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

        real_open, real_mkdir = os.open, os.mkdir
        monkeypatch.setattr(os, "open", lambda path, flags, *a, **k: (flags & os.O_CREAT and refuse(path))
                            or real_open(path, flags, *a, **k))
        monkeypatch.setattr(os, "mkdir", lambda path, *a, **k: refuse(path) or real_mkdir(path, *a, **k))
    yield folder
    folder.chmod(0o755)


@pytest.mark.parametrize("name", ["x.zip", "x", "sub/x.zip"])
def test_read_only_destination(read_only, name):
    dest = read_only / name
    r = invoke("create_builtin", "--dest", dest, "--max-images", 3)
    assert r.exit_code == 1
    line = one_error_line(r.stderr)
    assert line.startswith(f"error: cannot write {dest}: Permission denied") and "folder you can write to" in line
    assert tree(read_only) == {}


@pytest.mark.parametrize("name", ["x.zip", "x", "a/b/x.zip"])
def test_full_disk(tmp_path, monkeypatch, name):
    dest = tmp_path / name
    calls = []

    def full(original):
        def write(*args, **kwargs):
            calls.append(1)
            if len(calls) == 3:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return original(*args, **kwargs)
        return write

    monkeypatch.setattr(zipfile.ZipFile, "writestr", full(zipfile.ZipFile.writestr))
    monkeypatch.setattr(Path, "write_bytes", full(Path.write_bytes))
    r = invoke("create_builtin", "--dest", dest, "--max-images", 5)
    assert r.exit_code == 1 and len(calls) == 3
    assert one_error_line(r.stderr) == (f"error: cannot write {dest}: No space left on device; nothing was written: "
                                        f"free some space or choose a --dest on another disk\n")
    assert tree(tmp_path) == {}
