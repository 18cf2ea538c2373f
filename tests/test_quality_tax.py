"""Measuring the quality tax end to end on a tiny configuration: a plain run stopped by --minutes, a
fingerprinted run started from its snapshot (--baseline) whose first images are the baseline's, the
per-snapshot quality metric, and fig/quality_tax.py's table and figure."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import train_stylegan2_fp
from networks.presets import build_networks
from tests.shared_paths import ORACLE

REPO = Path(__file__).resolve().parents[1]
FAST = ["--preset", "tiny32", "--batch", "8", "--tick", "0.016", "--snap", "1", "--workers", "0",
        "--device", "cpu"]


def train(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "train_stylegan2_fp.py", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def test_start_from_plain_draws_the_plain_images_for_every_fingerprint():
    torch.manual_seed(0)
    plain = build_networks("tiny32", ("G", "F"), n_bits=0, c_encoding="pm1")
    for p in plain["G"].parameters():          # a "trained" plain G: E's bias away from its zero init
        p.data.add_(0.1 * torch.randn_like(p))
    fp = build_networks("tiny32", ("G", "F"), n_bits=16, c_encoding="pm1")
    fp["G"].start_from_plain(plain["G"])
    fp["F"].start_from_plain(plain["F"])
    z = torch.randn(4, plain["G"].z_dim)
    want = plain["G"](z, torch.zeros(4, 0), noise_mode="const")
    for c in (torch.zeros(4, 16), torch.ones(4, 16), torch.randint(0, 2, (4, 16)).float()):
        assert torch.equal(fp["G"](z, c, noise_mode="const"), want)
    img = torch.randn(2, 3, 32, 32)
    z_hat, logits = fp["F"](img)
    assert torch.equal(z_hat, plain["F"](img)[0]) and logits.shape == (2, 16)
    # Training can move the fingerprint: E's new weights get a gradient.
    fp["G"](z, torch.ones(4, 16)).square().mean().backward()
    assert fp["G"].embedding.fc0.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="differ in channel_base, channel_max"):
        build_networks("quick32", ("G",), n_bits=16, c_encoding="pm1")["G"].start_from_plain(plain["G"])
    with pytest.raises(ValueError, match="plain one"):
        fp["G"].start_from_plain(fp["G"])


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data):
    """A plain run (two ticks, then stopped by --minutes) and a fingerprinted one started from its snapshot."""
    out = tmp_path_factory.mktemp("tax")
    res = train("--data", str(data), "--outdir", str(out / "base"), "--bits", "0", "--c-encoding", "pm1",
                "--minutes", "0.0001", "--metrics", "quality_snapshot", *FAST)
    assert res.returncode == 0, res.stderr
    (base,) = (out / "base").iterdir()
    (snap,) = base.glob("network-snapshot-*.safetensors")
    res = train("--data", str(data), "--outdir", str(out / "fp"), "--bits", "8", "--c-encoding", "pm1",
                "--baseline", str(snap), "--consistency-to", "baseline", "--total-kimg", "0.016", *FAST)
    assert res.returncode == 0, res.stderr
    (fp,) = (out / "fp").iterdir()
    return base, snap, fp


def test_minutes_stops_at_the_first_tick_and_records_wall_time(runs, data):
    base, snap, _ = runs
    rows = [json.loads(line) for line in (base / "stats.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["Progress/wall_min"] > 0      # stopped after one tick, not --total-kimg
    # The same command again: the run has had its minutes, so it stops at once (no further tick).
    res = train("--data", str(data), "--outdir", str(base.parent), "--bits", "0", "--c-encoding", "pm1",
                "--minutes", "0.0001", "--metrics", "quality_snapshot", *FAST)
    assert res.returncode == 0 and "Resuming" in res.stdout, res.stderr
    assert len((base / "stats.jsonl").read_text().splitlines()) == 1
    assert snap.name == "network-snapshot-000000_016.safetensors"
    (line,) = (base / "metric-quality_snapshot.jsonl").read_text().splitlines()
    m = json.loads(line)
    assert m["swd"] > 0 and 0 < m["diversity_ratio"] and "consistency_psnr" not in m   # a plain G has no c


def test_a_plain_run_of_a_warm_up_config_has_every_term_from_the_start(tmp_path, data):
    """quick32 holds the adversarial term off until F reads the bits; a plain run (--bits 0) has no bits to wait
    for, so every term is on from the first step (it once crashed there with no loss term left)."""
    res = train("--cfg", "quick32", "--bits", "0", "--data", str(data), "--outdir", str(tmp_path), "--batch", "8",
                "--tick", "0.016", "--total-kimg", "0.016", "--workers", "0", "--metrics", "none", "--device", "cpu")
    assert res.returncode == 0, res.stderr
    (row,) = [json.loads(line) for line in next(tmp_path.glob("*/stats.jsonl")).read_text().splitlines()]
    assert row["Schedule/adversarial"] == row["Schedule/latent_rec"] == 1.0 and row["Loss/G/adversarial"] > 0


def test_a_fingerprinted_run_starts_from_the_baseline(runs):
    base, snap, fp = runs
    assert "Started from the plain run's snapshot" in (fp / "log.txt").read_text()
    assert json.loads((fp / "training_options.json").read_text())["baseline"] == str(snap.resolve())
    # The init grid is the baseline's images of the same z (the grid's first draw in both runs), whatever c.
    from PIL import Image
    a = np.array(Image.open(fp / "fakes-arbitrary-init.png"))
    b = np.array(Image.open(base / "fakes-arbitrary-000000_016.png"))
    assert np.array_equal(a, b)
    m = json.loads((fp / "metric-quality_snapshot.jsonl").read_text().splitlines()[-1])
    assert m["consistency_psnr"] > 20 and m["consistency_ssim"] > 0.5     # one step from the identity
    assert 0 <= m["bit_acc_min"] <= m["bit_acc"] <= 1 and not (fp / "metric-fp_bit_acc1k.jsonl").exists()
    # --consistency-to baseline (exactness: tests/test_loss.py): the term is on from the first step.
    options = json.loads((fp / "training_options.json").read_text())
    assert options["consistency_to"] == "baseline" and options["metrics"] == ["quality_snapshot"]
    rows = [json.loads(line) for line in (fp / "stats.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["Loss/G/consistency"]) for r in rows)


def test_a_fingerprinted_snapshot_resumed_under_the_baseline_term(runs, tmp_path, data):
    """--resume PATH with --baseline: the run starts from the fingerprinted snapshot (not at the identity), and the
    baseline is only the consistency reference (immunizing a cpu32ft model keeps its images held to the baseline)."""
    base, snap, fp = runs
    fp_snap = sorted(fp.glob("network-snapshot-*.safetensors"))[-1]
    res = train("--data", str(data), "--outdir", str(tmp_path), "--bits", "8", "--c-encoding", "pm1",
                "--resume", str(fp_snap), "--baseline", str(snap), "--consistency-to", "baseline",
                "--augment-fp", "noise:0-0.1", "--total-kimg", "0.016", *FAST)
    assert res.returncode == 0, res.stderr
    (run,) = tmp_path.iterdir()
    log = (run / "log.txt").read_text()
    assert f"Initialised G, G_ema, D and F from {fp_snap}; the consistency reference from" in log
    # Its first grid is the fingerprinted snapshot's (same grid z and c), not the baseline's.
    from PIL import Image
    def pixels(path):
        return torch.from_numpy(np.array(Image.open(path)))
    assert torch.equal(pixels(run / "fakes-latents-same-init.png"),
                       pixels(fp / f"fakes-latents-same-{fp_snap.stem.removeprefix('network-snapshot-')}.png"))
    rows = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["Loss/G/consistency"]) for r in rows)
    # A baseline of another architecture is refused here too, before any run folder exists.
    res = train("--data", str(data), "--outdir", str(tmp_path / "no"), "--bits", "8", "--resume", str(fp_snap),
                "--baseline", str(snap), "--total-kimg", "0.008", *FAST)     # raw c encoding here
    assert res.returncode == 1 and f"--baseline {snap} does not fit" in res.stderr and not (tmp_path / "no").exists()


def test_adversarial_weight_zero_leaves_d_untrained(runs, tmp_path, data):
    """--adversarial-weight 0: G and F train against the other terms only; D is never stepped (the baseline's)."""
    _, snap, _ = runs
    res = train("--data", str(data), "--outdir", str(tmp_path), "--bits", "8", "--c-encoding", "pm1", "--baseline",
                str(snap), "--consistency-to", "baseline", "--adversarial-weight", "0", "--metrics", "none",
                "--total-kimg", "0.016", *FAST)
    assert res.returncode == 0, res.stderr
    (run,) = tmp_path.iterdir()
    from networks.checkpoint import load_network
    before = load_network(str(snap), names=["D", "G"])
    after = load_network(str(sorted(run.glob("network-snapshot-*.safetensors"))[-1]), names=["D", "G"])
    assert all(torch.equal(a, b) for a, b in zip(before["D"].state_dict().values(), after["D"].state_dict().values()))
    assert not torch.equal(before["G"].synthesis.latent.weight, after["G"].synthesis.latent.weight)   # G trained
    rows = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert rows and not any(k.startswith("Loss/D/") or k == "Loss/G/adversarial" for r in rows for k in r)
    assert json.loads((run / "training_options.json").read_text())["weights"]["adversarial"] == 0


def test_plot_curves_reads_the_bits_of_quality_snapshot(runs, tmp_path):
    _, _, fp = runs
    out = tmp_path / "curves.png"
    res = subprocess.run([sys.executable, "fig/plot_curves.py", "--run", str(fp), "--out", str(out)], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and out.stat().st_size > 1000, res.stderr


@pytest.mark.parametrize("args,message", [
    (["--bits", "0"], "give --bits > 0"),
])
def test_baseline_option_errors(tmp_path, data, args, message):
    result = CliRunner().invoke(train_stylegan2_fp.main, ["--data", str(data), "--outdir", str(tmp_path), "--baseline",
                                                          "README.md", *args, "--dry-run"])
    assert result.exit_code == 2 and message in result.output


def test_consistency_to_baseline_needs_a_baseline(tmp_path, data):
    result = CliRunner().invoke(train_stylegan2_fp.main, ["--data", str(data), "--outdir", str(tmp_path), "--bits",
                                                          "8", "--consistency-to", "baseline", "--dry-run"])
    assert result.exit_code == 2 and "give --baseline" in result.output


def test_baseline_must_be_a_plain_snapshot_of_this_architecture(tmp_path, data, runs):
    _, _, fp = runs
    (fp_snap,) = sorted(fp.glob("network-snapshot-*.safetensors"))[-1:]
    res = train("--data", str(data), "--outdir", str(tmp_path), "--bits", "8", "--baseline", str(fp_snap),
                "--total-kimg", "0.008", *FAST)
    assert res.returncode == 1 and "is not a snapshot of a plain run" in res.stderr
    assert not list(tmp_path.iterdir())            # nothing half-made
    base_snap = runs[1]
    res = train("--data", str(data), "--outdir", str(tmp_path), "--bits", "8", "--baseline", str(base_snap),
                "--total-kimg", "0.008", *FAST)         # raw c encoding here, pm1 in the baseline
    assert res.returncode == 1 and "does not fit this run's networks" in res.stderr and "c_encoding" in res.stderr


def test_quality_tax_table_and_figure(tmp_path, data, runs):
    base, _, fp = runs
    out, table = tmp_path / "tax.png", tmp_path / "tax.md"
    res = subprocess.run([sys.executable, "fig/quality_tax.py", "--baseline", str(base), "--fingerprinted", str(fp),
                          "--data", str(data), "--out", str(out), "--table", str(table), "--num", "64",
                          "--num-bits", "64"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = table.read_text().splitlines()
    assert lines[0].startswith("| model | minutes | kimg |") and len(lines) == 5
    fp_row = lines[-1].split("|")
    assert fp_row[1].strip() == "fingerprinted" and float(fp_row[3]) == pytest.approx(0.032)   # 16 + 16 images
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Never over a file it did not write.
    foreign = tmp_path / "notes.md"
    foreign.write_text("mine")
    res = subprocess.run([sys.executable, "fig/quality_tax.py", "--baseline", str(base), "--fingerprinted", str(fp),
                          "--data", str(data), "--out", str(out), "--table", str(foreign)],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and foreign.read_text() == "mine"


def test_quality_tax_reference_at_a_kimg(tmp_path, data, runs):
    """--reference-kimg (runs budgeted in kimg): the baseline's snapshot at that kimg is the reference row,
    whatever the wall time; a kimg without a snapshot is refused before anything is measured."""
    base, _, fp = runs
    sys.path.insert(0, str(REPO / "fig"))
    from quality_tax import Snapshot, pick_reference, run_snapshots
    snaps = run_snapshots(base)
    late = Snapshot(fp, kimg=1.0, minutes=1e6)
    assert pick_reference(snaps, late) == ("baseline, same wall time", snaps[-1])
    assert pick_reference(snaps, Snapshot(fp, kimg=1.0, minutes=0.0))[1] == snaps[0]
    name, snap = pick_reference(snaps, late, snaps[0].kimg)
    assert snap == snaps[0] and name == f"baseline, {snaps[0].kimg:g} kimg (reference)"
    with pytest.raises(ValueError, match="no snapshot at 12345 kimg"):
        pick_reference(snaps, late, 12345)
    table = tmp_path / "tax.md"
    res = subprocess.run([sys.executable, "fig/quality_tax.py", "--baseline", str(base), "--fingerprinted", str(fp),
                          "--data", str(data), "--out", str(tmp_path / "tax.png"), "--table", str(table),
                          "--reference-kimg", "12345"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "no snapshot at 12345 kimg" in res.stderr and not table.exists()


@pytest.fixture(scope="module")
def tax_script(tmp_path_factory, data):
    """scripts/quality_tax.sh on the built-in faces with ticks of 8 images: the baseline, stage 2 from its
    snapshot, the table and the figure."""
    out = tmp_path_factory.mktemp("tax_script") / "tax"
    env = {**os.environ, "MINUTES": "0.0001", "OUT": str(out), "DATA": str(data), "NUM": "64", "NUM_BITS": "64"}
    res = subprocess.run(["bash", "scripts/quality_tax.sh", *SCRIPT_FAST], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    return out, env


SCRIPT_FAST = ["--batch", "8", "--tick", "0.008", "--snap", "1", "--workers", "0", "--device", "cpu",
               "--metrics", "none"]


def test_quality_tax_script_end_to_end(tax_script):
    out, env = tax_script
    rows = (out / "quality_tax.md").read_text().splitlines()
    assert [r.split("|")[1].strip() for r in rows[2:]] == ["baseline, same wall time", "baseline, same kimg",
                                                           "fingerprinted"]
    assert (out / "quality_tax.png").stat().st_size > 1000
    (fp,) = (out / "fingerprinted").iterdir()
    options = json.loads((fp / "training_options.json").read_text())
    assert options["cfg"] == "cpu32ft" and options["n_bits"] == 32 and options["baseline"].startswith(str(out))
    res = subprocess.run(["bash", "scripts/quality_tax.sh"], cwd=REPO, env={**env, "RECIPE": "nope"},
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 2 and "RECIPE must be" in res.stderr


def test_immunize_script_on_the_recipe_that_keeps_the_generator(tax_script, tmp_path, data):
    """scripts/immunize.sh (RECIPE=finetune) on quality_tax.sh's tiny models: the cpu32ft snapshot immunized
    under the baseline term, both models calibrated, issued, measured (quality beside bits, the attack suite)
    and plotted; a second run redoes no training."""
    tax, _ = tax_script
    (fp,) = (tax / "fingerprinted").iterdir()
    fp_snap = sorted(fp.glob("network-snapshot-*.safetensors"))[-1]
    baseline = json.loads((fp / "training_options.json").read_text())["baseline"]
    out = tmp_path / "immune"
    env = {**os.environ, "FINGERPRINTED": str(fp_snap), "BASELINE": baseline, "KIMG": "0.016", "DATA": str(data),
           "IMMUNE_OUT": str(out), "CAL": "64", "USERS": "2", "IMAGES_PER_USER": "2", "NUM": "64"}
    script = ["bash", "scripts/immunize.sh", *SCRIPT_FAST]
    res = subprocess.run(script, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    (run,) = (out / "immunized").glob("0*")
    options = json.loads((run / "training_options.json").read_text())
    assert options["cfg"] == "cpu32ft" and options["baseline"] == baseline and options["augment_fp"]
    assert f"Initialised G, G_ema, D and F from {fp_snap}" in (run / "log.txt").read_text()
    for name in ("fingerprinted", "immunized"):
        quality = json.loads((out / f"{name}-metrics" / "metric-quality_snapshot.jsonl").read_text().splitlines()[-1])
        assert quality["swd"] > 0 and 0 <= quality["bit_acc"] <= 1 and quality["consistency_psnr"] > 0
        attacks = (out / f"{name}-metrics" / "metric-robustness_image.jsonl").read_text()
        assert "jpeg" in attacks
    assert (out / "robustness.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = subprocess.run(script, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0 and len(list((out / "immunized").glob("0*"))) == 1, res.stderr[-2000:]
    res = subprocess.run(script, cwd=REPO, env={**env, "BASELINE": ""}, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "needs FINGERPRINTED" in res.stderr


def test_immunize_script_at_the_papers_scale_recipe(tmp_path, data):
    """scripts/immunize.sh RECIPE=paper (Fig. 5 at 128x128 on a GPU) on a tiny model trained with --cfg paper: the
    immunizing run takes the paper's config and PRESET, both models are measured and plotted; without
    FINGERPRINTED it refuses in one line."""
    res = train("--cfg", "paper", "--preset", "tiny32", "--bits", "32", "--data", str(data), "--outdir",
                str(tmp_path / "fp"), "--total-kimg", "0.016", *SCRIPT_FAST)
    assert res.returncode == 0, res.stderr[-2000:]
    (fp_snap,) = sorted((tmp_path / "fp").glob("*/network-snapshot-*.safetensors"))[-1:]
    out = tmp_path / "immune"
    env = {**os.environ, "RECIPE": "paper", "PRESET": "tiny32", "BITS": "32", "FINGERPRINTED": str(fp_snap),
           "KIMG": "0.016", "DATA": str(data), "IMMUNE_OUT": str(out), "CAL": "64", "USERS": "2",
           "IMAGES_PER_USER": "2", "NUM": "64"}
    res = subprocess.run(["bash", "scripts/immunize.sh", *SCRIPT_FAST], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    (run,) = (out / "immunized").glob("0*")
    options = json.loads((run / "training_options.json").read_text())
    assert options["cfg"] == "paper" and options["preset"] == "tiny32" and options["augment_fp"]
    for name in ("fingerprinted", "immunized"):
        assert "jpeg" in (out / f"{name}-metrics" / "metric-robustness_image.jsonl").read_text()
    assert (out / "robustness.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = subprocess.run(["bash", "scripts/immunize.sh"], cwd=REPO, env={**env, "FINGERPRINTED": ""},
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "RECIPE=paper needs FINGERPRINTED" in res.stderr


def test_table3_script_on_the_recipe_that_keeps_the_generator(tax_script, tmp_path, data):
    """scripts/table3.sh with BASELINE: stage 2 (cpu32ft) from quality_tax.sh's tiny baseline, 3 users and 2
    unknown generators of 3 images each, registries of 1 and 3 users, the report."""
    tax, _ = tax_script
    (fp,) = (tax / "fingerprinted").iterdir()
    baseline = json.loads((fp / "training_options.json").read_text())["baseline"]
    out = tmp_path / "t3"
    env = {**os.environ, "BASELINE": baseline, "BITS": "32", "KIMG": "0.016", "TABLE3_OUT": str(out),
           "TRAIN": str(data), "HELDOUT": str(data), "CALIBRATION": str(data), "USERS": "3", "UNKNOWN": "2",
           "IMAGES": "3", "SIZES": "1 3", "PASSIVE_EPOCHS": "2"}
    res = subprocess.run(["bash", "scripts/table3.sh", *SCRIPT_FAST], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    (run,) = (out / "runs").iterdir()
    options = json.loads((run / "training_options.json").read_text())
    assert options["cfg"] == "cpu32ft" and options["baseline"] == baseline and options["n_bits"] == 32
    rows = json.loads((out / "table3.json").read_text())
    assert [(r["generators"], r["world"]) for r in rows if r["fpr"] == 1e-6] == [
        (1, "closed"), (1, "open"), (3, "closed"), (3, "open")]
    open3 = next(r for r in rows if r["generators"] == 3 and r["world"] == "open" and r["fpr"] == 1e-6)
    assert open3["generated"] == 5 * 3 and open3["real"] == 64          # 3 users + 2 unknown, 3 images each
    assert len((out / "table3.md").read_text().splitlines()) == 2 + len(rows)
    # The passive baseline rows: half of each class's images to train, the other half (and the unknowns) to test.
    passive = json.loads((out / "passive.json").read_text())
    assert [(r["generators"], r["world"]) for r in passive] == [(1, "closed"), (1, "open"), (3, "closed"), (3, "open")]
    closed3, open3 = passive[2:]
    assert closed3["generated"] == 3 * 1 and closed3["real"] == 32 and open3["generated"] == 3 + 2 * 3
    assert all(0 <= r["attribution_accuracy"] <= 1 for r in passive)
    assert len((out / "passive.md").read_text().splitlines()) == 2 + 4


def test_capacity_script(tax_script, tmp_path, data):
    """scripts/capacity.sh: stage 2 for two numbers of bits from quality_tax.sh's tiny baseline, each measured
    against the baseline's last snapshot, one table; a kimg without a snapshot is refused before anything runs."""
    tax, _ = tax_script
    (base,) = (tax / "baseline").iterdir()
    sys.path.insert(0, str(REPO / "fig"))
    from quality_tax import run_snapshots
    snaps = run_snapshots(base)
    out = tmp_path / "cap"
    env = {**os.environ, "BASELINE_RUN": str(base), "STAGE1_KIMG": f"{snaps[0].kimg:g}", "KIMG": "0.016",
           "DATA": str(data), "BITS": "8 16", "CAPACITY_OUT": str(out), "NUM": "64", "NUM_BITS": "64"}
    res = subprocess.run(["bash", "scripts/capacity.sh", *SCRIPT_FAST], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = (out / "capacity.md").read_text().splitlines()
    assert lines[2].startswith("| bits | model |") and len(lines) == 2 + 2 + 1 + 2
    assert [r.split("|")[1].strip() for r in lines[-2:]] == ["8", "16"]
    assert f"baseline, {snaps[-1].kimg:g} kimg (reference)" in lines[4]
    for b in (8, 16):
        (run,) = (out / f"bits{b}").iterdir()
        options = json.loads((run / "training_options.json").read_text())
        assert options["n_bits"] == b and options["baseline"] == str(snaps[0].path.resolve())
        assert (out / f"bits{b}.png").stat().st_size > 1000
    res = subprocess.run(["bash", "scripts/capacity.sh"], cwd=REPO, env={**env, "STAGE1_KIMG": "999",
                         "CAPACITY_OUT": str(tmp_path / "x")}, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "no snapshot at STAGE1_KIMG=999" in res.stderr and not (tmp_path / "x").exists()


@pytest.mark.skipif(not (ORACLE / "network-snapshot.pkl").is_file(), reason="oracle A not found")
def test_table3_script_on_a_release_pickle(tmp_path, data):
    """scripts/table3.sh with SNAPSHOT= the release's TF pickle (oracle A, 32x32, 32 bits): converted by legacy.py
    into the output folder, then issued, generated, calibrated, detected and reported like a snapshot of ours."""
    out = tmp_path / "t3"
    env = {**os.environ, "SNAPSHOT": str(ORACLE / "network-snapshot.pkl"), "TABLE3_OUT": str(out),
           "TRAIN": str(data), "HELDOUT": str(data), "CALIBRATION": str(data), "USERS": "2", "UNKNOWN": "1",
           "IMAGES": "2", "SIZES": "1 2"}
    res = subprocess.run(["bash", "scripts/table3.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (out / "converted_network-snapshot.safetensors").is_file() and not (out / "runs").exists()
    rows = json.loads((out / "table3.json").read_text())
    assert {r["generators"] for r in rows} == {1, 2}
    for bad, says in (({"RES": "64"}, "RES must be 32 or 128"), ({"RES": "128", "SNAPSHOT": ""}, "needs SNAPSHOT")):
        res = subprocess.run(["bash", "scripts/table3.sh"], cwd=REPO, capture_output=True, text=True, timeout=60,
                             env={**env, **bad, "TABLE3_OUT": str(tmp_path / "x")})
        assert res.returncode == 2 and says in res.stderr and not (tmp_path / "x").exists()


def test_same_seeds_figure(tmp_path, runs):
    """fig/same_seeds.py: rows of the same seeds from folders of generate.py images, and a difference row."""
    _, snap, fp = runs
    fp_snap = sorted(fp.glob("network-snapshot-*.safetensors"))[-1]
    for name, network in (("base", snap), ("fp", fp_snap)):
        res = subprocess.run([sys.executable, "generate.py", "images", "--network", str(network), "--seeds", "0-3",
                              "--outdir", str(tmp_path / name)], cwd=REPO, capture_output=True, text=True,
                             timeout=300)
        assert res.returncode == 0, res.stderr
    out = tmp_path / "same.png"
    fig = [sys.executable, "fig/same_seeds.py", "--row", f"baseline={tmp_path / 'base'}", "--row",
           f"fingerprinted={tmp_path / 'fp'}", "--out", str(out), "--per-row", "3"]
    res = subprocess.run(fig, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = subprocess.run([*fig[:-4], "--row", "x=nowhere", "--out", str(out)], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 2 and "LABEL=FOLDER" in res.stderr
