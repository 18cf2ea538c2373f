"""train_fingerprint_ae.py end to end on tiny data: train (run folder, exact resume, two processes),
embed (same / per-image fingerprints, read-back report, bad inputs), decoding the written images,
and starting the fingerprinted StyleGAN2's F from the autoencoder's decoder."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import train_fingerprint_ae
from data.fingerprint_dataset import CSV_NAME, REPORT_NAME, decode_images
from networks import load_network
from training.run_state import state_files

REPO = Path(__file__).resolve().parents[1]
# The fixture's run: 8 steps of 8 images, a snapshot every 2 ticks of 2 steps (at 0.032 and 0.064 kimg).
LAST = "000000_064"
FAST = ["--resolution", "32", "--bits", "8", "--batch", "8", "--tick", "0.016", "--snap", "2", "--workers", "0",
        "--device", "cpu", "--l2-threshold", "0", "--l2-wait-steps", "1", "--l2-ramp-steps", "2"]


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "train_fingerprint_ae.py", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env=None if env is None else {**os.environ, **env})


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory, data) -> Path:
    out = tmp_path_factory.mktemp("ae")
    res = run("train", "--data", str(data), "--outdir", str(out), "--total-kimg", "0.064", "--holdout", "16", *FAST)
    assert res.returncode == 0, res.stderr
    (run_dir,) = list(out.iterdir())
    return run_dir


def newest_state(outdir: Path) -> dict:
    (run_dir,) = [p for p in outdir.iterdir() if p.is_dir()]
    return torch.load(state_files(run_dir)[0], weights_only=True)


def assert_states_equal(a: dict, b: dict) -> None:
    trajectory = lambda counters: {k: v for k, v in counters.items() if k != "wall_ms"}  # noqa: E731 (a clock)
    assert trajectory(a["counters"]) == trajectory(b["counters"]) and a.keys() == b.keys()
    for net in ("encoder", "decoder", "encoder_ema", "decoder_ema"):
        if net not in a:
            continue
        for k in a[net]:
            assert torch.equal(a[net][k], b[net][k]), f"{net}.{k} differs"
    for idx, sa in a["opt"]["state"].items():
        for k in sa:
            assert torch.equal(torch.as_tensor(sa[k]), torch.as_tensor(b["opt"]["state"][idx][k]))


def test_run_folder_snapshot_stats_and_schedule(snapshot):
    names = {p.name for p in snapshot.iterdir()}
    for required in ("training_options.json", "environment.json", "log.txt", "stats.jsonl", "samples-init.png",
                     f"samples-{LAST}.png", f"ae-snapshot-{LAST}.safetensors", "metric-ae_quantized.jsonl"):
        assert required in names, required
    # Snapshots shorter than a kimg apart: each has its own name, sorted in training order.
    assert [p.name for p in sorted(snapshot.glob("ae-snapshot-*"))] == ["ae-snapshot-000000_032.safetensors",
                                                                       f"ae-snapshot-{LAST}.safetensors"]
    nets = load_network(snapshot / f"ae-snapshot-{LAST}.safetensors")
    assert set(nets) == {"encoder", "decoder"}
    x = torch.zeros(2, 3, 32, 32)
    assert nets["encoder"](x, torch.ones(2, 8)).shape == x.shape and nets["decoder"](x).shape == (2, 8)
    rows = [json.loads(line) for line in (snapshot / "stats.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and rows[-1]["Progress/step"] == 8
    for key in ("Loss/bce", "Loss/l2", "Metrics/bit_acc", "Metrics/psnr", "Schedule/lambda_l2", "Timing/img_per_sec"):
        assert key in rows[0], key
    # Threshold 0: passed at step 0, waits 1 step, ramps over 2: lambda 0, 0 | 5, 10 | 10, 10 | 10, 10.
    assert [r["Schedule/lambda_l2"] for r in rows] == [0.0, 7.5, 10.0, 10.0]
    metric = [json.loads(line) for line in (snapshot / "metric-ae_quantized.jsonl").read_text().splitlines()]
    assert metric[-1]["num"] == 16 and metric[-1]["held_out"] is True
    assert {"bit_acc", "psnr", "bit_acc_clean"} <= set(metric[-1])
    grid = Image.open(snapshot / f"samples-{LAST}.png")
    assert grid.size == (16 * 32, 3 * 32)          # clean / fingerprinted / amplified residual rows


def test_exact_resume_with_weight_average(tmp_path, data):
    once, twice = tmp_path / "once", tmp_path / "twice"
    common = ["--data", str(data), *FAST, "--ema-kimg", "0.01"]
    assert run("train", "--outdir", str(once), "--total-kimg", "0.032", *common).returncode == 0
    assert run("train", "--outdir", str(twice), "--total-kimg", "0.016", *common).returncode == 0
    res = run("train", "--outdir", str(twice), "--total-kimg", "0.032", *common)
    assert res.returncode == 0 and "Resuming" in res.stdout, res.stderr
    state = newest_state(once)
    assert_states_equal(state, newest_state(twice))
    # The snapshot holds the moving average, which differs from the raw weights.
    (run_dir,) = [p for p in once.iterdir() if p.is_dir()]
    snap = load_network(sorted(run_dir.glob("ae-snapshot-*.safetensors"))[-1])
    for net in ("encoder", "decoder"):
        raw, avg = state[net], state[f"{net}_ema"]
        assert all(torch.equal(v, avg[k]) for k, v in snap[net].state_dict().items())
        assert any(not torch.equal(v, avg[k]) for k, v in raw.items())


def test_immunized_autoencoder_resumes_exactly(tmp_path, data):
    """--augment-fp perturbs what the decoder sees: recorded in the options, exact resume, other weights."""
    aug = ["--augment-fp", "crop:0.6-1@0.5,jpeg:50-90@0.5,noise"]
    once, twice, plain = tmp_path / "once", tmp_path / "twice", tmp_path / "plain"
    common = ["--data", str(data), *FAST]
    assert run("train", "--outdir", str(once), "--total-kimg", "0.032", *common, *aug).returncode == 0
    assert run("train", "--outdir", str(twice), "--total-kimg", "0.016", *common, *aug).returncode == 0
    res = run("train", "--outdir", str(twice), "--total-kimg", "0.032", *common, *aug)
    assert res.returncode == 0 and "Resuming" in res.stdout, res.stderr
    assert_states_equal(newest_state(once), newest_state(twice))
    (run_dir,) = [p for p in once.iterdir() if p.is_dir()]
    assert json.loads((run_dir / "training_options.json").read_text())["augment_fp"] == (
        "crop:0.6-1@0.5,jpeg:50-90@0.5,noise:0-0.15@0.5")
    assert run("train", "--outdir", str(plain), "--total-kimg", "0.032", *common).returncode == 0
    dec_a, dec_p = newest_state(once)["decoder"], newest_state(plain)["decoder"]
    assert any(not torch.equal(v, dec_p[k]) for k, v in dec_a.items())


def test_two_processes_match_one_process(tmp_path, data):
    one, two = tmp_path / "one", tmp_path / "two"
    common = ["--data", str(data), "--total-kimg", "0.032", *FAST]
    single = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    assert run("train", "--outdir", str(one), "--batch-gpu", "4", *common, env=single).returncode == 0
    res = run("train", "--outdir", str(two), "--gpus", "2", *common, env=single)
    assert res.returncode == 0, res.stderr
    assert_states_equal(newest_state(one), newest_state(two))


def embed(*args: str):
    return CliRunner().invoke(train_fingerprint_ae.cli, ["embed", *args])


def test_embed_one_fingerprint_then_decode(tmp_path, snapshot, data):
    dest = tmp_path / "fp"
    net = snapshot / f"ae-snapshot-{LAST}.safetensors"
    result = embed("--network", str(net), "--source", str(data), "--dest", str(dest), "--fingerprint", "10110001",
                   "--device", "cpu")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(open(dest / CSV_NAME)))
    assert len(rows) == 64 and {r["bits"] for r in rows} == {"10110001"}
    assert all((dest / r["file"]).is_file() for r in rows)
    report = json.loads((dest / REPORT_NAME).read_text())
    assert report["num_images"] == 64 and report["measured_on"] == "the written 8-bit PNGs"
    # The report decodes the written files: recompute it from the PNGs with the library's decoder.
    decoder = load_network(net, names=["decoder"])["decoder"]
    decoded = {name: bits for name, bits, _ in decode_images(decoder, dest)}
    expected = np.mean([np.mean([a == b for a, b in zip(decoded[r["file"]], r["bits"])]) for r in rows])
    assert report["bit_acc"] == pytest.approx(expected, abs=1e-6)
    assert f"bit accuracy {report['bit_acc']:.4f}" in result.output


def test_embed_per_image_fingerprints_from_a_raw_folder(tmp_path, snapshot):
    src = tmp_path / "raw"
    (src / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(src / "wide.jpg")
    Image.fromarray(rng.integers(0, 255, (50, 50), dtype=np.uint8)).save(src / "sub" / "gray.png")
    (src / "broken.png").write_bytes(b"not a png")
    dest = tmp_path / "fp"
    result = embed("--network", str(snapshot / f"ae-snapshot-{LAST}.safetensors"), "--source", str(src),
                   "--dest", str(dest), "--random-per-image", "--seed", "3", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "skipped broken.png: cannot decode" in result.output
    rows = list(csv.DictReader(open(dest / CSV_NAME)))
    assert sorted(r["file"] for r in rows) == ["sub/gray.png", "wide.png"]
    assert all(Image.open(dest / r["file"]).size == (32, 32) for r in rows)
    assert len({r["bits"] for r in rows}) == 2


@pytest.mark.parametrize("args,message", [
    (["--fingerprint", "1011"], "must be 8 characters"),
    (["--fingerprint", "10110002"], "others than 0/1"),
    (["--fingerprint", "10110001", "--random-per-image"], "exactly one of"),
    ([], "exactly one of"),
])
def test_embed_bad_fingerprints(tmp_path, snapshot, data, args, message):
    dest = tmp_path / "fp"
    result = embed("--network", str(snapshot / f"ae-snapshot-{LAST}.safetensors"), "--source", str(data),
                   "--dest", str(dest), *args)
    assert result.exit_code != 0 and message in result.output
    assert not dest.exists() and not list(tmp_path.glob(".fp.*"))


def test_embed_refuses_to_overwrite_and_bad_networks(tmp_path, snapshot, data):
    dest = tmp_path / "fp"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    net = str(snapshot / f"ae-snapshot-{LAST}.safetensors")
    result = embed("--network", net, "--source", str(data), "--dest", str(dest), "--random-per-image")
    assert result.exit_code == 1 and "exists; pass --force" in result.output
    assert (dest / "keep.txt").read_text() == "mine"
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 20)
    result = embed("--network", str(bad), "--source", str(data), "--dest", str(tmp_path / "x"), "--random-per-image")
    assert result.exit_code == 1 and "error:" in result.output and not (tmp_path / "x").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    result = embed("--network", net, "--source", str(empty), "--dest", str(tmp_path / "y"), "--random-per-image")
    assert result.exit_code == 1 and "nothing written" in result.output and not (tmp_path / "y").exists()


@pytest.mark.parametrize("where, message", [
    ("source", "is the input --source"),
    ("parent of source", "contains the input --source"),
    ("folder with my files", "not a folder that embed wrote"),
    ("text file", "not a folder that embed wrote"),
])
def test_embed_force_never_replaces_what_it_did_not_write(tmp_path, snapshot, where, message):
    src = tmp_path / "parent" / "src"
    src.mkdir(parents=True)
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(src / "a.png")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("\\chapter{One}")
    (tmp_path / "notes.txt").write_text("my notes")
    dest = {"source": src, "parent of source": tmp_path / "parent", "folder with my files": tmp_path / "mine",
            "text file": tmp_path / "notes.txt"}[where]
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    result = embed("--network", str(snapshot / f"ae-snapshot-{LAST}.safetensors"), "--source", str(src),
                   "--dest", str(dest), "--random-per-image", "--force")
    assert result.exit_code == 1 and message in result.output, result.output
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_embed_force_replaces_its_own_output(tmp_path, snapshot, data):
    net, dest = str(snapshot / f"ae-snapshot-{LAST}.safetensors"), tmp_path / "fp"
    first = embed("--network", net, "--source", str(data), "--dest", str(dest), "--fingerprint", "10110001")
    assert first.exit_code == 0, first.output
    result = embed("--network", net, "--source", str(data), "--dest", str(dest), "--fingerprint", "01001110",
                   "--force")
    assert result.exit_code == 0, result.output
    assert {r["bits"] for r in csv.DictReader(open(dest / CSV_NAME))} == {"01001110"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fp"]          # the old folder is gone, nothing left


@pytest.mark.parametrize("args,message", [
    (["--resolution", "48"], "not a power of two"),
    (["--batch", "6", "--gpus", "4"], "not divisible"),
    (["--data", "nope.zip"], "does not exist"),
])
def test_train_bad_options(tmp_path, data, args, message):
    base = {"--data": str(data), "--outdir": str(tmp_path)}
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1]
    result = CliRunner().invoke(train_fingerprint_ae.cli, ["train", *[x for kv in base.items() for x in kv],
                                                           "--dry-run"])
    assert result.exit_code == 2 and message in result.output


def test_train_antithetic_writes_an_antithetic_encoder(tmp_path, data):
    res = run("train", "--data", str(data), "--outdir", str(tmp_path), "--total-kimg", "0.032", "--antithetic", *FAST)
    assert res.returncode == 0, res.stderr
    (snap,) = tmp_path.glob("*/ae-snapshot-*.safetensors")
    assert load_network(snap, names=["encoder"])["encoder"].antithetic is True
    both = run("train", "--data", str(data), "--outdir", str(tmp_path / "x"), "--antithetic", "--residual", *FAST)
    assert both.returncode == 2 and "choose one" in both.stderr and not (tmp_path / "x").exists()


def test_train_rejects_a_holdout_that_leaves_nothing(tmp_path, data):
    res = run("train", "--data", str(data), "--outdir", str(tmp_path), "--holdout", "64", *FAST)
    assert res.returncode == 1 and "must leave training images" in res.stderr


def gan(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "train_stylegan2_fp.py", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def test_stylegan2_decoder_from_the_autoencoder(tmp_path, snapshot, data):
    net = snapshot / f"ae-snapshot-{LAST}.safetensors"
    common = ["--data", str(data), "--preset", "tiny32", "--bits", "8", "--batch", "8", "--total-kimg", "0.016",
              "--tick", "0.016", "--workers", "0", "--metrics", "none", "--device", "cpu"]
    res = gan("--outdir", str(tmp_path / "frozen"), "--fp-decoder", str(net), "--freeze-decoder", *common)
    assert res.returncode == 0, res.stderr
    (snap,) = (tmp_path / "frozen").glob("*/network-snapshot-*.safetensors")
    f = load_network(snap, names=["F"])["F"]
    ae_dec = load_network(net, names=["decoder"])["decoder"]
    assert type(f).__name__ == "DecoderWithLatent"
    for k, v in ae_dec.state_dict().items():
        assert torch.equal(f.decoder.state_dict()[k], v), k      # frozen: still the autoencoder's
    res = gan("--outdir", str(tmp_path / "tuned"), "--fp-decoder", str(net), *common)
    assert res.returncode == 0, res.stderr
    (snap,) = (tmp_path / "tuned").glob("*/network-snapshot-*.safetensors")
    f = load_network(snap, names=["F"])["F"]
    assert not torch.equal(f.decoder.out.weight, ae_dec.out.weight)   # fine-tuned
    bad = gan("--outdir", str(tmp_path / "bad"), "--fp-decoder", str(net), *common[:5], "16", *common[6:])
    assert bad.returncode == 1 and "reads 8 bits" in bad.stderr
    alone = gan("--outdir", str(tmp_path / "bad"), "--freeze-decoder", *common)
    assert alone.returncode == 2 and "--freeze-decoder needs --fp-decoder" in alone.stderr


def test_embed_with_a_registry_records_the_drawn_fingerprint(tmp_path, snapshot, data):
    from attribution.registry import Registry

    net = snapshot / f"ae-snapshot-{LAST}.safetensors"
    reg_path, dest = tmp_path / "reg.sqlite", tmp_path / "fp"
    result = embed("--network", str(net), "--source", str(data), "--dest", str(dest), "--registry", str(reg_path),
                   "--user", "lab-a", "--device", "cpu")
    assert result.exit_code == 0, result.output
    with Registry(reg_path, readonly=True) as reg:
        (entry,) = reg.entries()
    rows = list(csv.DictReader(open(dest / CSV_NAME)))
    assert entry.user == "lab-a" and {r["bits"] for r in rows} == {entry.bits} and len(entry.bits) == 8
    assert Path(entry.file) == dest.resolve() and entry.source == str(net.resolve())
    # A failing second embed (its destination exists) records nothing.
    again = embed("--network", str(net), "--source", str(data), "--dest", str(dest), "--registry", str(reg_path),
                  "--user", "lab-b", "--device", "cpu")
    assert again.exit_code == 1 and "exists" in again.output
    with Registry(reg_path, readonly=True) as reg:
        assert [e.user for e in reg.entries()] == ["lab-a"]
    bad = embed("--network", str(net), "--source", str(data), "--dest", str(tmp_path / "x"), "--registry",
                str(reg_path), "--fingerprint", "10110001")
    assert bad.exit_code == 2 and "--registry draws the fingerprint itself" in bad.output
    # detect_attribute.py reads the autoencoder's decoder and attributes against this registry.
    import detect_attribute

    r = CliRunner().invoke(detect_attribute.cli, ["detect", "--network", str(net), "--registry", str(reg_path),
                                                  "--images", str(dest), "--out", str(tmp_path / "res.csv")])
    assert r.exit_code == 0, r.output
    res = list(csv.DictReader(open(tmp_path / "res.csv")))
    assert len(res) == 64 and {x["n_bits"] for x in res} == {"8"} and {x["nearest_user"] for x in res} == {"lab-a"}
