"""calc_metrics.py end to end on a tiny run (untrained tiny32 networks, the built-in data, a stand-in
Inception), a baked generator measured with its snapshot's F, bad inputs that write nothing, and the figure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import calc_metrics
import generate
from attribution.registry import Registry
from metrics import fid
from metrics.report import metric_series, plot_run, read_metric_file
from networks import build_networks, save_network
from tests.standin_inception import save_standin


def run_cli(*args):
    return CliRunner().invoke(calc_metrics.main, [str(a) for a in args] + ["--device", "cpu", "--no-progress"])


@pytest.fixture(scope="module")
def run(tmp_path_factory, data):
    """A run folder with a tiny snapshot (kimg 4, trained on `data`), a stand-in Inception, and a registry
    with two issued users (alice, bob)."""
    root = tmp_path_factory.mktemp("calc")
    run_dir = root / "00000-tiny"
    run_dir.mkdir()
    torch.manual_seed(0)
    nets = build_networks("tiny32", n_bits=32)
    options = {"data": str(data), "preset": "tiny32"}
    snap = save_network(run_dir / "network-snapshot-000004.safetensors", extra={"kimg": 4.0, "options": options},
                        G=nets["G"], G_ema=nets["G"], D=nets["D"], F=nets["F"])
    with Registry(root / "reg.sqlite") as reg:
        generate.issue_generators(snap, reg, ["alice", "bob"], root / "issued", log=lambda m: None)
    fid._DETECTORS.clear()
    return {"root": root, "run": run_dir, "snap": snap, "nets": nets, "inception": save_standin(root / "inc.pt"),
            "registry": root / "reg.sqlite", "cache": root / "cache"}


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_all_metrics_on_a_snapshot(run):
    r = run_cli("--metrics", "swd,consistency,bit_acc,fid30k_bitacc,uniqueness", "--network", run["snap"],
                "--inception", run["inception"], "--registry", run["registry"], "--cache-dir", run["cache"],
                "--num", 4, "--num-gen", 10, "--max-real", 12, "--per-generator", 1, "--batch", 10)
    assert r.exit_code == 0, r.output
    names = ["swd", "consistency", "bit_acc", "fid_watermark_accuracy_30k", "uniqueness"]
    for name in names:
        (row,) = lines(run["run"] / f"metric-{name}.jsonl")
        assert row["metric"] == name and row["snapshot"] == "network-snapshot-000004.safetensors"
        assert row["kimg"] == 4.0 and row["seed"] == 0
    fid_row = lines(run["run"] / "metric-fid_watermark_accuracy_30k.jsonl")[0]
    assert fid_row["num_gen"] == 10 and fid_row["num_real"] == 12 and 0 <= fid_row["bit_acc"] <= 1
    assert lines(run["run"] / "metric-uniqueness.jsonl")[0]["generators"] == 2
    assert lines(run["run"] / "metric-swd.jsonl")[0]["num"] == 4
    assert (run["run"] / "metrics.png").is_file()
    assert "fid_watermark_accuracy_30k" in r.output and "swd_mean" in r.output


def test_robustness_metrics_through_the_cli(run, tmp_path):
    out = tmp_path / "rob"
    out.mkdir()
    r = run_cli("--metrics", "robustness_image,robustness_model", "--network", run["snap"], "--registry",
                run["registry"], "--run-dir", out, "--attacks", "none,jpeg,noise,collusion,prune",
                "--strengths", "jpeg=80", "--strengths", "noise=0,0.1", "--strengths", "prune=0.5",
                "--strengths", "collusion=0,1", "--users", 2, "--images-per-user", 2)
    assert r.exit_code == 0, r.output
    image = lines(out / "metric-robustness_image.jsonl")[0]
    assert [(row["attack"], row["strength"]) for row in image["rows"]] == [("none", 0), ("jpeg", 80), ("noise", 0),
                                                                           ("noise", 0.1)]
    assert image["rows"][0]["bit_acc"] == image["rows"][2]["bit_acc"] and image["registry_size"] == 2
    model = lines(out / "metric-robustness_model.jsonl")[0]
    assert {row["attack"] for row in model["rows"]} == {"prune", "collusion"}
    bad = run_cli("--metrics", "robustness_image", "--network", run["snap"], "--strengths", "jpeg80")
    assert bad.exit_code == 1 and "ATTACK=S1,S2" in bad.output


def test_later_snapshots_add_lines_and_redraw_the_figure(run, data, tmp_path):
    nets = run["nets"]
    for kimg in (2, 6):
        snap = save_network(tmp_path / f"network-snapshot-{kimg:06d}.safetensors",
                            extra={"kimg": float(kimg), "options": {"data": str(data)}},
                            G=nets["G"], G_ema=nets["G"], D=nets["D"], F=nets["F"])
        r = run_cli("--metrics", "consistency", "--network", snap, "--num", 2)
        assert r.exit_code == 0, r.output
    rows = lines(tmp_path / "metric-consistency.jsonl")
    assert [x["kimg"] for x in rows] == [2.0, 6.0] and rows[1]["snapshot"] == "network-snapshot-000006.safetensors"
    assert (tmp_path / "metrics.png").is_file()


@pytest.mark.parametrize("name, content", [("metrics.png", b"my own notes"),
                                           ("metric-consistency.jsonl", b'{"my": "data"}\n')])
def test_run_dir_files_that_are_not_ours_are_never_touched(run, data, tmp_path, name, content):
    nets = run["nets"]
    snap = save_network(tmp_path / "network-snapshot-000002.safetensors",
                        extra={"kimg": 2.0, "options": {"data": str(data)}},
                        G=nets["G"], G_ema=nets["G"], D=nets["D"], F=nets["F"])
    (tmp_path / name).write_bytes(content)
    r = run_cli("--metrics", "consistency", "--network", snap, "--num", 2)
    assert r.exit_code == 1 and f"{name} exists and is a file that is not a" in r.output, r.output
    assert (tmp_path / name).read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([snap.name, name])


def test_a_baked_generator_with_its_snapshots_decoder(run):
    baked = run["root"] / "issued" / "alice.safetensors"
    r = run_cli("--metrics", "bit_acc,swd", "--network", baked, "--registry", run["registry"], "--num", 4)
    assert r.exit_code == 0, r.output
    (row,) = lines(run["root"] / "issued" / "metric-bit_acc.jsonl")
    assert row["snapshot"] == "alice.safetensors" and row["kimg"] == 4.0 and row["n_bits"] == 32
    # Without the registry its fingerprint is unknown; a baked generator has no c to vary.
    for args, message in ((["--metrics", "bit_acc"], "registry"),
                          (["--metrics", "consistency"], "fingerprint input")):
        r = run_cli(*args, "--network", baked)
        assert r.exit_code == 1 and message in r.output


@pytest.mark.parametrize("args, message", [
    (["--metrics", "nope"], "unknown metric 'nope'"),
    (["--metrics", "swd,fid50k_full"], "needs the Inception"),
    (["--metrics", "uniqueness"], "needs the registry"),
    (["--metrics", "swd", "--data", "missing.zip"], "no such file"),
    (["--metrics", "fid50k_full", "--inception", "https://example.org/inception.pt"], "pin the URL"),
    (["--metrics", "fid50k_full", "--inception", "missing.pt"], "no such file"),
    (["--metrics", "swd", "--registry", "missing.sqlite"], "no such registry"),
])
def test_bad_inputs_write_nothing(run, args, message):
    before = sorted(p.name for p in run["run"].iterdir())
    r = run_cli(*args, "--network", run["snap"])
    assert r.exit_code == 1 and message in r.output, r.output
    assert sorted(p.name for p in run["run"].iterdir()) == before


def test_more_bad_inputs_write_nothing(run, tmp_path):
    before = sorted(p.name for p in run["run"].iterdir())
    r = run_cli("--metrics", "swd", "--network", tmp_path / "missing.safetensors")
    assert r.exit_code == 1 and "no such file" in r.output
    wrong = f"{run['inception']}#sha256={'0' * 64}"
    r = run_cli("--metrics", "fid50k_full", "--network", run["snap"], "--inception", wrong, "--cache-dir", tmp_path)
    assert r.exit_code == 1 and "not the pinned" in r.output
    # A snapshot whose training data is gone, and a decoder file that holds no generator.
    nets = run["nets"]
    lost = save_network(tmp_path / "lost.safetensors", extra={"options": {"data": str(tmp_path / "gone.zip")}},
                        G=nets["G"], G_ema=nets["G"], D=nets["D"], F=nets["F"])
    r = run_cli("--metrics", "swd", "--network", lost)
    assert r.exit_code == 1 and "gone.zip" in r.output
    dec = save_network(tmp_path / "dec.safetensors", F=nets["F"])
    r = run_cli("--metrics", "swd", "--network", dec)
    assert r.exit_code == 1 and "holds no generator" in r.output
    assert sorted(p.name for p in run["run"].iterdir()) == before
    assert not list(tmp_path.glob("metric-*"))


def test_figure_from_metric_files(tmp_path):
    rows = [{"metric": "m", "kimg": 8, "a": 2.0, "b": float("inf"), "num": 5, "note": "x"},
            {"metric": "m", "kimg": 4, "a": 1.0, "b": 3.0, "num": 5}]
    (tmp_path / "metric-m.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n")
    series = metric_series(read_metric_file(tmp_path / "metric-m.jsonl"))
    assert series == {"a": ([4.0, 8.0], [1.0, 2.0]), "b": ([4.0], [3.0])}
    assert plot_run(tmp_path) == tmp_path / "metrics.png" and (tmp_path / "metrics.png").stat().st_size > 1000
    assert plot_run(tmp_path / "empty_run") is None
