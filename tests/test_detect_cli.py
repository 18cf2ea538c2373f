"""detect_attribute.py end to end on tiny networks: detect (files, folders, zips; CSV / JSON; truth metrics),
calibrate, decoders from snapshots and baked generators, and bad inputs."""

from __future__ import annotations

import csv
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import detect_attribute
import generate
from attribution.detection import binomial_tail
from attribution.registry import Registry
from networks import build_networks, save_network
from networks.checkpoint import load_decoder


def detect(*args):
    return CliRunner().invoke(detect_attribute.cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny snapshot, 6 generated images (folder), 3 of them in a zip, a registry whose user 'xavier' holds
    exactly the bits the decoder reads from seed0000.png, plus 4 random users, and one baked generator."""
    root = tmp_path_factory.mktemp("world")
    torch.manual_seed(0)
    nets = build_networks("tiny32", n_bits=32)
    snap = save_network(root / "snap.safetensors", G=nets["G"], G_ema=nets["G"], D=nets["D"], F=nets["F"])
    runner = CliRunner()
    assert runner.invoke(generate.cli, ["images", "--network", str(snap), "--seeds", "0-5", "--outdir",
                                        str(root / "imgs")]).exit_code == 0
    with zipfile.ZipFile(root / "some.zip", "w") as zf:
        for i in (1, 2, 3):
            zf.write(root / "imgs" / f"seed{i:04d}.png", f"sub/seed{i:04d}.png")
    dec = load_decoder(snap)
    x = torch.from_numpy(np.array(Image.open(root / "imgs" / "seed0000.png"))).permute(2, 0, 1)[None].float()
    bits = (dec.logits(x / 127.5 - 1)[0] > 0).int().tolist()
    rng = np.random.default_rng(0)
    rows = ["user,bits", "xavier," + "".join(map(str, bits))]
    rows += [f"r{i}," + "".join(map(str, rng.integers(0, 2, 32))) for i in range(4)]
    (root / "reg.csv").write_text("\n".join(rows) + "\n")
    Registry(root / "reg.sqlite").import_csv(root / "reg.csv", check_distance=False)
    assert runner.invoke(generate.cli, ["issue", "--network", str(snap), "--registry", str(root / "issued.sqlite"),
                                        "--users", "bob", "--outdir", str(root / "issued")]).exit_code == 0
    return root


def read_rows(path: Path) -> list[dict]:
    return list(csv.DictReader(open(path)))


def test_detect_attributes_and_writes_csv_json(world, tmp_path):
    out, js = tmp_path / "res.csv", tmp_path / "res.json"
    r = detect("detect", "--network", world / "snap.safetensors", "--registry", world / "reg.sqlite",
               "--images", world / "imgs", world / "some.zip", world / "imgs" / "seed0004.png",
               "--out", out, "--json", js)
    assert r.exit_code == 0, r.output
    rows = read_rows(out)
    assert list(rows[0])[:6] == ["path", "decision", "user", "matched_bits", "n_bits", "p_value"]
    assert len(rows) == 6 + 3 + 1
    assert [row["path"] for row in rows[6:]] == [f"{world / 'some.zip'}:sub/seed0001.png",
                                                f"{world / 'some.zip'}:sub/seed0002.png",
                                                f"{world / 'some.zip'}:sub/seed0003.png",
                                                str(world / "imgs" / "seed0004.png")]
    first = rows[0]
    assert first["path"] == (world / "imgs" / "seed0000.png").as_posix()
    assert first["decision"] == "attributed" and first["user"] == "xavier" and first["matched_bits"] == "32"
    assert float(first["p_value"]) == pytest.approx(5 * binomial_tail(32, 32), rel=1e-3)
    for row in rows:
        assert row["decision"] in ("attributed", "fingerprinted-unknown", "not-fingerprinted")
        assert (row["user"] != "") == (row["decision"] == "attributed")
        assert 0 <= float(row["p_value"]) <= 1 and row["n_bits"] == "32" and len(row["bits"]) == 32
    # The zip's copies decode like the files.
    assert [r_["bits"] for r_ in rows[6:9]] == [r_["bits"] for r_ in rows[1:4]]
    data = json.loads(js.read_text())
    assert data["registry_size"] == 5 and data["summary"]["attributed"] >= 1 and len(data["rows"]) == 10
    assert "attributed" in r.output and "fair-coin tests" in r.output


def test_truth_metrics(world, tmp_path):
    truth = tmp_path / "truth.csv"
    imgs = world / "imgs"
    truth.write_text("path,label\n" + f"{imgs / 'seed0000.png'},xavier\n" + f"{imgs / 'seed0001.png'},real\n"
                     + f"{imgs / 'seed0002.png'},unknown07\n")
    r = detect("detect", "--network", world / "snap.safetensors", "--registry", world / "reg.sqlite",
               "--images", imgs, "--out", tmp_path / "res.csv", "--json", tmp_path / "res.json", "--truth", truth)
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "res.json").read_text())["metrics"]
    assert m["images"] == 3 and m["real"] == 1 and m["registered_user_images"] == 1
    assert m["unregistered_user_images"] == 1 and m["attribution_accuracy"] == 1.0
    assert "attribution_accuracy" in r.output and "tpr_at_fpr_1e-06" in r.output


def test_baked_generator_finds_its_snapshot(world, tmp_path):
    baked = world / "issued" / "bob.safetensors"
    a = detect("detect", "--network", baked, "--registry", world / "reg.sqlite", "--images", world / "imgs",
               "--out", tmp_path / "a.csv")
    b = detect("detect", "--network", world / "snap.safetensors", "--registry", world / "reg.sqlite",
               "--images", world / "imgs", "--out", tmp_path / "b.csv")
    assert a.exit_code == 0 and b.exit_code == 0, a.output
    assert read_rows(tmp_path / "a.csv") == read_rows(tmp_path / "b.csv")
    from networks.checkpoint import read_header
    extra = read_header(baked)["extra"]
    assert extra["source"] == str((world / "snap.safetensors").resolve()) and extra["issued_to"] == "bob"
    assert "fingerprint" not in json.dumps(extra)            # the file does not tell its holder the bits
    # Its snapshot replaced by another file, or gone: clear errors.
    snap = tmp_path / "snap.safetensors"
    shutil.copy(world / "snap.safetensors", snap)
    assert CliRunner().invoke(generate.cli, ["issue", "--network", str(snap), "--registry", str(tmp_path / "r.sqlite"),
                                             "--users", "eve", "--outdir", str(tmp_path / "g")]).exit_code == 0
    args = ["detect", "--network", tmp_path / "g" / "eve.safetensors", "--registry", tmp_path / "r.sqlite",
            "--images", world / "imgs", "--out", tmp_path / "c.csv"]
    assert detect(*args).exit_code == 0
    save_network(snap, F=build_networks("tiny32", n_bits=32, which=("F",))["F"])
    r = detect(*args)
    assert r.exit_code == 1 and "is not the snapshot" in r.output
    snap.unlink()
    r = detect(*args)
    assert r.exit_code == 1 and "not there any more" in r.output


def test_calibrate_then_detect_uses_it(world, tmp_path):
    snap = tmp_path / "snap.safetensors"
    shutil.copy(world / "snap.safetensors", snap)
    real = tmp_path / "real"
    real.mkdir()
    rng = np.random.default_rng(1)
    for i in range(60):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(real / f"r{i:03d}.png")
    r = detect("calibrate", "--network", snap, "--real", real)
    assert r.exit_code == 0, r.output
    cal_file = Path(str(snap) + ".calibration.json")
    data = json.loads(cal_file.read_text())
    assert data["num_images"] == 60 and len(data["bit_one_rate"]) == 32 and "empirical_fpr" in data["report"]
    r = detect("detect", "--network", snap, "--registry", world / "reg.sqlite", "--images", world / "imgs",
               "--out", tmp_path / "res.csv", "--fpr", "0.1")
    assert r.exit_code == 0 and "(calibrated)" in r.output
    rows = read_rows(tmp_path / "res.csv")
    assert all(row["p_unknown"] != "" for row in rows)
    # A calibration made for another decoder is refused.
    other = build_networks("tiny32", n_bits=32, which=("F",))["F"]
    other_path = save_network(tmp_path / "other.safetensors", F=other)
    r = detect("detect", "--network", other_path, "--registry", world / "reg.sqlite", "--images", world / "imgs",
               "--out", tmp_path / "o.csv", "--calibration", cal_file)
    assert r.exit_code == 1 and "another decoder" in r.output and not (tmp_path / "o.csv").exists()
    # Too few images to calibrate.
    r = detect("calibrate", "--network", snap, "--real", real, "--max-images", "10", "--out", tmp_path / "c.json")
    assert r.exit_code == 1 and "at least 50" in r.output


def test_sizes_and_unreadable_images(world, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(world / "imgs" / "seed0000.png", folder / "a.png")
    Image.new("RGB", (64, 48), (10, 20, 30)).save(folder / "big.png")
    (folder / "broken.png").write_bytes(b"not an image")
    base = ["detect", "--network", world / "snap.safetensors", "--registry", world / "reg.sqlite", "--images",
            folder, "--out", tmp_path / "res.csv"]
    r = detect(*base)
    assert r.exit_code == 1 and "big.png: is 64x48; the decoder reads 32x32" in r.output
    assert not (tmp_path / "res.csv").exists()
    (folder / "big.png").unlink()
    r = detect(*base)
    assert r.exit_code == 1 and "broken.png: cannot decode" in r.output
    r = detect(*base, "--skip-unreadable")
    assert r.exit_code == 0 and "skipped" in r.output and len(read_rows(tmp_path / "res.csv")) == 1
    Image.new("RGB", (64, 48), (10, 20, 30)).save(folder / "big.png")
    r = detect(*base, "--skip-unreadable", "--resize")
    assert r.exit_code == 0 and len(read_rows(tmp_path / "res.csv")) == 2


def test_bad_registries_decoders_and_truth(world, tmp_path):
    imgs = world / "imgs"
    snap = world / "snap.safetensors"

    def run(*extra, network=snap, registry=world / "reg.sqlite"):
        return detect("detect", "--network", network, "--registry", registry, "--images", imgs,
                      "--out", tmp_path / "res.csv", *extra)
    r = run(registry=tmp_path / "missing.sqlite")
    assert r.exit_code == 1 and "no such registry" in r.output and not (tmp_path / "missing.sqlite").exists()
    Registry(tmp_path / "empty.sqlite").close()
    r = run(registry=tmp_path / "empty.sqlite")
    assert r.exit_code == 1 and "registry is empty" in r.output
    small = build_networks("tiny32", n_bits=16, which=("F",))["F"]
    r = run(network=save_network(tmp_path / "f16.safetensors", F=small))
    assert r.exit_code == 1 and "wrong decoder or wrong registry" in r.output
    gen_only = save_network(tmp_path / "g.safetensors", G=build_networks("tiny32", n_bits=32, which=("G",))["G"])
    r = run(network=gen_only)
    assert r.exit_code == 1 and "holds no fingerprint decoder" in r.output
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    assert run(network=tmp_path / "junk.safetensors").exit_code == 1
    for text, message in [("file,who\na,b\n", "needs the columns path,label"),
                          ("path,label\n" + f"{imgs / 'seed0000.png'},\n", "empty path or label"),
                          ("path,label\nnowhere.png,real\n", "none of its paths"),
                          ("path,label\n", "no rows")]:
        truth = tmp_path / "truth.csv"
        truth.write_text(text)
        r = run("--truth", truth)
        assert r.exit_code == 1 and message in r.output, (text, r.output)
    assert not (tmp_path / "res.csv").exists()


def test_detection_grid_and_table3_report(world, tmp_path):
    """The figure of the quickstart and the report of scripts/table3.sh, on this tiny world."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    # A table3-like folder: generated/<user>/..., a held-out zip of real images, registries of 1 and 10 users.
    gen = tmp_path / "generated"
    for user in ("user000001", "user000002", "unknown00"):
        shutil.copytree(world / "imgs", gen / user)
    with zipfile.ZipFile(tmp_path / "real_heldout.zip", "w") as zf:
        zf.write(world / "imgs" / "seed0005.png", "00000/img00000000.png")
    reg = Registry(tmp_path / "reg.sqlite")
    rng = np.random.default_rng(0)
    reg.add_many(["user000001", "user000002"], np.packbits(rng.integers(0, 2, (2, 32)).astype(bool), axis=1),
                 n_bits=32)
    reg.close()
    for n, users in ((1, ["user000001"]), (10, ["user000001", "user000002"]), (100, ["user000001", "user000002"])):
        (tmp_path / f"registry_{n}.csv").write_text("user\n" + "\n".join(users) + "\n")
        r = detect("detect", "--network", world / "snap.safetensors", "--registry", tmp_path / "reg.sqlite",
                   "--images", gen, tmp_path / "real_heldout.zip", "--out", tmp_path / f"results_{n}.csv",
                   "--json", tmp_path / f"results_{n}.json")
        assert r.exit_code == 0, r.output
    res = subprocess.run([sys.executable, "scripts/table3_report.py", "--out", str(tmp_path)], cwd=repo,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    table = json.loads((tmp_path / "table3.json").read_text())
    assert len(table) == 3 * 2 * 2
    closed = next(t for t in table if t["generators"] == 1 and t["world"] == "closed" and t["fpr"] == 1e-6)
    opened = next(t for t in table if t["generators"] == 1 and t["world"] == "open" and t["fpr"] == 1e-6)
    assert closed["generated"] == 6 and closed["real"] == 1 and opened["generated"] == 12
    # Random fingerprints nobody's images carry: nothing is attributed; detection is right on the real image only.
    assert closed["attribution_accuracy"] == 0.0 and closed["detection_accuracy"] == pytest.approx(1 / 7)
    assert opened["attribution_accuracy"] == 0.5 and "| 1 | closed | 1e-06 |" in (tmp_path / "table3.md").read_text()

    truth = tmp_path / "truth.csv"
    truth.write_text("path,label\n" + "".join(f"{(gen / 'user000001' / f'seed{i:04d}.png').as_posix()},user000001\n"
                                              for i in range(6)))
    res = subprocess.run([sys.executable, "fig/detection_grid.py", "--results", str(tmp_path / "results_1.csv"),
                          "--truth", str(truth), "--out", str(tmp_path / "grid.png")], cwd=repo, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert Image.open(tmp_path / "grid.png").size[0] > 100


def test_truth_paths_match_as_shown_or_resolved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.png").write_bytes(b"")
    truth = {str(tmp_path / "d" / "x.png"): "alice", "arch.zip:m/1.png": "real",
             str(tmp_path / "other.zip") + ":m/2.png": "bob"}
    got = detect_attribute.match_truth(["d/../d/x.png", "arch.zip:m/1.png", "other.zip:m/2.png", "d/y.png"], truth)
    assert got == ["alice", "real", "bob", None]


def test_truth_csv_bom_extra_fields_and_unknown_labels(world, tmp_path):
    imgs = world / "imgs"
    truth = tmp_path / "truth.csv"

    def run(out="res.csv"):
        return detect("detect", "--network", world / "snap.safetensors", "--registry", world / "reg.sqlite",
                      "--images", imgs, "--out", tmp_path / out, "--json", tmp_path / "res.json", "--truth", truth)
    # A byte-order mark (as spreadsheets write it) is fine; 'unknown' labels an unregistered generator's image.
    truth.write_bytes(("path,label\n" + f"{imgs / 'seed0000.png'},xavier\n" + f"{imgs / 'seed0001.png'},real\n"
                       + f"{imgs / 'seed0002.png'},unknown\n").encode("utf-8-sig"))
    r = run()
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "res.json").read_text())["metrics"]
    assert m["images"] == 3 and m["real"] == 1 and m["registered_user_images"] == 1
    assert m["unregistered_user_images"] == 1
    # A row with more fields than the header (an unquoted comma in a path), named by its line.
    truth.write_text("path,label\n" + f"{imgs / 'seed0000.png'},xavier\n" + f"{imgs / 'seed0001.png'},real,x\n")
    r = run("bad.csv")
    assert r.exit_code == 1 and "line 3: 1 field(s) more than the header's" in r.output, r.output
    # Labels that are neither real, registered nor unknown*: an error naming them (not an open-world image).
    truth.write_text("path,label\n" + f"{imgs / 'seed0000.png'},xavier\n" + f"{imgs / 'seed0001.png'},Real\n"
                     + f"{imgs / 'seed0002.png'},xavir\n" + f"{imgs / 'seed0003.png'},Real\n")
    r = run("bad.csv")
    assert r.exit_code == 1 and "2 label(s) are neither 'real'" in r.output, r.output
    assert "'Real' (did you mean 'real'?) (line 3, 2 row(s))" in r.output and "'xavir' (line 4, 1 row(s))" in r.output
    assert not (tmp_path / "bad.csv").exists()


def test_decoder_must_be_the_registrys_issuing_snapshot(world, tmp_path):
    """issued.sqlite records bob's issuing snapshot (snap.safetensors): another 32-bit decoder is refused."""
    other = save_network(tmp_path / "other.safetensors", F=build_networks("tiny32", n_bits=32, which=("F",))["F"])

    def run(network, *extra):
        return detect("detect", "--network", network, "--registry", world / "issued.sqlite", "--images",
                      world / "imgs", "--out", tmp_path / "res.csv", "--json", tmp_path / "res.json", *extra)
    r = run(other)
    assert r.exit_code == 1 and not (tmp_path / "res.csv").exists()
    snap_sha = Registry(world / "issued.sqlite", readonly=True).entry("bob").source_sha256
    assert str(other) in r.output and str((world / "snap.safetensors").resolve()) in r.output, r.output
    assert snap_sha[:16] in r.output and load_decoder(other).sha256[:16] in r.output
    assert "wrong decoder or wrong registry" in r.output and "--any-decoder" in r.output
    r = run(other, "--any-decoder")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "res.json").read_text())["decoder_check"] == "not checked (--any-decoder)"
    # The issuing snapshot, a byte-identical copy of it, and a generator baked from it all pass.
    copy = tmp_path / "copy.safetensors"
    shutil.copy(world / "snap.safetensors", copy)
    for network in (world / "snap.safetensors", copy, world / "issued" / "bob.safetensors"):
        r = run(network)
        assert r.exit_code == 0, r.output
        data = json.loads((tmp_path / "res.json").read_text())
        assert data["decoder_check"] == "matches the registry's issuing snapshot" and data["decoder_sha256"] == snap_sha
    assert "detect" in detect("detect", "--help").output and "--any-decoder" in detect("detect", "--help").output


def test_tpr_table_does_not_depend_on_fpr(world, tmp_path):
    """The TPR / empirical FPR at 1e-6, 1e-3, 1e-2 re-decide every image at that rate: runs at --fpr 1e-6 and at
    --fpr 0.05 (where the fingerprint-likeness test takes part in the run's own decisions) report the same."""
    snap = tmp_path / "snap.safetensors"
    shutil.copy(world / "snap.safetensors", snap)
    rng = np.random.default_rng(2)
    real = tmp_path / "real"
    real.mkdir()
    for i in range(420):   # 210 held out: the unknown test can decide at 1e-2 (1/211 <= 1e-2 / 2), not at 1e-3
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(real / f"r{i:03d}.png")
    test_real = tmp_path / "test_real"
    test_real.mkdir()
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(test_real / f"t{i}.png")
    assert detect("calibrate", "--network", snap, "--real", real).exit_code == 0
    truth = tmp_path / "truth.csv"
    truth.write_text("path,label\n" + f"{world / 'imgs' / 'seed0000.png'},xavier\n"
                     + "".join(f"{world / 'imgs' / f'seed{i:04d}.png'},unknown\n" for i in range(1, 6))
                     + "".join(f"{test_real / f't{i}.png'},real\n" for i in range(6)))
    tables, results = [], []
    for fpr in ("1e-6", "0.05"):
        r = detect("detect", "--network", snap, "--registry", world / "reg.sqlite", "--images", world / "imgs",
                   test_real, "--out", tmp_path / "res.csv", "--json", tmp_path / "res.json", "--fpr", fpr,
                   "--truth", truth)
        assert r.exit_code == 0, r.output
        data = json.loads((tmp_path / "res.json").read_text())
        results.append(data)
        tables.append({k: v for k, v in data["metrics"].items() if k.startswith(("tpr_at", "empirical_fpr_at"))})
        assert len(tables[-1]) == 6
    assert [d["unknown_test_used"] for d in results] == [False, True]
    assert tables[0] == tables[1]
    # Thresholding the first run's own p-values (without the unknown test) would have given another TPR at 1e-2.
    p_run = np.array([r_["p_value"] for r_ in results[0]["rows"]])
    assert (p_run[:6] <= 1e-2).mean() != tables[0]["tpr_at_fpr_0.01"]
    # What each row means: the share of generated (real) images decided fingerprinted at that rate.
    from attribution.detection import REPORT_FPRS, decisions_at
    rows = results[0]["rows"]
    p_attr = np.array([r_["p_attribution"] for r_ in rows])
    p_unk = np.array([r_["p_unknown"] for r_ in rows])
    generated = np.array(["seed" in r_["path"] for r_ in rows])
    for rate in REPORT_FPRS:
        _, _, dec = decisions_at(rate, p_attr, p_unk, results[0]["unknown_test_min_p"])
        hit = np.array([x != "not-fingerprinted" for x in dec])
        assert tables[0][f"tpr_at_fpr_{rate:g}"] == pytest.approx(hit[generated].mean())
        assert tables[0][f"empirical_fpr_at_{rate:g}"] == pytest.approx(hit[~generated].mean())


def test_registry_defaults_to_registry_sqlite(world, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["detect", "--network", world / "snap.safetensors", "--images", world / "imgs", "--out", tmp_path / "r.csv"]
    r = detect(*args)
    assert r.exit_code == 1 and "registry.sqlite: no such registry (the default --registry)" in r.output, r.output
    assert not (tmp_path / "registry.sqlite").exists() and not (tmp_path / "r.csv").exists()
    with Registry(world / "issued.sqlite", readonly=True) as reg:
        reg.export_csv(tmp_path / "issued.csv")
    with Registry(tmp_path / "registry.sqlite") as reg:
        reg.import_csv(tmp_path / "issued.csv")
    r = detect(*args)
    assert r.exit_code == 0, r.output
    assert "registry of 1" in r.output and len(read_rows(tmp_path / "r.csv")) == 6


def snapshot_of_files(*paths: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for root in paths for p in ([root] if root.is_file() else sorted(root.rglob("*")))
            if p.is_file()}


@pytest.mark.parametrize("args, message", [
    (["detect", "--registry", "{w}/reg.sqlite", "--out", "{w}/reg.sqlite"], "is the input --registry"),
    (["detect", "--registry", "{w}/reg.sqlite", "--out", "{w}/snap.safetensors", "--any-decoder"],
     "is the input --network"),
    (["detect", "--registry", "{w}/reg.sqlite", "--out", "{t}/x", "--json", "{t}/x"], "the same file"),
    (["detect", "--registry", "{w}/reg.sqlite", "--out", "{w}/imgs/seed0000.png"], "inside the input folder"),
    (["detect", "--registry", "{w}/reg.sqlite", "--out", "{w}/some.zip"], "is the input --images"),
    (["detect", "--registry", "{w}/reg.sqlite", "--out", "{t}/notes.txt"], "not a results CSV"),
    (["detect", "--registry", "{w}/reg.sqlite", "--out", "{t}/r.csv", "--json", "{t}/notes.txt"],
     "not a results JSON"),
    (["detect", "--registry", "{w}/reg.sqlite", "--out", "{t}/r.csv", "--fpr", "nan"], "not a finite number"),
    (["calibrate", "--out", "{w}/snap.safetensors"], "is the input --network"),
    (["calibrate", "--out", "{t}/notes.txt"], "not a calibration"),
])
def test_outputs_never_overwrite_inputs_or_foreign_files(world, tmp_path, args, message):
    (tmp_path / "notes.txt").write_text("my notes\n")
    before = snapshot_of_files(world, tmp_path)
    flags = ["--images", world / "imgs", world / "some.zip"] if args[0] == "detect" else ["--real", world / "imgs"]
    r = detect(args[0], "--network", world / "snap.safetensors", *flags,
               *[a.format(w=world, t=tmp_path) for a in args[1:]])
    assert r.exit_code in (1, 2) and message in r.output, r.output
    assert r.exit_code == 2 or (r.output.count("\n") == 1 and r.output.startswith("error: "))
    assert snapshot_of_files(world, tmp_path) == before
    assert not (tmp_path / "r.csv").exists()


def test_detect_replaces_its_own_results_and_leaves_the_registry_folder_alone(world, tmp_path):
    reg_dir = tmp_path / "regdir"
    reg_dir.mkdir()
    shutil.copy(world / "reg.sqlite", reg_dir / "reg.sqlite")
    args = ["detect", "--network", world / "snap.safetensors", "--registry", reg_dir / "reg.sqlite", "--images",
            world / "imgs", "--out", tmp_path / "r.csv", "--json", tmp_path / "r.json"]
    assert detect(*args).exit_code == 0
    first = (tmp_path / "r.csv").read_bytes()
    r = detect(*args)                                   # a rerun replaces the files detect wrote
    assert r.exit_code == 0, r.output
    assert (tmp_path / "r.csv").read_bytes() == first
    assert sorted(p.name for p in reg_dir.iterdir()) == ["reg.sqlite"]   # read only: no -wal / -shm left
