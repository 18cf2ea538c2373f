"""Issue 18 end to end on a tiny configuration: a plain standard StyleGAN2 trained here (--cfg sg2cpu32), written in
NVlabs' state-dict layout and imported back as a user would (legacy.py), fingerprint fine-tuning of the import
(--cfg sg2ft --init-from, each --train-params group), users issued from it, a user's generator exported for NVlabs'
code, and fig/sg2_finetune.py's curve and figure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from networks import load_network, read_header
from networks.stylegan2_ada import SG2Generator

REPO = Path(__file__).resolve().parents[1]
FAST = ["--batch", "8", "--tick", "0.016", "--snap", "1", "--workers", "0", "--device", "cpu", "--amp", "off"]


def run(*args: str, script: str = "train_stylegan2_fp.py") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, script, *args], cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def imported(tmp_path_factory, data) -> tuple[Path, Path]:
    """A plain sg2cpu32 run (one tick), its snapshot exported to NVlabs state dicts and imported back."""
    out = tmp_path_factory.mktemp("sg2")
    res = run("--cfg", "sg2cpu32", "--data", str(data), "--outdir", str(out / "base"), "--total-kimg", "0.016",
              "--metrics", "none", *FAST)
    assert res.returncode == 0, res.stderr
    (snap,) = (out / "base").glob("*/network-snapshot-*.safetensors")
    assert [read_header(snap)["networks"][n]["class"] for n in ("G", "G_ema", "D")] == [
        "SG2Generator", "SG2Generator", "SG2Discriminator"]
    res = run("--source", str(snap), "--dest", str(out / "nvlabs.pt"), script="legacy.py")
    assert res.returncode == 0 and '["G_ema"]' in res.stdout, res.stderr
    res = run("--source", str(out / "nvlabs.pt"), "--dest", str(out / "imported.safetensors"), script="legacy.py")
    assert res.returncode == 0, res.stderr
    return snap, out / "imported.safetensors"


def test_a_plain_sg2_run_tracks_w_avg_and_imports_back_exactly(imported):
    snap, path = imported
    ours = load_network(snap, names=["G_ema"])["G_ema"]
    back = load_network(path, names=["G_ema"])["G_ema"]
    assert ours.mapping.w_avg.abs().sum() > 0                    # tracked while the mapping trained
    z = torch.randn(4, back.z_dim)
    for psi in (1.0, 0.5):
        assert torch.equal(back(z, truncation_psi=psi, noise_mode="const"),
                           ours(z, truncation_psi=psi, noise_mode="const"))


@pytest.fixture(scope="module")
def finetuned(imported, tmp_path_factory, data) -> dict[str, Path]:
    _, path = imported
    out = tmp_path_factory.mktemp("ft")
    runs = {}
    for group in ("embedding", "all"):
        res = run("--cfg", "sg2ft", "--bits", "8", "--init-from", str(path), "--train-params", group,
                  "--data", str(data), "--outdir", str(out / group), "--total-kimg", "0.032",
                  "--metrics", "quality_snapshot", *FAST)
        assert res.returncode == 0, res.stderr
        (runs[group],) = (out / group).iterdir()
    return runs


def test_finetuning_trains_the_chosen_parameters_and_holds_the_images_to_the_original(imported, finetuned):
    _, path = imported
    original = load_network(path)
    for group, run_dir in finetuned.items():
        options = json.loads((run_dir / "training_options.json").read_text())
        assert options["train_params"] == group and options["consistency_to"] == "baseline"
        snaps = sorted(run_dir.glob("network-snapshot-*.safetensors"))
        nets = load_network(snaps[-1])
        assert type(nets["G"]).__name__ == "SG2FingerprintedGenerator" and nets["G"].n_bits == 8
        # G started as the original's G_ema; D as its D.
        G, start = nets["G"].state_dict(), original["G_ema"].state_dict()
        moved = {k for k in start if not torch.equal(G[k], start[k])}
        if group == "embedding":      # only the fingerprint module trains; the mapping keeps its w_avg
            assert moved == set() and any(k.startswith("fingerprint.") for k in G)
        else:
            assert moved and "mapping.fc0.weight" in moved
        # sg2ft trains no D: the imported one is kept as it was.
        assert options["weights"]["adversarial"] == 0
        assert all(torch.equal(a, b) for a, b in zip(nets["D"].state_dict().values(),
                                                      original["D"].state_dict().values()))
        m = json.loads((run_dir / "metric-quality_snapshot.jsonl").read_text().splitlines()[-1])
        assert 0 <= m["bit_acc"] <= 1 and m["consistency_psnr"] > 20
        rows = [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines()]
        assert all("Loss/G/consistency" in r and "Loss/G/latent_rec" not in r for r in rows)


def test_shared_lr_is_the_lr_of_what_every_user_shares(imported, data, tmp_path):
    """--shared-lr: Adam's group of the fingerprint module at --lr, the rest at --shared-lr (both times the lazy
    regularisation's 4/5), in the training state too."""
    _, path = imported
    res = run("--cfg", "sg2ft", "--bits", "8", "--init-from", str(path), "--lr", "0.002", "--shared-lr", "0.0002",
              "--data", str(data), "--outdir", str(tmp_path), "--total-kimg", "0.016", "--metrics", "none", *FAST)
    assert res.returncode == 0, res.stderr
    (log,) = tmp_path.glob("*/log.txt")
    assert "those every user shares at lr 0.0002" in log.read_text()
    (state_file,) = tmp_path.glob("*/training-state-*.pt")
    groups = torch.load(state_file, weights_only=True)["opt_G"]["param_groups"]
    assert [g["lr"] for g in groups] == pytest.approx([0.002 * 4 / 5, 0.0002 * 4 / 5])
    (snap,) = tmp_path.glob("*/network-snapshot-*.safetensors")
    G = load_network(snap, names=["G"])["G"]
    names = [n for n, p in G.named_parameters()]
    assert len(groups[0]["params"]) == sum(n.startswith("fingerprint.") for n in names)
    assert len(groups[1]["params"]) == len(names) - len(groups[0]["params"])


def test_issued_users_are_plain_stylegan2s_for_nvlabs(finetuned, tmp_path):
    snap = sorted(finetuned["all"].glob("network-snapshot-*.safetensors"))[-1]
    res = run("issue", "--network", str(snap), "--registry", str(tmp_path / "reg.sqlite"), "--users", "alice,bob",
              "--outdir", str(tmp_path / "issued"), script="generate.py")
    assert res.returncode == 0, res.stderr
    alice = load_network(tmp_path / "issued" / "alice.safetensors")["G"]
    assert type(alice) is SG2Generator
    res = run("--source", str(tmp_path / "issued" / "alice.safetensors"), "--dest", str(tmp_path / "alice.pt"),
              script="legacy.py")
    assert res.returncode == 0, res.stderr
    nvlabs = SG2Generator(**alice.init_kwargs)
    nvlabs.load_state_dict(torch.load(tmp_path / "alice.pt", weights_only=True))   # the documented one line
    z = torch.randn(2, alice.z_dim)
    assert torch.equal(nvlabs(z, noise_mode="const"), alice(z, noise_mode="const"))


def test_the_curve_and_figure_script(imported, finetuned, data, tmp_path):
    _, path = imported
    res = run("--original", str(path), "--run", str(finetuned["all"]), "--data", str(data),
              "--out", str(tmp_path / "fig.png"), "--table", str(tmp_path / "curve.md"),
              "--curve", str(tmp_path / "curve.png"), "--num", "64", "--num-bits", "16", script="fig/sg2_finetune.py")
    assert res.returncode == 0, res.stderr
    lines = (tmp_path / "curve.md").read_text().splitlines()
    assert lines[0].startswith("| minutes | kimg | bit acc") and lines[2].startswith("| original |")
    assert len(lines) == 3 + 2                                 # two snapshots
    assert (tmp_path / "fig.png").stat().st_size > 1000 and (tmp_path / "curve.png").stat().st_size > 1000


def test_mismatched_starts_are_refused_with_one_line(imported, data, tmp_path):
    _, path = imported
    res = run("--cfg", "sg2ft", "--bits", "8", "--init-from", str(path), "--preset", "tiny32", "--data", str(data),
              "--outdir", str(tmp_path / "a"), "--total-kimg", "0.016", *FAST)
    assert res.returncode != 0 and "sg2 preset" in res.stderr.strip().splitlines()[-1], res.stderr
    res = run("--cfg", "cpu32", "--train-params", "embedding", "--data", str(data), "--outdir", str(tmp_path / "b"),
              "--total-kimg", "0.016", *FAST)
    assert res.returncode != 0 and "--train-params embedding" in res.stderr.strip().splitlines()[-1], res.stderr
    res = run("--cfg", "cpu32", "--shared-lr", "0.0002", "--data", str(data), "--outdir", str(tmp_path / "c"),
              "--total-kimg", "0.016", *FAST)
    assert res.returncode != 0 and "--shared-lr is for fine-tuning" in res.stderr.strip().splitlines()[-1], res.stderr
    assert not any((tmp_path / d).exists() and any((tmp_path / d).iterdir()) for d in ("a", "b", "c"))


def test_the_recipe_script_end_to_end(data, tmp_path):
    """scripts/sg2_finetune.sh on a tiny budget: baseline, NVlabs export and import, the two fine-tuning stages,
    the curve over both."""
    env = {**os.environ, "OUT": str(tmp_path / "out"), "DATA": str(data), "BASE_KIMG": "0.016", "FT1_KIMG": "0.016",
           "FT2_KIMG": "0.016",
           "BITS": "8", "TRAIN_PARAMS": "embedding", "NUM": "64", "NUM_BITS": "16", "AE_KIMG": "0.016",
           "AE_FLAGS": "--holdout 8 --batch 8 --tick 0.008 --snap 1 --workers 0 --device cpu"}
    res = subprocess.run(["bash", "scripts/sg2_finetune.sh", *FAST, "--metrics", "none"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    out = tmp_path / "out"
    assert (out / "original_nvlabs.pt").is_file() and (out / "original.safetensors").is_file()
    (ft,) = (out / "finetune-embedding").iterdir()
    options = json.loads((ft / "training_options.json").read_text())
    assert options["fp_decoder"].endswith(".safetensors") and options["freeze_decoder"]
    (ft2,) = (out / "finetune2-embedding").iterdir()
    options = json.loads((ft2 / "training_options.json").read_text())
    assert options["cfg"] == "sg2ft2" and not options["freeze_decoder"] and options["shared_change"] == 200
    assert "Initialised G, G_ema, D and F from" in (ft2 / "log.txt").read_text()
    lines = (out / "finetune-embedding.md").read_text().splitlines()
    assert lines[2].startswith("| original |") and len(lines) == 5           # a snapshot of each stage
    assert [float(line.split("|")[2]) for line in lines[3:]] == [0.016, 0.032]   # stage 2 counted on from stage 1
    assert (out / "finetune-embedding.png").is_file() and (out / "finetune-embedding-curve.png").is_file()
    # A second run finds every stage done and measures again.
    res = subprocess.run(["bash", "scripts/sg2_finetune.sh", *FAST, "--metrics", "none"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert len(list((out / "finetune-embedding").iterdir())) == 1
    assert len(list((out / "finetune2-embedding").iterdir())) == 1
    # Stage 1's snapshot carries the autoencoder's decoder as F: without --fp-decoder the run says which option.
    last1 = sorted(ft.glob("network-snapshot-*.safetensors"))[-1]
    res = run("--cfg", "sg2ft2", "--bits", "8", "--init-from", str(out / "original.safetensors"), "--resume",
              str(last1), "--data", str(data), "--outdir", str(tmp_path / "x"), "--total-kimg", "0.016", *FAST)
    last_line = res.stderr.strip().splitlines()[-1]
    assert res.returncode != 0 and "class of F is DecoderWithLatent" in last_line and "--fp-decoder" in last_line
