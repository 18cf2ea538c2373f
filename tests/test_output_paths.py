"""dnnlib.util.check_outputs: no output may resolve to an input, lie in an input folder, or collide."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dnnlib.util import OutputPathError, check_outputs


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(b"x")
    (tmp_path / "reg.sqlite").write_bytes(b"r")
    return tmp_path


@pytest.mark.parametrize("make_out, inputs, msg", [
    (lambda t: t / "reg.sqlite", lambda t: {"--registry": t / "reg.sqlite"}, "is the input --registry"),
    (lambda t: t / "in" / "a.png", lambda t: {"--images": [t / "in"]}, "inside the input folder"),
    (lambda t: t / "in" / ".." / "reg.sqlite", lambda t: {"--registry": t / "reg.sqlite"}, "is the input"),
    (lambda t: t, lambda t: {"--images": [t / "in" / "a.png"]}, "contains the input"),
])
def test_an_output_that_is_or_holds_an_input_is_refused(tree, make_out, inputs, msg):
    with pytest.raises(OutputPathError, match=msg):
        check_outputs({"--out": make_out(tree)}, inputs(tree))


def test_symlinks_and_hard_links_are_followed(tree):
    os.symlink(tree / "reg.sqlite", tree / "link.csv")
    with pytest.raises(OutputPathError, match="is the input"):
        check_outputs({"--out": tree / "link.csv"}, {"--registry": tree / "reg.sqlite"})
    os.link(tree / "reg.sqlite", tree / "hard.csv")
    with pytest.raises(OutputPathError, match="is the input"):
        check_outputs({"--out": tree / "hard.csv"}, {"--registry": tree / "reg.sqlite"})


def test_two_outputs_that_are_one_file_are_refused(tree):
    with pytest.raises(OutputPathError, match="--out and --json are the same file"):
        check_outputs({"--out": tree / "x", "--json": tree / "sub" / ".." / "x"}, {})


def test_distinct_paths_pass(tree):
    check_outputs({"--out": tree / "res.csv", "--json": tree / "res.json", "--none": None},
                  {"--registry": tree / "reg.sqlite", "--images": [tree / "in"]})
    # A new file inside an input folder overwrites nothing.
    check_outputs({"--out": tree / "in" / "results.csv"}, {"--images": [tree / "in"]})


def test_a_failed_atomic_write_leaves_no_folder_it_created(tmp_path):
    from dnnlib.util import atomic_dir, atomic_path
    for writer in (atomic_path, atomic_dir):
        with pytest.raises(RuntimeError):
            with writer(tmp_path / "a" / "b" / "out") as tmp:
                assert tmp.exists()
                raise RuntimeError("the write failed")
        assert list(tmp_path.iterdir()) == []
    with atomic_path(tmp_path / "a" / "b" / "out.txt") as tmp:
        tmp.write_text("done")
    assert (tmp_path / "a" / "b" / "out.txt").read_text() == "done"


@pytest.mark.parametrize("out, message", [("a.png", "is the input --images"), ("notes.txt", "not a PNG image")])
def test_figure_scripts_never_overwrite_an_input_or_a_non_png(tmp_path, out, message):
    import subprocess
    import sys

    from PIL import Image
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("my notes")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    script = Path(__file__).resolve().parents[1] / "fig" / "stack_grids.py"
    r = subprocess.run([sys.executable, str(script), str(tmp_path / "a.png"), "--out", str(tmp_path / out)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    r = subprocess.run([sys.executable, str(script), str(tmp_path / "a.png"), "--out", str(tmp_path / "b.png")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"
