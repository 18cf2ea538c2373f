"""scripts/secrecy.py end to end on tiny folders: a fingerprint the classifier can see, one it cannot, and the
output rules."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def folder(path: Path, n: int, seed: int, pattern: int = 0) -> Path:
    """n noise images, 16x16; ``pattern`` adds a +-pattern checkerboard to the red channel (a visible mark)."""
    path.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    board = ((np.arange(16)[:, None] + np.arange(16)[None]) % 2 * 2 - 1) * pattern
    for i in range(n):
        x = rng.integers(60, 196, (16, 16, 3))
        x[..., 0] += board
        Image.fromarray(np.clip(x, 0, 255).astype(np.uint8)).save(path / f"seed{i:04d}.png")
    return path


def secrecy(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/secrecy.py", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def test_a_visible_mark_is_found_and_an_absent_one_is_not(tmp_path):
    plain = folder(tmp_path / "plain", 48, seed=0)
    marked = folder(tmp_path / "marked", 48, seed=1, pattern=20)
    same = folder(tmp_path / "same", 48, seed=2)
    res = secrecy("--plain", plain, "--fingerprinted", marked, "--out", tmp_path / "a.json", "--epochs", 15)
    assert res.returncode == 0, res.stderr[-2000:]
    a = json.loads((tmp_path / "a.json").read_text())
    assert a["accuracy"] >= 0.9 and a["train_images"] == [24, 24] and a["test_images"] == [24, 24]
    res = secrecy("--plain", plain, "--fingerprinted", same, "--out", tmp_path / "b.json", "--epochs", 15)
    assert res.returncode == 0, res.stderr[-2000:]
    assert 0.25 <= json.loads((tmp_path / "b.json").read_text())["accuracy"] <= 0.75   # nothing to see: chance
    # Its own result is replaced; an input folder or a foreign file is not written.
    res = secrecy("--plain", plain, "--fingerprinted", marked, "--out", tmp_path / "a.json", "--epochs", 1)
    assert res.returncode == 0 and json.loads((tmp_path / "a.json").read_text())["epochs"] == 1
    (tmp_path / "notes.json").write_text('{"mine": 1}')
    before = (plain / "seed0000.png").read_bytes()
    for out, says in ((plain / "seed0000.png", "--plain"), (tmp_path / "notes.json", "result of scripts/secrecy.py")):
        res = secrecy("--plain", plain, "--fingerprinted", marked, "--out", out, "--epochs", 1)
        assert res.returncode != 0 and says in res.stderr
    assert (plain / "seed0000.png").read_bytes() == before and (tmp_path / "notes.json").read_text() == '{"mine": 1}'
    res = secrecy("--plain", tmp_path, "--fingerprinted", marked, "--out", tmp_path / "c.json")   # no PNG directly
    assert res.returncode == 2 and "at least 2" in res.stderr
    # Each folder gives half of its images to training: two folders of 5 -> 3 + 3 to train, 2 + 2 to test.
    two = [folder(tmp_path / f"u{i}", 5, seed=10 + i, pattern=20) for i in range(2)]
    res = secrecy("--plain", plain, "--fingerprinted", two[0], "--fingerprinted", two[1], "--out",
                  tmp_path / "d.json", "--epochs", 1)
    d = json.loads((tmp_path / "d.json").read_text())
    assert res.returncode == 0 and d["train_images"] == [24, 6] and d["test_images"] == [24, 4]
