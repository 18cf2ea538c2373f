"""A release TF pickle all the way (issue 17): legacy.py -> generate.py images -> issue users -> their images ->
calibrate -> detect -> calc_metrics, on ``../shared/oracle/A`` (a 32x32, 32-bit network built with the release's
own code; its outputs are checked against the release in tests/test_legacy_cli.py). The README's "Converting the
release's pickles" section documents the same commands."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from networks.checkpoint import load_network
from tests.shared_paths import ORACLE

REPO = Path(__file__).resolve().parents[1]
SNAPSHOT = ORACLE / "network-snapshot.pkl"
pytestmark = pytest.mark.skipif(not SNAPSHOT.is_file(), reason=f"oracle A not found at {ORACLE}")


def run(*args: str) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"{args[0]} failed:\n{res.stderr[-2000:]}"
    return res


def png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)


def test_release_pickle_all_the_way(tmp_path: Path) -> None:
    converted = tmp_path / "A.safetensors"
    run("legacy.py", "--source", str(SNAPSHOT), "--dest", str(converted))

    # Generation: seed s draws z then c with RandomState(s), as the release's generate-images does; the PNG is
    # G_ema(z, c) with the stored noise, rounded to 8 bits.
    run("generate.py", "images", "--network", str(converted), "--seeds", "0-3", "--outdir", str(tmp_path / "gen"),
        "--device", "cpu")
    G = load_network(converted, names=["G_ema"])["G_ema"]
    for s in range(4):
        rnd = np.random.RandomState(s)
        z = torch.from_numpy(rnd.randn(1, G.z_dim)).float()
        c = torch.from_numpy(rnd.randint(0, 2, size=(1, G.n_bits))).float()
        with torch.no_grad():
            img = G(z, c, noise_mode="const")[0].permute(1, 2, 0).numpy()
        expected = np.clip(np.rint((img + 1) * 127.5), 0, 255)
        assert np.abs(png(tmp_path / "gen" / f"seed{s:04d}.png") - expected).max() <= 1.0, s
    rows = list(csv.DictReader(open(tmp_path / "gen" / "images.csv")))
    for r in rows:
        rnd = np.random.RandomState(int(r["seed"]))
        rnd.randn(1, G.z_dim)
        assert r["fingerprint"] == "".join(str(int(b)) for b in rnd.randint(0, 2, size=G.n_bits))

    # Issuing two users from the converted snapshot, and their images.
    registry = tmp_path / "registry.sqlite"
    run("generate.py", "issue", "--network", str(converted), "--registry", str(registry), "--users", "alice,bob",
        "--outdir", str(tmp_path / "issued"), "--device", "cpu")
    run("generate.py", "images", "--network", str(tmp_path / "issued" / "alice.safetensors"), "--network",
        str(tmp_path / "issued" / "bob.safetensors"), "--seeds", "0-3", "--outdir", str(tmp_path / "users"),
        "--device", "cpu")
    # A user's image of seed s is the converted snapshot's image of z_s under that user's fingerprint.
    run("generate.py", "export-registry", "--registry", str(registry), "--out", str(tmp_path / "registry.csv"))
    bits = {r["user"]: r["bits"] for r in csv.DictReader(open(tmp_path / "registry.csv"))}
    for user in ("alice", "bob"):
        c = torch.tensor([[float(b) for b in bits[user]]])
        for s in range(4):
            z = torch.from_numpy(np.random.RandomState(s).randn(1, G.z_dim)).float()
            with torch.no_grad():
                img = G(z, c, noise_mode="const")[0].permute(1, 2, 0).numpy()
            expected = np.clip(np.rint((img + 1) * 127.5), 0, 255)
            assert np.abs(png(tmp_path / "users" / user / f"seed{s:04d}.png") - expected).max() <= 1.0, (user, s)

    # Calibration, detection and metrics on the converted file.
    reals = tmp_path / "real"
    run("dataset_tool.py", "create_builtin", "--dest", str(reals), "--resolution", "32", "--max-images", "64",
        "--seed", "1")
    # The release network is random (not trained): its F reads nothing, so what is checked is that every step
    # runs on the converted file and decides about every image; the decisions of a trained network are tested
    # in tests/test_detect_cli.py.
    run("detect_attribute.py", "calibrate", "--network", str(converted), "--real", str(reals), "--device", "cpu")
    res = run("detect_attribute.py", "detect", "--network", str(converted), "--registry", str(registry),
              "--images", str(tmp_path / "users"), str(reals), "--out", str(tmp_path / "results.csv"), "--fpr", "1e-3",
              "--device", "cpu")
    decided = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert len(decided) == 8 + 64, res.stdout
    (tmp_path / "metrics").mkdir()
    run("calc_metrics.py", "--network", str(converted), "--metrics", "bit_acc,swd", "--data", str(reals), "--num",
        "64", "--run-dir", str(tmp_path / "metrics"), "--device", "cpu")
    bit_acc = json.loads((tmp_path / "metrics" / "metric-bit_acc.jsonl").read_text().splitlines()[-1])
    swd = json.loads((tmp_path / "metrics" / "metric-swd.jsonl").read_text().splitlines()[-1])
    assert 0.0 <= bit_acc["bit_acc"] <= 1.0 and np.isfinite(swd["swd_mean"])
