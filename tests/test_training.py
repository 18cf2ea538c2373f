"""train_stylegan2_fp.py end to end on a tiny configuration: run folder, exact resume (also after
kill -9), a truncated state, multi-process training, release flag aliases and bad inputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import train_stylegan2_fp
from networks import load_network
from training.run_state import state_files

REPO = Path(__file__).resolve().parents[1]
# 8-bit fingerprints, batch 8, ticks of two steps: every phase (incl. PL at step 0/4 and R1 at step 0)
# runs in a few seconds.
FAST = ["--preset", "tiny32", "--bits", "8", "--batch", "8", "--tick", "0.016", "--snap", "1",
        "--workers", "0", "--metrics", "none", "--device", "cpu"]


def train(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "train_stylegan2_fp.py", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env=None if env is None else {**os.environ, **env})


def newest_state(outdir: Path) -> dict:
    (run,) = [p for p in outdir.iterdir() if p.is_dir()]
    return torch.load(state_files(run)[0], weights_only=True)


def assert_states_equal(a: dict, b: dict) -> None:
    trajectory = lambda counters: {k: v for k, v in counters.items() if k != "wall_ms"}  # noqa: E731 (a clock)
    assert trajectory(a["counters"]) == trajectory(b["counters"])
    for net in ("G", "G_ema", "D", "F"):
        assert a[net].keys() == b[net].keys()
        for k in a[net]:
            assert torch.equal(a[net][k], b[net][k]), f"{net}.{k} differs"
    for opt in ("opt_G", "opt_F", "opt_D"):
        for idx, sa in a[opt]["state"].items():
            sb = b[opt]["state"][idx]
            for k in sa:
                assert torch.equal(torch.as_tensor(sa[k]), torch.as_tensor(sb[k])), f"{opt}[{idx}].{k} differs"
    assert torch.equal(a["pl_mean"], b["pl_mean"])


def resumed_equals_uninterrupted(data: Path, a: Path, b: Path, *extra: str) -> None:
    """2 ticks in one go into ``a`` == 1 tick into ``b``, then the same command continued for another tick."""
    assert train("--data", str(data), "--outdir", str(a), "--total-kimg", "0.032", *FAST, *extra).returncode == 0
    assert train("--data", str(data), "--outdir", str(b), "--total-kimg", "0.016", *FAST, *extra).returncode == 0
    res = train("--data", str(data), "--outdir", str(b), "--total-kimg", "0.032", *FAST, *extra)
    assert res.returncode == 0, res.stderr
    assert "Resuming" in res.stdout
    assert len(list(b.iterdir())) == 1, "the rerun must continue the same run folder"
    assert_states_equal(newest_state(a), newest_state(b))


def test_run_folder_and_snapshots(tmp_path, data):
    out = tmp_path / "runs"
    res = train("--data", str(data), "--outdir", str(out), "--total-kimg", "0.032", *FAST[:-4], "--metrics",
                "fp_bit_acc1k", "--device", "cpu")
    assert res.returncode == 0, res.stderr
    (run,) = list(out.iterdir())
    names = {p.name for p in run.iterdir()}
    for required in ("training_options.json", "environment.json", "log.txt", "stats.jsonl", "reals.png",
                     "fakes-arbitrary-init.png", "fakes-latents-same-init.png", "fakes-fingerprints-same-init.png",
                     "metric-fp_bit_acc1k.jsonl"):
        assert required in names, required
    # Ticks of 16 images: one snapshot per tick, none overwritten, names in training order.
    snaps = sorted(run.glob("network-snapshot-*.safetensors"))
    assert [p.name for p in snaps] == ["network-snapshot-000000_016.safetensors",
                                       "network-snapshot-000000_032.safetensors"]
    nets = load_network(snaps[-1])
    assert set(nets) == {"G", "G_ema", "D", "F"} and nets["G"].n_bits == 8
    rows = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    for key in ("Loss/G/adversarial", "Loss/G/consistency", "Loss/G/latent_rec", "Loss/G/fp_bce",
                "Loss/G/pl_penalty", "Loss/D/adversarial", "Loss/D/r1_penalty", "Metrics/bit_acc",
                "Timing/img_per_sec", "Resources/peak_rss_gb", "Progress/kimg"):
        assert key in rows[0], key
    metric = json.loads((run / "metric-fp_bit_acc1k.jsonl").read_text().splitlines()[-1])
    assert 0 <= metric["bit_acc"] <= 1 and metric["num"] == 1000 and "consistency_psnr" in metric
    options = json.loads((run / "training_options.json").read_text())
    assert options["n_bits"] == 8 and options["weights"]["consistency"] == 2.0


def test_exact_resume(tmp_path, data):
    """2 ticks in one go == 1 tick, then the same command continued for another tick: bit-identical."""
    resumed_equals_uninterrupted(data, tmp_path / "a", tmp_path / "b")


def test_cpu_speed_options_resume_exactly_and_save_plain_snapshots(tmp_path, data):
    """--amp --channels-last (bfloat16, NHWC): recorded, exact resume, snapshots load as usual."""
    a = tmp_path / "a"
    resumed_equals_uninterrupted(data, a, tmp_path / "b", "--amp", "--channels-last")
    (run,) = list(a.iterdir())
    options = json.loads((run / "training_options.json").read_text())
    assert options["amp"] is True and options["channels_last"] is True
    nets = load_network(sorted(run.glob("network-snapshot-*.safetensors"))[-1])
    z, c = torch.randn(2, nets["G_ema"].z_dim), torch.ones(2, 8)
    assert torch.isfinite(nets["G_ema"](z, c, noise_mode="const")).all()
    # The same command without them is another trajectory: a new run folder, not a resume.
    res = train("--data", str(data), "--outdir", str(a), "--total-kimg", "0.048", *FAST)
    assert res.returncode == 0 and "Resuming" not in res.stdout, res.stderr
    assert len(list(a.iterdir())) == 2


def test_immunized_training_resumes_exactly_and_changes_what_f_sees(tmp_path, data):
    """--augment-fp: recorded in the options (ranges spelled out), exact resume, and a different F update."""
    aug = ["--augment-fp", "crop:0.6-1@0.5,jpeg:50-90@0.5,noise"]
    a, plain = tmp_path / "a", tmp_path / "plain"
    resumed_equals_uninterrupted(data, a, tmp_path / "b", *aug)
    (run,) = list(a.iterdir())
    options = json.loads((run / "training_options.json").read_text())
    assert options["augment_fp"] == "crop:0.6-1@0.5,jpeg:50-90@0.5,noise:0-0.15@0.5"
    assert train("--data", str(data), "--outdir", str(plain), "--total-kimg", "0.032", *FAST).returncode == 0
    fa, fp = newest_state(a)["F"], newest_state(plain)["F"]
    assert any(not torch.equal(fa[k], fp[k]) for k in fa)


def test_kill_9_then_rerun_continues_exactly(tmp_path, data):
    ref, crash = tmp_path / "ref", tmp_path / "crash"
    args = ["--data", str(data), "--total-kimg", "0.064", *FAST[:-6], "--workers", "1", "--metrics", "none",
            "--device", "cpu"]
    assert train("--outdir", str(ref), *args).returncode == 0
    proc = subprocess.Popen([sys.executable, "train_stylegan2_fp.py", "--outdir", str(crash), *args], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list(crash.glob("*/training-state-*.pt")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list(crash.glob("*/training-state-*.pt")), "the run never wrote a state"
    res = train("--outdir", str(crash), *args)
    assert res.returncode == 0, res.stderr
    assert_states_equal(newest_state(ref), newest_state(crash))


def test_truncated_state_falls_back_to_the_previous_one(tmp_path, data):
    out = tmp_path / "runs"
    assert train("--data", str(data), "--outdir", str(out), "--total-kimg", "0.032", *FAST).returncode == 0
    (run,) = list(out.iterdir())
    newest, previous = state_files(run)[:2]
    newest.write_bytes(newest.read_bytes()[:1000])
    res = train("--data", str(data), "--outdir", str(out), "--total-kimg", "0.032", *FAST)
    assert res.returncode == 0, res.stderr
    assert f"cannot read {newest.name}" in res.stdout and f"from {previous.name}" in res.stdout


def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path, data):
    """gloo, 2 processes x 1 round of 4 == 1 process x 2 rounds of 4 (gradients summed the same way).

    One intra-op thread per process, so that convolutions accumulate in the same order in both
    set-ups; then the two trainings agree to the last bit."""
    one, two = tmp_path / "one", tmp_path / "two"
    common = ["--data", str(data), "--total-kimg", "0.032", *FAST]
    single_thread = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    assert train("--outdir", str(one), "--batch-gpu", "4", *common, env=single_thread).returncode == 0
    res = train("--outdir", str(two), "--gpus", "2", *common, env=single_thread)
    assert res.returncode == 0, res.stderr
    assert_states_equal(newest_state(one), newest_state(two))


def test_release_flag_aliases(tmp_path, data):
    runner = CliRunner()
    result = runner.invoke(train_stylegan2_fp.main, [
        "--data-dir", str(data.parent), "--dataset", data.stem, "--result-dir", str(tmp_path),
        "--watermark-size", "16", "--res-modulated-range", "8-32", "--decoupleL2-weight", "1.5",
        "--latentsRecL2-weight", "0.5", "--watermarkCls-weight", "3", "--num-gpus", "1", "--gamma", "10",
        "--mirror", "true", "--metrics", "none", "--dry-run"])
    assert result.exit_code == 0, result.output
    opts = json.loads(result.output)
    assert opts["data"] == str(data.resolve()) and opts["outdir"] == str(tmp_path.resolve())
    assert opts["n_bits"] == 16 and opts["mod_range"] == [8, 32] and opts["mirror"] is True
    assert opts["weights"] == {**opts["weights"], "consistency": 1.5, "latent_rec": 0.5, "fingerprint": 3.0,
                               "r1_gamma": 10.0}
    assert opts["metrics"] == []


def test_baseline_without_fingerprint_and_warmup_and_guard(tmp_path, data):
    res = train("--data", str(data), "--outdir", str(tmp_path / "base"), "--total-kimg", "0.016", *FAST[:2],
                "--bits", "0", *FAST[4:])
    assert res.returncode == 0, res.stderr
    res = train("--data", str(data), "--outdir", str(tmp_path / "fp"), "--total-kimg", "0.032", *FAST,
                "--fp-warmup", "0.0", "--guard-kimg", "0")
    assert res.returncode == 0, res.stderr
    assert "Fingerprint warm-up passed" in res.stdout
    log = next((tmp_path / "fp").iterdir()) / "log.txt"
    assert "WARNING: F's bit accuracy" in log.read_text()


@pytest.mark.parametrize("args,message", [
    (["--data", "nope.zip"], "does not exist"),
    (["--res-modulated-range", "4-x"], "expected A-B"),
    (["--batch", "6", "--gpus", "4"], "not divisible"),
    (["--resume", "missing.safetensors"], "is not 'auto', 'none'"),
    (["--metrics", "fid50k"], "unknown metric 'fid50k'"),
    # A FID metric without an Inception network is refused at launch, not at the first snapshot hours in.
    (["--metrics", "quality_snapshot,fid50k_full"], "fid50k_full needs an Inception network"),
    (["--metrics", "fid30k_bitacc", "--inception", "missing-inception.pt"], "missing-inception.pt: no such file"),
    (["--augment-fp", "crop:0.6-1,warp"], "unknown perturbation 'warp'"),
    (["--fp-warmup-terms", "consistency,bogus"], "choose among"),
])
def test_bad_options(tmp_path, data, args, message):
    base = {"--data": str(data)}
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1]
    flat = [x for kv in base.items() for x in kv]
    result = CliRunner().invoke(train_stylegan2_fp.main, [*flat, "--outdir", str(tmp_path), "--dry-run"])
    assert result.exit_code == 2 and message in result.output


def test_dataset_resolution_must_match_the_preset(tmp_path, data):
    res = train("--data", str(data), "--outdir", str(tmp_path), "--preset", "celeba128", "--total-kimg", "0.016",
                "--workers", "0", "--device", "cpu")
    assert res.returncode == 1
    assert "dataset is 32x32" in res.stderr and "--resolution 128" in res.stderr


def test_ema_rampup_lets_g_ema_follow_g_early(tmp_path, data):
    """--ema-rampup 0.05 caps the half-life at 5% of the images seen: after 2 steps G_ema ~ G.
    Without it (the release), G_ema has barely moved from G's initial weights."""
    def gap(outdir: Path, *extra: str) -> float:
        res = train("--data", str(data), "--outdir", str(outdir), "--total-kimg", "0.016", *FAST, *extra)
        assert res.returncode == 0, res.stderr
        (snap,) = outdir.glob("*/network-snapshot-*.safetensors")
        nets = load_network(snap, names=["G", "G_ema"])
        return max(float((a - b).abs().max()) for a, b in zip(nets["G"].state_dict().values(),
                                                               nets["G_ema"].state_dict().values()))

    assert gap(tmp_path / "ramp", "--ema-rampup", "0.05") < 1e-5
    assert gap(tmp_path / "release") > 1e-3
