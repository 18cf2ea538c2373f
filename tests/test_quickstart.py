"""scripts/quickstart.sh (the README's main command) end to end, with a training of two steps.

The measured full runs (time and attributions) are in docs/results/quickstart.md; this
test checks that every stage runs and writes what it promises, and that a rerun continues without
reissuing fingerprints.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_quickstart(out: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, QUICKSTART_OUT=str(out), KIMG="0.032", BASE_KIMG="0.032", AE_KIMG="0.128",
               OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"),
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    return subprocess.run(["bash", "scripts/quickstart.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)


def registry_rows(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as con:
        return sorted(con.execute("SELECT user, bits FROM fingerprints").fetchall())


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_quickstart_end_to_end_and_rerun(tmp_path):
    out = tmp_path / "qs"
    res = run_quickstart(out)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "quickstart finished" in res.stdout

    snapshots = sorted(out.glob("runs/*/network-snapshot-*.safetensors"))
    assert snapshots and Path(str(snapshots[-1]) + ".calibration.json").is_file()
    assert sorted(p.stem for p in (out / "issued").glob("*.safetensors")) == ["alice", "bob", "carol"]
    for user in ("alice", "bob", "carol"):
        assert len(list((out / "generated" / user).glob("seed*.png"))) == 16
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 96
    assert {r["decision"] for r in rows} <= {"attributed", "fingerprinted-unknown", "not-fingerprinted"}
    assert all(r["user"] == "" for r in rows if r["decision"] != "attributed")
    assert (out / "results.json").is_file() and (out / "detection.png").stat().st_size > 0
    assert (out / "same_seeds.png").stat().st_size > 0
    assert len(list((out / "baseline_images").glob("seed*.png"))) == 16
    # Stage 2 started from stage 1: the baseline's snapshot and the autoencoder's frozen decoder.
    options = json.loads(next(out.glob("runs/*/training_options.json")).read_text())
    assert Path(options["baseline"]).parent.parent == out / "baseline" and options["freeze_decoder"]
    assert Path(options["fp_decoder"]).parent.parent == out / "ae"
    users = registry_rows(out / "registry.sqlite")
    assert [u for u, _ in users] == ["alice", "bob", "carol"]

    # A rerun resumes: no new data, no new training, the same three fingerprints.
    res2 = run_quickstart(out)
    assert res2.returncode == 0, res2.stdout[-3000:] + res2.stderr[-3000:]
    assert registry_rows(out / "registry.sqlite") == users
    assert sorted(out.glob("runs/*/network-snapshot-*.safetensors")) == snapshots
    assert len(list(out.glob("baseline/0*"))) == 1 and len(list(out.glob("ae/0*"))) == 1
