"""dnnlib.util.check_outputs: no output may resolve to an input, lie in an input folder, or collide."""

from __future__ import annotations

import os

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
