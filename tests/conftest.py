"""Shared test settings (deterministic, thread-limited torch on CPU) and the tiny built-in data set."""

import os
import tempfile
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

torch.set_num_threads(2)

# The suite's caches (data set checks, FID statistics, downloads) go to a folder of its own, never to the
# user's ~/.cache/sgf; subprocesses inherit it. Set before any test imports the code that reads it.
os.environ["SGF_CACHE_DIR"] = tempfile.mkdtemp(prefix="sgf-test-cache-")


@pytest.fixture(scope="session")
def data(tmp_path_factory) -> Path:
    """64 built-in toy faces, 32x32, as a dataset zip (made by dataset_tool.py, no download)."""
    import dataset_tool

    dest = tmp_path_factory.mktemp("data") / "builtin32.zip"
    result = CliRunner().invoke(dataset_tool.cli, ["create_builtin", "--dest", str(dest), "--max-images", "64"])
    assert result.exit_code == 0, result.output
    return dest
