"""Shared test settings (deterministic, thread-limited torch on CPU) and the tiny built-in data set."""

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

# Under pytest-xdist (the README's test command runs one worker per core) each worker and every process it
# starts takes one thread: more threads than cores makes a CPU run several times slower, not faster.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
else:
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


# --- data-set tests (tests/test_dataset.py and tests/test_dataset_check.py use check_cache in every test) -------

@pytest.fixture()
def check_cache(tmp_path_factory, monkeypatch) -> Path:
    """A fresh dataset-check cache per test, outside ``tmp_path`` (whose listing the tests compare)."""
    from data import dataset_check

    root = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv(dataset_check.CACHE_ENV, str(root))
    return root / "dataset-checks"


@pytest.fixture()
def images():
    """Five random 8x8 RGB images."""
    from tests.dataset_fixtures import random_rgb

    rng = np.random.default_rng(5)
    return [random_rgb(rng, 8, 8) for _ in range(5)]
