"""The two training CLIs fail safely: every bad option or failing start is one ``error:`` line (no traceback),
a failing start leaves no run folder, a write that fails names its file, and no snapshot replaces a file
the run did not write (issue 14)."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import click
import pytest
import torch
from click.testing import CliRunner

import train_fingerprint_ae
import train_stylegan2_fp
from dnnlib.cli import FiniteFloat
from networks import build_networks, save_network
from training.run_state import state_files

# quick32 with 8 bits, batch 8, one step per tick: the cheapest real training.
GAN_FAST = ["--preset", "quick32", "--bits", "8", "--batch", "8", "--tick", "0.008", "--snap", "1",
            "--workers", "0", "--metrics", "none", "--device", "cpu"]
AE_FAST = ["--resolution", "32", "--bits", "8", "--batch", "8", "--tick", "0.008", "--snap", "1", "--workers", "0",
           "--device", "cpu"]
UNEXPECTED_POS = "[enforce fail at inline_container.cc:626] . unexpected pos 4416 vs 4310"   # torch.save, disk full


def enospc() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def gan(*args: str):
    return CliRunner().invoke(train_stylegan2_fp.main, list(args))


def ae(*args: str):
    return CliRunner().invoke(train_fingerprint_ae.cli, ["train", *args])


def assert_error(result, *fragments: str) -> str:
    """Exit 1 with exactly one ``error: ...`` line on stderr (a clean exit, not an escaped exception)."""
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def float_options(command: click.Command) -> list[str]:
    return [p.opts[0] for p in command.params if isinstance(p.type, click.FloatRange)]


@pytest.mark.parametrize("command", [train_stylegan2_fp.main, train_fingerprint_ae.train], ids=["gan", "ae"])
def test_every_float_option_is_finite(command):
    names = float_options(command)
    assert names and all(isinstance(p.type, FiniteFloat) for p in command.params
                         if isinstance(p.type, click.FloatRange))


@pytest.mark.parametrize("option", float_options(train_stylegan2_fp.main))
def test_gan_float_options_refuse_nan(tmp_path, data, option):
    result = gan("--data", str(data), "--outdir", str(tmp_path), option, "nan", "--dry-run")
    assert result.exit_code == 2 and "not a finite number" in result.output, result.output


@pytest.mark.parametrize("option", float_options(train_fingerprint_ae.train))
def test_ae_float_options_refuse_nan(tmp_path, data, option):
    result = ae("--data", str(data), "--outdir", str(tmp_path), option, "nan", "--dry-run")
    assert result.exit_code == 2 and "not a finite number" in result.output, result.output


@pytest.mark.parametrize("trainer,args,message", [
    (gan, ["--total-kimg", "nan"], "not a finite number"),
    (gan, ["--total-kimg", "inf"], "inf is not in the range"),
    (gan, ["--total-kimg", "1e300"], "not in the range"),
    (gan, ["--tick", "nan"], "not a finite number"),
    (gan, ["--gamma", "inf"], "not a finite number"),
    (gan, ["--bits", "1000000"], "1000000 is not in the range 0<=x<=4096"),
    (gan, ["--f-head", "100000000"], "not in the range"),
    (gan, ["--embed-layers", "100000"], "not in the range"),
    (gan, ["--seed", str(2**64)], "not in the range"),
    (gan, ["--shared-change-weight", "10"], "give --consistency-to baseline"),
    (gan, ["--shared-change-weight", "-1"], "not in the range"),
    (ae, ["--bits", "1000000"], "1000000 is not in the range 1<=x<=4096"),
    (ae, ["--resolution", str(2**20)], "not in the range 32<=x<=1024"),
    (ae, ["--total-kimg", "inf"], "inf is not in the range"),
    (ae, ["--l2-threshold", "nan"], "not a finite number"),
])
def test_reported_options_are_usage_errors(tmp_path, data, trainer, args, message):
    result = trainer("--data", str(data), "--outdir", str(tmp_path), *args, "--dry-run")
    assert result.exit_code == 2 and message in result.output, result.output


@pytest.mark.parametrize("error", [RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate "
                                                "1099511627776 bytes. Error code 12 (Cannot allocate memory)"),
                                   MemoryError()], ids=["runtime", "memory"])
def test_gan_allocation_failure_is_one_line_and_leaves_nothing(tmp_path, data, monkeypatch, error):
    def fail(*args, **kwargs):
        raise error
    monkeypatch.setattr("training.training_loop.build_networks", fail)
    out = tmp_path / "runs"
    result = gan("--data", str(data), "--outdir", str(out), "--total-kimg", "0.008", *GAN_FAST)
    assert_error(result, "cannot allocate the networks", "--bits")
    assert not out.exists()


def test_ae_allocation_failure_is_one_line_and_leaves_nothing(tmp_path, data, monkeypatch):
    def fail(*args, **kwargs):
        raise MemoryError()
    monkeypatch.setattr("training.autoencoder_loop.AutoencoderDecoder", fail)
    out = tmp_path / "runs"
    result = ae("--data", str(data), "--outdir", str(out), "--total-kimg", "0.008", *AE_FAST)
    assert_error(result, "cannot allocate the autoencoder", "--bits")
    assert not out.exists()


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory) -> dict[str, Path]:
    """Network snapshots of other bits, another architecture, and an autoencoder-like file (no training)."""
    folder = tmp_path_factory.mktemp("snaps")
    files = {}
    for name, preset, bits in (("bits16", "quick32", 16), ("tiny32", "tiny32", 8)):
        nets = build_networks(preset, n_bits=bits)
        files[name] = save_network(folder / f"{name}.safetensors", G=nets["G"], G_ema=nets["G"], D=nets["D"],
                                   F=nets["F"])
    nets = build_networks("quick32", which=("F",), n_bits=8)
    files["decoder"] = save_network(folder / "decoder.safetensors", F=nets["F"])
    return files


@pytest.mark.parametrize("which,fragments", [
    ("bits16", ["n_bits of G/G_ema/F is 16 in the snapshot but 8 here (--bits)"]),
    ("tiny32", ["channel_max", "(--preset)"]),
    ("decoder", ["not a training snapshot"]),
])
def test_resume_from_an_incompatible_snapshot(tmp_path, data, snapshots, which, fragments):
    out = tmp_path / "runs"
    result = gan("--data", str(data), "--outdir", str(out), "--total-kimg", "0.008", *GAN_FAST,
                 "--resume", str(snapshots[which]))
    line = assert_error(result, str(snapshots[which]), *fragments)
    assert "--resume none" in line or "network-snapshot" in line
    assert not out.exists()


def test_unwritable_outdir(tmp_path, data, monkeypatch):
    """A read-only --outdir (simulated where root can write anyway): one line naming it, nothing created."""
    outdir = tmp_path / "ro"
    outdir.mkdir()
    outdir.chmod(0o555)
    try:
        if os.access(outdir, os.W_OK):
            real_mkdir = Path.mkdir

            def mkdir(self, *args, **kwargs):
                if self == outdir or outdir in self.parents:
                    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
                return real_mkdir(self, *args, **kwargs)
            monkeypatch.setattr(Path, "mkdir", mkdir)
        results = [gan("--data", str(data), "--outdir", str(outdir), "--total-kimg", "0.008", *GAN_FAST),
                   ae("--data", str(data), "--outdir", str(outdir), "--total-kimg", "0.008", *AE_FAST)]
    finally:
        outdir.chmod(0o755)
    for result in results:
        assert_error(result, f"cannot create a run folder in {outdir}", "choose a writable --outdir")
    assert list(outdir.iterdir()) == []


@pytest.mark.parametrize("trainer,fast,grid_module", [
    (gan, GAN_FAST, "training.training_loop"),
    (ae, AE_FAST, "training.autoencoder_loop"),
], ids=["gan", "ae"])
def test_a_failing_start_removes_the_run_folder_it_created(tmp_path, data, monkeypatch, trainer, fast,
                                                           grid_module):
    """The disk fills up while the first images of a new run are written: the run folder, and the --outdir
    parents the start made, are removed; an existing sibling is kept."""
    def full(*args, **kwargs):
        raise enospc()
    monkeypatch.setattr(f"{grid_module}.save_image_grid", full)
    out = tmp_path / "new" / "runs"
    result = trainer("--data", str(data), "--outdir", str(out), "--total-kimg", "0.008", *fast)
    assert_error(result, "cannot write", str(out), "No space left on device", "free disk space")
    assert not (tmp_path / "new").exists()
    keep = tmp_path / "kept" / "00000-earlier"
    keep.mkdir(parents=True)
    result = trainer("--data", str(data), "--outdir", str(keep.parent), "--total-kimg", "0.008", *fast)
    assert_error(result, "cannot write")
    assert [p.name for p in keep.parent.iterdir()] == ["00000-earlier"]


def test_a_failing_start_keeps_the_run_it_continues(tmp_path, data):
    """A resumed run whose training state does not fit: one line, and the run folder is left as it was."""
    out = tmp_path / "runs"
    args = ["--data", str(data), "--outdir", str(out), "--total-kimg", "0.016", *GAN_FAST]
    options = json.loads(gan(*args, "--dry-run").stdout)
    run = out / "00000-earlier"
    run.mkdir(parents=True)
    (run / "training_options.json").write_text(json.dumps(options))
    torch.save({"format": 1, "G": {"bogus": torch.zeros(1)}}, run / "training-state-000000008.pt")
    before = sorted(p.name for p in run.iterdir())
    result = gan(*args)
    assert_error(result, "training-state-000000008.pt does not fit this run's networks", "--resume none")
    assert sorted(p.name for p in run.iterdir()) == sorted([*before, "log.txt"])
    assert [p.name for p in out.iterdir()] == ["00000-earlier"]


@pytest.mark.parametrize("target,error,fragment", [
    ("torch.save", lambda: RuntimeError(UNEXPECTED_POS), f"training-state-000000008.pt ({UNEXPECTED_POS})"),
    ("networks.checkpoint.save_file", enospc, "network-snapshot-000000_008.safetensors (No space left on device)"),
], ids=["state", "snapshot"])
def test_gan_write_failure_names_the_file(tmp_path, data, monkeypatch, target, error, fragment):
    def full(*args, **kwargs):
        raise error()
    monkeypatch.setattr(target, full)
    out = tmp_path / "runs"
    result = gan("--data", str(data), "--outdir", str(out), "--total-kimg", "0.008", *GAN_FAST)
    assert_error(result, "cannot write", fragment, "rerun the same command")
    assert not list(out.glob("*/.*.tmp")), "a half-written file was left"


def test_ae_write_failure_names_the_file(tmp_path, data, monkeypatch):
    def full(*args, **kwargs):
        raise RuntimeError(UNEXPECTED_POS)
    monkeypatch.setattr("torch.save", full)
    out = tmp_path / "runs"
    result = ae("--data", str(data), "--outdir", str(out), "--total-kimg", "0.008", *AE_FAST)
    assert_error(result, "cannot write", "training-state-000000008.pt", "unexpected pos", "free disk space")
    assert not list(out.glob("*/.*.tmp"))


@pytest.mark.parametrize("trainer,fast,prefix", [(gan, GAN_FAST, "network"), (ae, AE_FAST, "ae")],
                         ids=["gan", "ae"])
def test_a_snapshot_never_replaces_a_file_the_run_did_not_write(tmp_path, data, trainer, fast, prefix):
    """Snapshots 8 images apart get their own names; a foreign file at the next name stops the run."""
    out = tmp_path / "runs"
    result = trainer("--data", str(data), "--outdir", str(out), "--total-kimg", "0.008", *fast)
    assert result.exit_code == 0, result.output
    (run,) = out.iterdir()
    assert [p.name for p in run.glob(f"{prefix}-snapshot-*")] == [f"{prefix}-snapshot-000000_008.safetensors"]
    foreign = run / f"{prefix}-snapshot-000000_016.safetensors"
    foreign.write_bytes(b"someone else's file")
    result = trainer("--data", str(data), "--outdir", str(out), "--total-kimg", "0.016", *fast)
    assert_error(result, str(foreign), "was not written by this run", "refusing to overwrite it")
    assert foreign.read_bytes() == b"someone else's file"
    assert len(state_files(run)) == 1


@pytest.mark.parametrize("trainer,fast,content,fragment", [
    (gan, GAN_FAST, b"not a dataset", "not a dataset zip"),
    (ae, AE_FAST, None, "no images found"),
], ids=["gan-garbage", "ae-empty-folder"])
def test_unreadable_data_under_two_processes_is_one_line(tmp_path, trainer, fast, content, fragment):
    """With --gpus 2 the error comes from a spawned process: still its one line, not the process's traceback."""
    bad = tmp_path / ("bad.zip" if content else "empty")
    if content:
        bad.write_bytes(content)
    else:
        bad.mkdir()
    out = tmp_path / "runs"
    result = trainer("--data", str(bad), "--outdir", str(out), "--total-kimg", "0.008", *fast, "--gpus", "2")
    assert_error(result, str(bad), fragment)
    assert "Traceback" not in result.output and not out.exists()
