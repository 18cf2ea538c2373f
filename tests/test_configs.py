"""Named training configs (``--cfg``) and ``--amp auto`` (issue 15).

A config fills the options the command line leaves unset and the command line wins; the run folder's name
and ``training_options.json`` carry the config; every config is a valid set of options and reproduces the
flags it replaced (so runs started with those flags still resume); ``--amp auto`` decides from the hardware.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import click
import pytest
import torch
from click.testing import CliRunner

import train_fingerprint_ae
import train_stylegan2_fp
from training import configs
from training.configs import AE_CONFIGS, GAN_CONFIGS, Config, config_option, fingerprint_pathway, resolve_amp
from training.run_state import NON_TRAJECTORY_OPTIONS, find_resumable_run, state_files

REPO = Path(__file__).resolve().parents[1]
# The recipes as the scripts wrote them out before configs existed (scripts/celeba32_cpu.sh, the 128-bit command
# of docs/RESULTS.md, scripts/quickstart.sh, scripts/celeba64_ae.sh); the configs add the speed options.
CPU32_FLAGS = ["--preset", "tiny32", "--bits", "32", "--fp-warmup", "0.9", "--fp-warmup-terms",
               "consistency,latent_rec", "--fp-ramp-kimg", "4", "--c-encoding", "pm1", "--embed-layers", "1",
               "--embed-lrmul", "1", "--f-lr", "0.01", "--f-beta1", "0.9", "--f-head", "512", "--ema-rampup", "0.05",
               "--tick", "2", "--snap", "2"]
RECIPES = {
    "cpu32": [*CPU32_FLAGS, "--channels-last", "--amp", "auto"],
    "cpu128": [*CPU32_FLAGS, "--bits", "128", "--fp-warmup", "0.86", "--fp-warmup-terms",
               "consistency,adversarial,latent_rec", "--latentsRecL2-weight", "0", "--pl-weight", "0", "--amp",
               "--channels-last", "--tick", "4", "--snap", "2"],
    "quick32": ["--preset", "quick32", "--bits", "32", "--fp-warmup", "0.9", "--fp-warmup-terms",
                "consistency,latent_rec,adversarial", "--fp-ramp-kimg", "4", "--c-encoding", "pm1", "--embed-layers",
                "1", "--embed-lrmul", "1", "--f-lr", "0.01", "--f-beta1", "0.9", "--f-head", "512", "--ema-rampup",
                "0.05", "--pl-weight", "0", "--total-kimg", "52", "--tick", "2", "--snap", "4", "--workers", "1"],
}
AE_RECIPES = {"cpu64": ["--resolution", "64", "--bits", "100", "--holdout", "1000", "--lr", "1e-3", "--l2-wait-steps",
                        "100", "--l2-ramp-steps", "600", "--tick", "4", "--snap", "5", "--workers", "1"]}
TRAINERS = {"gan": train_stylegan2_fp.main, "ae": train_fingerprint_ae.train}


@pytest.fixture
def cpu(monkeypatch, tmp_path):
    """``cpu(*flags)``: the CPU seen through /proc/cpuinfo has these feature flags (besides plain AVX2 ones)."""
    def set_flags(*flags: str) -> None:
        path = tmp_path / "cpuinfo"
        path.write_text(f"processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma {' '.join(flags)}\n\n"
                        f"processor\t: 1\nflags\t\t: fpu sse2 avx avx2 fma {' '.join(flags)}\n")
        monkeypatch.setattr(configs, "CPUINFO", path)
    return set_flags


def invoke(trainer: str, *args: str):
    if trainer == "ae":
        return CliRunner().invoke(train_fingerprint_ae.cli, ["train", *args])
    return CliRunner().invoke(train_stylegan2_fp.main, list(args))


def dry_run(trainer: str, data: Path, outdir: Path, *args: str) -> tuple[dict, str]:
    """The resolved options ``--dry-run`` prints, and what went to stderr."""
    result = invoke(trainer, "--data", str(data), "--outdir", str(outdir), *args, "--dry-run")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), result.stderr


def as_flags(command: click.Command, options: dict) -> list[str]:
    """A config's values written as command-line flags."""
    params = {p.name: p for p in command.params}
    flags = []
    for name, value in options.items():
        p = params[name]
        if getattr(p, "is_bool_flag", False):
            flags.append(p.opts[0] if value else p.secondary_opts[0])
        else:
            flags += [p.opts[0], str(value)]
    return flags


def test_a_config_fills_unset_options_and_the_command_line_wins(tmp_path, data, cpu):
    cpu("avx512_bf16")
    paper, err = dry_run("gan", data, tmp_path)
    assert paper["cfg"] == "paper" and err == ""
    assert paper["c_encoding"] is None and paper["f_head"] is None and paper["fp_warmup"] is None
    assert paper["amp"] is False and paper["channels_last"] is False

    opts, err = dry_run("gan", data, tmp_path, "--cfg", "cpu32")
    assert opts["cfg"] == "cpu32"
    assert (opts["preset"], opts["n_bits"], opts["c_encoding"], opts["embed_layers"], opts["f_head"]) == \
        ("tiny32", 32, "pm1", 1, 512)
    assert (opts["f_lr"], opts["f_beta1"], opts["ema_rampup"], opts["fp_warmup"]) == (0.01, 0.9, 0.05, 0.9)
    assert opts["fp_warmup_terms"] == ["consistency", "latent_rec"] and opts["tick_kimg"] == 2.0
    assert opts["amp"] is True and opts["channels_last"] is True
    assert "--cfg cpu32 sets --preset tiny32" in err and "--bits 32" in err

    # Options given win, also over the config's switches; the rest still comes from the config.
    mine, err = dry_run("gan", data, tmp_path, "--bits", "128", "--cfg", "cpu32", "--embed-layers", "2",
                        "--no-channels-last", "--amp", "off", "--fp-warmup", "off", "--ema-rampup", "off")
    assert (mine["n_bits"], mine["embed_layers"], mine["channels_last"], mine["amp"]) == (128, 2, False, False)
    assert mine["fp_warmup"] is None and mine["ema_rampup"] is None
    assert mine["f_head"] == 512 and mine["c_encoding"] == "pm1" and mine["cfg"] == "cpu32"
    assert "--bits" not in err and "--embed-layers" not in err and "--f-head 512" in err

    ae_opts, _ = dry_run("ae", data, tmp_path, "--cfg", "cpu64", "--bits", "8")
    assert (ae_opts["cfg"], ae_opts["resolution"], ae_opts["n_bits"], ae_opts["lr"], ae_opts["holdout"]) == \
        ("cpu64", 64, 8, 1e-3, 1000)


@pytest.mark.parametrize("trainer,name", [*(("gan", n) for n in GAN_CONFIGS), *(("ae", n) for n in AE_CONFIGS)])
def test_every_config_is_valid_options(tmp_path, data, cpu, trainer, name):
    """Each config passes the options' own checks and means what its values written as flags mean."""
    cpu("amx_bf16")
    table = GAN_CONFIGS if trainer == "gan" else AE_CONFIGS
    assert table[name].description and "\n" not in table[name].description
    assert set(table[name].options) <= {p.name for p in TRAINERS[trainer].params}
    # A stage-2 config holds the images to a baseline's, so it needs one (any file passes a dry run).
    start = ["--baseline", str(REPO / "README.md")] if table[name].options.get("consistency_to") == "baseline" else []
    if table[name].options.get("freeze_decoder"):   # ... and one that freezes a decoder needs the autoencoder
        start += ["--fp-decoder", str(REPO / "README.md")]
    via_cfg, _ = dry_run(trainer, data, tmp_path, "--cfg", name, *start)
    via_flags, _ = dry_run(trainer, data, tmp_path, *as_flags(TRAINERS[trainer], table[name].options), *start)
    assert via_cfg["cfg"] == name and via_flags["cfg"] == "paper"
    assert {**via_cfg, "cfg": None} == {**via_flags, "cfg": None}


@pytest.mark.parametrize("trainer,name,flags", [*(("gan", n, f) for n, f in RECIPES.items()),
                                                 *(("ae", n, f) for n, f in AE_RECIPES.items())])
def test_configs_reproduce_the_recipes_they_replace(tmp_path, data, cpu, trainer, name, flags):
    """A run started with the written-out flags (before configs existed: no 'cfg' in its options) continues
    under the config."""
    cpu("avx512_bf16")
    new, _ = dry_run(trainer, data, tmp_path, "--cfg", name)
    old, _ = dry_run(trainer, data, tmp_path, *flags)
    # The same trajectory; how often snapshots are taken is not part of it (issue 16 made the CPU configs
    # snapshot every 20 kimg, since every snapshot now measures the image quality too).
    trajectory = lambda opts: {k: v for k, v in opts.items() if k not in NON_TRAJECTORY_OPTIONS}  # noqa: E731
    assert trajectory(new) == trajectory(old)
    run = tmp_path / "runs" / "00000-earlier"
    run.mkdir(parents=True)
    (run / "training_options.json").write_text(json.dumps({k: v for k, v in old.items() if k != "cfg"}))
    (run / "training-state-000000016.pt").write_bytes(b"")
    assert find_resumable_run(tmp_path / "runs", new) == run


def test_the_run_folder_and_its_options_carry_the_config_and_the_same_command_continues(tmp_path, data, cpu):
    cpu()    # no native bfloat16: --amp auto (from the config) stays off
    out = tmp_path / "runs"
    args = ["--cfg", "cpu32", "--data", str(data), "--outdir", str(out), "--preset", "quick32", "--bits", "8",
            "--batch", "8", "--tick", "0.008", "--snap", "1", "--workers", "0", "--metrics", "none", "--device", "cpu"]
    result = invoke("gan", *args, "--total-kimg", "0.008")
    assert result.exit_code == 0, result.output
    assert "--amp auto: bfloat16 autocast off (the CPU has none of avx512_bf16, amx_bf16)" in result.stderr
    (run,) = out.iterdir()
    assert run.name == "00000-builtin32-cpu32-quick32-fp8-batch8"
    saved = json.loads((run / "training_options.json").read_text())
    assert saved["cfg"] == "cpu32" and saved["preset"] == "quick32" and saved["c_encoding"] == "pm1"
    assert saved["amp"] is False and saved["channels_last"] is True and saved["embed_layers"] == 1
    result = invoke("gan", *args, "--total-kimg", "0.016")
    assert result.exit_code == 0, result.output
    assert "Resuming" in result.output and [p.name for p in out.iterdir()] == [run.name]
    assert state_files(run)[0].name == "training-state-000000016.pt"

    ae_out = tmp_path / "ae"
    result = invoke("ae", "--cfg", "cpu64", "--data", str(data), "--outdir", str(ae_out), "--resolution", "32",
                    "--bits", "8", "--holdout", "0", "--batch", "8", "--tick", "0.008", "--snap", "1",
                    "--total-kimg", "0.008", "--workers", "0", "--device", "cpu")
    assert result.exit_code == 0, result.output
    (ae_run,) = ae_out.iterdir()
    assert ae_run.name == "00000-builtin32-cpu64-ae32-bits8-batch8"
    saved = json.loads((ae_run / "training_options.json").read_text())
    assert (saved["cfg"], saved["lr"], saved["l2_wait_steps"], saved["holdout"]) == ("cpu64", 1e-3, 100, 0)


@pytest.mark.parametrize("flags,native", [((), False), (("avx512f", "avx512_vnni"), False), (("avx512_bf16",), True),
                                          (("amx_bf16", "amx_tile"), True)])
def test_native_bf16_on_cpu_reads_cpuinfo(cpu, flags, native):
    cpu(*flags)
    assert configs.native_bf16("cpu")[0] is native
    logged = []
    assert resolve_amp("auto", "cpu", logged.append) is native
    assert logged == [f"--amp auto: bfloat16 autocast {'on' if native else 'off'} ({configs.native_bf16('cpu')[1]})"]


def test_no_cpuinfo_means_no_native_bf16(monkeypatch, tmp_path):
    monkeypatch.setattr(configs, "CPUINFO", tmp_path / "missing")
    assert configs.cpu_flags() == frozenset() and configs.native_bf16("cpu")[0] is False


def test_amp_on_without_native_bf16_warns_with_the_measured_factor(cpu):
    cpu()
    logged = []
    assert resolve_amp("on", "cpu", logged.append) is True
    assert len(logged) == 1 and logged[0].startswith("WARNING") and "15x slower" in logged[0]
    assert "28.3 img/s" in logged[0] and "--amp auto" in logged[0]
    cpu("avx512_bf16")
    assert resolve_amp("on", "cpu", logged.append) is True and len(logged) == 1    # native: no warning
    assert resolve_amp("off", "cpu", logged.append) is False and len(logged) == 1


@pytest.mark.parametrize("native", [True, False])
def test_amp_auto_on_cuda_asks_for_native_bf16(monkeypatch, native):
    asked = {}

    def supported(including_emulation=True):
        asked["emulation"] = including_emulation
        return native
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", supported)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Some GPU")
    logged = []
    assert resolve_amp("auto", "cuda", logged.append) is native
    assert asked == {"emulation": False} and "Some GPU" in logged[0]


def test_the_cli_decides_amp_from_the_hardware(tmp_path, data, cpu):
    cpu("avx2")
    opts, err = dry_run("gan", data, tmp_path, "--cfg", "cpu128")
    assert opts["amp"] is False and "bfloat16 autocast off" in err
    opts, err = dry_run("gan", data, tmp_path, "--amp")             # a bare --amp: on, as before, with a warning
    assert opts["amp"] is True and "WARNING: --amp on" in err and "15x slower" in err
    cpu("avx512_bf16", "amx_bf16")
    opts, err = dry_run("gan", data, tmp_path, "--cfg", "cpu128")
    assert opts["amp"] is True and "bfloat16 autocast on (the CPU has amx_bf16, avx512_bf16)" in err


def test_a_config_with_an_unknown_option_is_refused():
    @click.command()
    @config_option({"paper": Config("defaults", {}), "typo": Config("a typo", {"fp_bitz": 3})})
    @click.option("--bits", "n_bits", type=int, default=1)
    def command(cfg, n_bits):
        click.echo(f"{cfg} {n_bits}")
    assert CliRunner().invoke(command, []).output == "paper 1\n"
    result = CliRunner().invoke(command, ["--cfg", "typo"])
    assert result.exit_code == 2 and "config 'typo' sets unknown options ['fp_bitz']" in result.output


def test_the_fingerprint_pathway_of_a_config_feeds_the_learnability_sweep():
    assert fingerprint_pathway("cpu32") == dict(preset="tiny32", c_encoding="pm1", embed_layers=1,
                                                embed_lr_multiplier=1.0, f_head=512, g_lr=0.002, f_lr=0.01,
                                                f_beta1=0.9, latent_rec=0.0)
    assert fingerprint_pathway("paper")["latent_rec"] == 1.0 and fingerprint_pathway("paper")["f_lr"] == 0.002
    spec = importlib.util.spec_from_file_location("learnability_sweep", REPO / "bench" / "learnability_sweep.py")
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    variant = {name: dict(sweep.RELEASE, **sweep.VARIANTS[name]) for name in sweep.VARIANTS}
    assert variant["cpu32"] == variant["cpu_map1"] and variant["quick32"] == variant["cpu_map1_ch32"]
