"""scripts/table1.py (Table 1 for one data set) and the dataset scripts that call it.

The pipeline runs end to end on its tiny configuration (the built-in toy faces, a training step each, a
stand-in Inception). Its steps run in this process (each CLI's click command called with the step's argv),
which spares a Python and torch start-up per step; the driver's own start-up checks run as a subprocess.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
import torch
from click.testing import CliRunner

from tests.shared_paths import ORACLE, SHARED
from tests.standin_inception import save_standin

REPO = Path(__file__).resolve().parents[1]
CLIS = {"dataset_tool.py": "cli", "train_stylegan2_fp.py": "main", "train_fingerprint_ae.py": "cli",
        "calc_metrics.py": "main", "legacy.py": "main", "bench/ae_transfer.py": "main"}


def load(path: str, name: str | None = None):
    name = name or path.replace("/", "_").removesuffix(".py")
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


table1 = load("scripts/table1.py", "table1_script")


class InProcess:
    """``table1.run_command`` that calls each step's click command in this process and records the argv."""

    def __init__(self, fail: str | None = None):
        self.calls: list[list[str]] = []
        self.fail = fail

    def __call__(self, argv: list[str], stdout: Path | None = None) -> int:
        self.calls.append(argv)
        if self.fail and self.fail in argv[0]:
            return 3
        command = getattr(load(argv[0]), CLIS[argv[0]])
        with contextlib.ExitStack() as stack:
            if stdout is not None:
                stack.enter_context(contextlib.redirect_stdout(stack.enter_context(open(stdout, "w"))))
            try:
                command.main(args=argv[1:], prog_name=argv[0], standalone_mode=False)
            except SystemExit as e:
                return e.code if isinstance(e.code, int) else 1
            except click.ClickException as e:
                e.show()
                return 1
        return 0

    def scripts(self) -> list[str]:
        return [" ".join(a[:2]) if a[0] == "train_fingerprint_ae.py" else a[0] for a in self.calls]


def run(monkeypatch, *args, runner: InProcess | None = None):
    runner = runner or InProcess()
    monkeypatch.setattr(table1, "run_command", runner)
    result = CliRunner().invoke(table1.main, [str(a) for a in args])
    return result, runner


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The steps run in this process: one thread keeps them at seconds on 2 shared cores (two threads
    contending with other work were measured up to 10 times slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, one_thread):
    """The tiny pipeline run once: its outdir, the stand-in Inception, the CliRunner result and the steps run."""
    root = tmp_path_factory.mktemp("table1")
    inception = save_standin(root / "inception.pt")
    with pytest.MonkeyPatch.context() as mp:
        result, runner = run(mp, "--dataset", "tiny", "--outdir", root / "out", "--inception", inception)
    return {"root": root, "out": root / "out", "inception": inception, "result": result, "runner": runner}


def rows(out: Path) -> list[dict]:
    with open(out / "table1.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_tiny_pipeline_end_to_end(tiny):
    assert tiny["result"].exit_code == 0, tiny["result"].output
    assert tiny["runner"].scripts() == [
        "dataset_tool.py", "train_stylegan2_fp.py", "calc_metrics.py", "train_stylegan2_fp.py", "calc_metrics.py",
        "train_fingerprint_ae.py train", "train_fingerprint_ae.py embed", "train_stylegan2_fp.py", "calc_metrics.py",
        "bench/ae_transfer.py"]
    table = rows(tiny["out"])
    assert [t["row"] for t in table] == ["baseline", "scalable", "artificial"]
    for t in table:
        assert math.isfinite(float(t["fid"])) and float(t["fid"]) >= 0
        assert float(t["kimg"]) == pytest.approx(0.008)
    assert table[0]["bit_acc"] == ""                      # the plain StyleGAN2 has no fingerprint
    for t in table[1:]:
        assert 0 <= float(t["bit_acc"]) <= 1 and 0 <= float(t["p_value"]) <= 1
    assert table[1]["bit_acc_samples"] == "16" and table[2]["bit_acc_samples"] == "16"
    md = (tiny["out"] / "table1.md").read_text().splitlines()
    assert [line.split(" | ")[0] for line in md if line.startswith("| ") and "---" not in line][1:] == [
        "| StyleGAN2 without fingerprint", "| scalable fingerprinting", "| artificial fingerprinting (data)"]
    # The plain GANs: no fingerprint bits; the artificial row's GAN trained on the fingerprinted copy.
    art = [a for a in tiny["runner"].calls if a[0] == "train_stylegan2_fp.py"][2]
    assert art[art.index("--bits") + 1] == "0" and "fingerprinted" in art[art.index("--data") + 1]


def test_rerun_skips_finished_steps(tiny, monkeypatch):
    before = rows(tiny["out"])
    result, runner = run(monkeypatch, "--dataset", "tiny", "--outdir", tiny["out"], "--inception", tiny["inception"])
    assert result.exit_code == 0, result.output
    assert runner.calls == []
    assert result.output.count("done, skipped") == 9 and "tiny.zip exists, used as it is" in result.output
    assert rows(tiny["out"]) == before


def test_a_changed_setting_reruns_what_it_changes(tiny, monkeypatch):
    """--bit-samples changes only the artificial row's bit accuracy (runs after the rerun test: it changes
    the tiny run's records)."""
    result, runner = run(monkeypatch, "--dataset", "tiny", "--outdir", tiny["out"], "--inception", tiny["inception"],
                         "--bit-samples", "8", "--rows", "artificial")
    assert result.exit_code == 0, result.output
    assert runner.scripts() == ["bench/ae_transfer.py"]
    assert [(t["row"], t["bit_acc_samples"]) for t in rows(tiny["out"])] == [("artificial", "8")]


def test_dry_run_prints_every_command_and_runs_nothing(tmp_path, monkeypatch):
    src = tmp_path / "img_align_celeba"
    src.mkdir()
    result, runner = run(monkeypatch, "--dataset", "celeba128", "--source", src, "--outdir", tmp_path / "out",
                         "--dry-run")
    assert result.exit_code == 0, result.output
    assert runner.calls == [] and not (tmp_path / "out").exists()
    out = result.output
    for step in ("data", "train-baseline", "eval-baseline", "train-scalable", "eval-scalable", "train-ae", "embed",
                 "train-artificial", "eval-artificial", "bits-artificial"):
        assert f"[{step}] python " in out
    assert "create_celeba --source" in out and "--max-images 30000" in out
    assert out.count("--total-kimg 25000") == 3 and "--bits 128 " in out and "--res-modulated-range 4-128" in out
    assert "--total-kimg 600 " in out                     # the autoencoder: 20 epochs of 30,000 images
    assert out.count("25,000,000 images; GPU: not measured (run bench/gpu_check.sh)") == 3
    assert "default: this project, not the paper" in out
    result, _ = run(monkeypatch, "--dataset", "cat256", "--source", src, "--outdir", tmp_path / "o2",
                    "--dry-run", "--kimg", "100", "--ae-epochs", "3")
    assert "--resolution 256 --max-images 50000" in result.output and "--res-modulated-range 4-256" in result.output
    assert result.output.count("--total-kimg 100 ") == 3 and "--total-kimg 150 " in result.output  # 3 x 50k
    assert "(given)" in result.output


@pytest.mark.parametrize("args,message", [
    ([], "--inception FILE is required"),
    (["--inception", "missing.pt"], "missing.pt: no such file"),
])
def test_missing_inception_refused_before_anything_runs(tmp_path, args, message):
    res = subprocess.run([sys.executable, "scripts/table1.py", "--dataset", "tiny", "--outdir", str(tmp_path / "o"),
                          *args], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and message in res.stderr
    assert not (tmp_path / "o").exists()


def test_other_inputs_refused_before_anything_runs(tmp_path, monkeypatch):
    inc = tmp_path / "inc.pt"
    inc.write_bytes(b"x")
    base = ["--outdir", tmp_path / "o", "--inception", inc]
    for args, message in [
        (["--dataset", "celeba128"], "give --source"),
        (["--dataset", "tiny", "--snapshot", "nope=x"], "ROW=PATH"),
        (["--dataset", "tiny", "--snapshot", f"artificial={inc}"], "--snapshot ae=PATH"),
        (["--dataset", "tiny", "--rows", "table2"], "give rows among"),
        (["--dataset", "tiny", "--fingerprint", "0101"], "4 bits; the autoencoder has 128"),
        (["--dataset", "tiny", "--fingerprint", "01x1"], "0/1 text"),
    ]:
        result, runner = run(monkeypatch, *args, *base)
        assert result.exit_code != 0 and message in result.output, result.output
        assert runner.calls == []
    result, _ = run(monkeypatch, "--dataset", "celeba128", "--source", tmp_path, "--outdir", tmp_path / "x",
                    "--inception", inc)
    assert "inside the input" in result.output
    assert not (tmp_path / "o").exists()


def test_given_snapshots_checked_before_anything_runs(tiny, tmp_path, monkeypatch):
    snap = {row: next((tiny["out"] / row).glob("**/*-snapshot-*.safetensors"))
            for row in ("baseline", "scalable", "artificial/ae")}
    base = ["--dataset", "tiny", "--outdir", tmp_path / "o", "--inception", tiny["inception"]]
    for args, message in [
        (["--snapshot", f"scalable={snap['baseline']}"], "needs a fingerprinted generator and its decoder F"),
        (["--snapshot", f"baseline={snap['scalable']}"], "needs a plain StyleGAN2 (--bits 0); this one has 128"),
        (["--snapshot", f"ae={snap['scalable']}"], "not a fingerprint autoencoder"),
        (["--snapshot", f"ae={snap['artificial/ae']}", "--ae-bits", "64"], "the autoencoder of --snapshot ae has 128"),
        (["--snapshot", f"scalable={tiny['inception']}"], "not a readable safetensors file"),
    ]:
        result, runner = run(monkeypatch, *base, *args)
        assert result.exit_code == 2 and message in result.output, result.output
        assert runner.calls == []
    assert not (tmp_path / "o").exists()


def test_snapshot_skips_that_rows_training(tiny, tmp_path, monkeypatch):
    base = next((tiny["out"] / "baseline" / "gan").glob("*/network-snapshot-*.safetensors"))
    args = ["--dataset", "tiny", "--outdir", tmp_path / "out", "--inception", tiny["inception"],
            "--data", tiny["out"] / "data" / "tiny.zip", "--snapshot", f"baseline={base}"]
    rows_ = "baseline"
    if (ORACLE / "network-snapshot.pkl").is_file():   # a release pickle: converted first, then measured
        args += ["--snapshot", f"scalable={ORACLE / 'network-snapshot.pkl'}"]
        rows_ = "baseline,scalable"
    result, runner = run(monkeypatch, *args, "--rows", rows_)
    assert result.exit_code == 0, result.output
    assert "train_stylegan2_fp.py" not in runner.scripts() and "dataset_tool.py" not in runner.scripts()
    assert "[train-baseline] skipped: --snapshot baseline=" in result.output
    table = rows(tmp_path / "out")
    assert table[0]["snapshot"] == str(base) and math.isfinite(float(table[0]["fid"]))
    if rows_ == "baseline,scalable":
        assert runner.scripts() == ["legacy.py", "calc_metrics.py", "calc_metrics.py"]  # converted first
        assert table[1]["snapshot"] == str(tmp_path / "out" / "scalable" / "release.safetensors")
        assert 0 <= float(table[1]["bit_acc"]) <= 1


@pytest.mark.skipif(not (SHARED / "oracle" / "art_A" / "oracle_encoder.pth").is_file(), reason="no shared/oracle")
def test_a_release_autoencoder_fingerprints_the_data(tiny, tmp_path, monkeypatch):
    """--snapshot ae=X_encoder.pth: converted by legacy.py (its decoder beside it), its bit count (48) taken."""
    encoder = SHARED / "oracle" / "art_A" / "oracle_encoder.pth"
    result, runner = run(monkeypatch, "--dataset", "tiny", "--outdir", tmp_path / "out", "--inception",
                         tiny["inception"], "--data", tiny["out"] / "data" / "tiny.zip", "--rows", "artificial",
                         "--snapshot", f"ae={encoder}")
    assert result.exit_code == 0, result.output
    assert runner.scripts() == ["legacy.py", "train_fingerprint_ae.py embed", "train_stylegan2_fp.py",
                                "calc_metrics.py", "bench/ae_transfer.py"]
    assert "autoencoder 48 bits" in result.output
    (row,) = rows(tmp_path / "out")
    assert 0 <= float(row["bit_acc"]) <= 1 and math.isfinite(float(row["fid"]))


def test_a_failed_step_stops_with_one_line_naming_it(tiny, tmp_path, monkeypatch):
    result, runner = run(monkeypatch, "--dataset", "tiny", "--outdir", tmp_path / "out", "--inception",
                         tiny["inception"], "--data", tiny["out"] / "data" / "tiny.zip",
                         runner=InProcess(fail="train_stylegan2_fp.py"))
    assert result.exit_code == 1
    assert "error: step train-baseline failed (exit status 3)" in result.output
    assert len(runner.calls) == 1 and not (tmp_path / "out" / "steps" / "train-baseline.json").exists()


def test_dataset_scripts_call_table1(tmp_path):
    src = tmp_path / "bedroom_train_lmdb"
    src.mkdir()
    res = subprocess.run(["bash", "scripts/bedroom128.sh", str(src), "--outdir", str(tmp_path / "o"),
                          "--dry-run"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "Table 1, bedroom128" in res.stdout and f"create_lsun --source {src} --resolution 128" in res.stdout
    res = subprocess.run(["bash", "scripts/celeba128.sh"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and "usage:" in res.stderr


def test_steps_run_as_commands_from_the_repository_root(tiny, tmp_path):
    """The script itself, steps as subprocesses: the data set made, a given snapshot measured, the table written."""
    base = next((tiny["out"] / "baseline" / "gan").glob("*/network-snapshot-*.safetensors"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["--dataset", "tiny", "--outdir", "out", "--inception", str(tiny["inception"]), "--rows", "baseline",
            "--snapshot", f"baseline={base}"]
    res = subprocess.run([sys.executable, str(REPO / "scripts" / "table1.py"), *args], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "out" / "data" / "tiny.zip").is_file() and (tmp_path / "out" / "steps" / "data.json").is_file()
    (row,) = rows(tmp_path / "out")
    assert row["row"] == "baseline" and math.isfinite(float(row["fid"]))
