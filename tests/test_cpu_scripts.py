"""The CPU recipe scripts end to end on a tiny budget (scripts/celeba32_cpu.sh, scripts/celeba64_ae.sh) and the
cat256 Table 1 wrapper (scripts/cat256.sh; its siblings are tested in tests/test_table1.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def script(name: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", f"scripts/{name}", *args], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **env})


def test_celeba32_cpu_trains_the_cpu32_recipe(data, tmp_path):
    res = script("celeba32_cpu.sh", "--total-kimg", "0.016", "--batch", "8", "--tick", "0.016", "--snap", "1",
                 "--workers", "0", "--metrics", "none", "--amp", "off", "--device", "cpu",
                 DATA=str(data), OUT=str(tmp_path / "out"))
    assert res.returncode == 0, res.stderr[-2000:]
    (run_dir,) = (tmp_path / "out").iterdir()
    assert "-cpu32-tiny32-fp32-" in run_dir.name and list(run_dir.glob("network-snapshot-*.safetensors"))
    missing = script("celeba32_cpu.sh", DATA=str(tmp_path / "nope.zip"), OUT=str(tmp_path / "out2"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr and not (tmp_path / "out2").exists()


def test_celeba64_ae_trains_the_cpu64_autoencoder(data, tmp_path):
    res = script("celeba64_ae.sh", "--total-kimg", "0.016", "--batch", "8", "--tick", "0.008", "--snap", "1",
                 "--holdout", "8", "--workers", "0", "--device", "cpu", DATA=str(data), OUT=str(tmp_path / "out"))
    assert res.returncode == 0, res.stderr[-2000:]
    (run_dir,) = (tmp_path / "out").iterdir()
    assert "-cpu64-ae64-bits100-" in run_dir.name and list(run_dir.glob("ae-snapshot-*.safetensors"))
    missing = script("celeba64_ae.sh", DATA=str(tmp_path / "nope.zip"), OUT=str(tmp_path / "out2"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr and not (tmp_path / "out2").exists()


def test_cat256_calls_table1(tmp_path):
    src = tmp_path / "cat_lmdb"
    src.mkdir()
    res = script("cat256.sh", str(src), "--outdir", str(tmp_path / "o"), "--dry-run")
    assert res.returncode == 0, res.stderr
    assert "Table 1, cat256" in res.stdout and f"create_lsun --source {src}" in res.stdout
    res = script("cat256.sh")
    assert res.returncode != 0 and "usage:" in res.stderr
