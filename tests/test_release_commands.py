"""The two releases' commands run unchanged (README, "The releases' commands"): each release form is run on tiny
data made here and does what this port's form does (the same files, or the same resolved options), naming this
port's form once on stderr; the forms this port refuses end with one error line and write nothing."""

from __future__ import annotations

import csv
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import calc_metrics
import dataset_tool
import detect_attribute
import detect_fingerprints
import embed_fingerprints
import generate
import legacy
import run_generator
import run_metrics
import run_training
import train
import train_fingerprint_ae
import train_stylegan2_fp
from data.fingerprint_dataset import read_release
from dnnlib import release_cli
from networks import build_networks, save_network
from tests.dataset_fixtures import encode, write_lmdb
from tests.shared_paths import ORACLE
from tests.standin_inception import save_standin
from tests.test_art_import import random_release, write_pair

PKL = ORACLE / "network-snapshot.pkl"


def modern(cli, *args):
    """This port's command, in-process: (exit code, stdout, stderr)."""
    r = CliRunner().invoke(cli, [str(a) for a in args])
    return r.exit_code, r.stdout, r.stderr


def release(main, capsys, *args):
    """A release entry point (run_training.main, ...), in-process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return e.value.code or 0, out.out, out.err


def notes(err: str) -> list[str]:
    found = [line for line in err.splitlines() if line.startswith("note: release form ")]
    assert len(found) == len(set(found)), f"a note printed twice:\n{err}"
    return found


def noted(err: str, release_text: str, modern_text: str) -> None:
    """``release_text`` is noted exactly once, with ``modern_text`` in this port's form (a whole command line:
    ``release_text`` is its start)."""
    head = f"note: release form {release_text}" + ("" if release_text.startswith("python ") else "; ")
    lines = [n for n in notes(err) if n.startswith(head)]
    assert len(lines) == 1 and modern_text in lines[0].split("; this port's form: ", 1)[1], err


def one_error_line(code: int, out: str, err: str, *fragments: str) -> None:
    errors = [line for line in (out + err).splitlines() if line.startswith("error:")]
    assert code != 0 and len(errors) == 1, out + err
    assert all(f in errors[0] for f in fragments), errors[0]


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist() if n != "dataset.json"}


def files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Six 178x218 'aligned CelebA' images, an LMDB of five images, a tiny32 snapshot, a release-shaped
    autoencoder pair (8 bits, 32x32), and eight toy faces (small.zip)."""
    root = tmp_path_factory.mktemp("release")
    rng = np.random.default_rng(0)
    (root / "celeba").mkdir()
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(root / "celeba" / f"{i:06d}.png")
    pics = [Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)) for _ in range(5)]
    write_lmdb(root / "lmdb", {f"{i:04d}".encode(): encode(p) for i, p in enumerate(pics)})
    torch.manual_seed(0)
    nets = build_networks("tiny32", n_bits=32)
    save_network(root / "snap.safetensors", G=nets["G"], G_ema=nets["G"], D=nets["D"], F=nets["F"])
    write_pair(root / "art", *random_release(8, 32))
    assert modern(dataset_tool.cli, "create_builtin", "--dest", root / "small.zip", "--max-images", 8)[0] == 0
    return root


# --- dataset_tool.py: positional OUT IN, --max_images / --num_images, --shuffle 0/1, --skip, all images ---------

def test_create_celeba_positional_out_in(world, tmp_path):
    code, _, err = modern(dataset_tool.cli, "create_celeba", tmp_path / "rel.zip", world / "celeba", "--num_images", 4)
    assert code == 0, err
    noted(err, f"{tmp_path / 'rel.zip'} {world / 'celeba'}", f"--dest {tmp_path / 'rel.zip'} --source")
    noted(err, "--num_images 4", "--max-images 4")
    code, _, err = modern(dataset_tool.cli, "create_celeba", "--dest", tmp_path / "ours.zip", "--source",
                          world / "celeba", "--max-images", 4)
    assert code == 0 and not notes(err)
    assert members(tmp_path / "rel.zip") == members(tmp_path / "ours.zip") and len(members(tmp_path / "ours.zip")) == 4
    # Every image ('all'), and the images after the first 4 (a held-out split).
    assert modern(dataset_tool.cli, "create_celeba", "--source", world / "celeba", "--dest", tmp_path / "all.zip",
                  "--max-images", "all")[0] == 0
    assert modern(dataset_tool.cli, "create_celeba", "--source", world / "celeba", "--dest", tmp_path / "held.zip",
                  "--skip", 4, "--max_images", "all")[0] == 0
    everything = list(members(tmp_path / "all.zip").values())
    assert len(everything) == 6 and list(members(tmp_path / "held.zip").values()) == everything[4:]


def test_create_lsun_positional_and_skip(world, tmp_path):
    code, _, err = modern(dataset_tool.cli, "create_lsun", tmp_path / "rel", world / "lmdb", "--resolution=16",
                          "--max_images=3")
    assert code == 0, err
    noted(err, "--max_images=3", "--max-images 3")
    assert modern(dataset_tool.cli, "create_lsun", "--source", world / "lmdb", "--dest", tmp_path / "ours",
                  "--resolution", 16, "--max-images", 3)[0] == 0
    assert files(tmp_path / "rel") == files(tmp_path / "ours")
    # --skip: the records after the first N, in key order.
    assert modern(dataset_tool.cli, "create_lsun", "--source", world / "lmdb", "--dest", tmp_path / "all.zip",
                  "--resolution", 16)[0] == 0
    assert modern(dataset_tool.cli, "create_lsun", "--source", world / "lmdb", "--dest", tmp_path / "held.zip",
                  "--resolution", 16, "--skip", 3)[0] == 0
    assert list(members(tmp_path / "held.zip").values()) == list(members(tmp_path / "all.zip").values())[3:]
    # The release's default resolution (256) when the positional form leaves it out.
    code, _, err = modern(dataset_tool.cli, "create_lsun", tmp_path / "r256.zip", world / "lmdb", "--max_images", 1)
    assert code == 0, err
    noted(err, "(no --resolution)", "--resolution 256")
    with zipfile.ZipFile(tmp_path / "r256.zip") as zf:
        assert json.loads(zf.read("dataset.json"))["resolution"] == 256


def test_create_from_images_positional_shuffle_and_skip(world, tmp_path):
    src = tmp_path / "src"
    assert modern(dataset_tool.cli, "create_builtin", "--dest", src, "--max-images", 6, "--resolution", 16)[0] == 0
    code, _, err = modern(dataset_tool.cli, "create_from_images", tmp_path / "rel.zip", src, "--shuffle", "0")
    assert code == 0, err
    noted(err, "--shuffle 0", "(nothing: sorted names")
    noted(err, "(no --resolution)", "--resolution auto")
    assert modern(dataset_tool.cli, "create_from_images", "--source", src, "--dest", tmp_path / "ours.zip",
                  "--resolution", 16)[0] == 0
    assert members(tmp_path / "rel.zip") == members(tmp_path / "ours.zip")
    code, _, err = modern(dataset_tool.cli, "create_from_images", tmp_path / "rel1.zip", src, "--shuffle=1",
                          "--resolution", 16, "--seed", 3)
    assert code == 0, err
    noted(err, "--shuffle=1", "--shuffle (this port's shuffled order")
    assert modern(dataset_tool.cli, "create_from_images", "--source", src, "--dest", tmp_path / "ours1.zip",
                  "--resolution", 16, "--shuffle", "--seed", 3)[0] == 0
    assert members(tmp_path / "rel1.zip") == members(tmp_path / "ours1.zip")
    assert modern(dataset_tool.cli, "create_from_images", "--source", src, "--dest", tmp_path / "held.zip",
                  "--resolution", 16, "--skip", 4)[0] == 0
    assert list(members(tmp_path / "held.zip").values()) == list(members(tmp_path / "ours.zip").values())[4:]


def test_create_builtin_skip(tmp_path):
    assert modern(dataset_tool.cli, "create_builtin", "--dest", tmp_path / "all.zip", "--max-images", 5)[0] == 0
    assert modern(dataset_tool.cli, "create_builtin", "--dest", tmp_path / "held.zip", "--max-images", 2,
                  "--skip", 3)[0] == 0
    assert list(members(tmp_path / "held.zip").values()) == list(members(tmp_path / "all.zip").values())[3:]


@pytest.mark.parametrize("args, fragments", [
    (["create_celeba", "out.zip", "IN", "extra"], ["3 positional arguments", "--dest --source"]),
    (["create_celeba", "out.zip", "IN", "--dest", "x.zip"], ["--dest is given twice"]),
    (["create_from_images", "out.zip", "IN", "--shuffle=maybe"], ["--shuffle=maybe: expected True or False"]),
    (["create_celeba", "--source", "IN", "--dest", "out.zip", "--skip", "6"], ["--skip 6 leaves none"]),
])
def test_dataset_tool_bad_release_forms(world, tmp_path, args, fragments):
    args = [str(world / "celeba") if a == "IN" else str(tmp_path / a) if a.endswith(".zip") else a for a in args]
    code, out, err = modern(dataset_tool.cli, *args)
    if "--skip" in args:            # click's usage error: one 'Error:' line, exit 2
        assert code == 2 and "leaves none of the 6 images" in err
    else:
        one_error_line(code, out, err, *fragments)
    assert list(tmp_path.iterdir()) == []


# --- the scalable-fingerprints release: run_training.py, run_generator.py, run_metrics.py, --config ---------------

def test_run_training_resolves_the_same_options(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert modern(dataset_tool.cli, "create_builtin", "--dest", "datasets/celeba.zip", "--max-images", 2,
                  "--resolution", 128)[0] == 0
    code, out, err = release(run_training.main, capsys, "--num-gpus=2", "--data-dir=datasets",
                             "--config=config-e-Gskip-Dresnet", "--dataset=celeba", "--total-kimg=100",
                             "--watermark-size=128", "--res-modulated-range=4-128", "--decoupleL2-weight=2",
                             "--latentsRecL2-weight=1", "--watermarkCls-weight=2", "--mirror-augment=False",
                             "--metrics=fid50k", "--inception", save_standin(tmp_path / "inc.pt"), "--dry-run")
    assert code == 0, err
    noted(err, "--config=config-e-Gskip-Dresnet", "--preset celeba128")
    noted(err, "--data-dir=datasets --dataset=celeba", "--data datasets/celeba.zip")
    noted(err, "--metrics=fid50k", "--metrics fid50k_full")
    noted(err, "(no --result-dir)", "--outdir results")
    noted(err, "python run_training.py --num-gpus=2", "python train_stylegan2_fp.py --gpus 2")
    code, want, err2 = modern(train_stylegan2_fp.main, "--gpus", 2, "--data", "datasets/celeba.zip", "--preset",
                              "celeba128", "--total-kimg", 100, "--bits", 128, "--res-modulated-range", "4-128",
                              "--consistency-weight", 2, "--latent-rec-weight", 1, "--fp-weight", 2, "--mirror",
                              "false", "--metrics", "fid50k_full", "--outdir", "results", "--inception",
                              tmp_path / "inc.pt", "--dry-run")
    assert code == 0 and not notes(err2)
    assert json.loads(out) == json.loads(want)
    # A data set at a resolution without a release network: one line.
    assert modern(dataset_tool.cli, "create_builtin", "--dest", "datasets/toy.zip", "--max-images", 2)[0] == 0
    one_error_line(*release(run_training.main, capsys, "--data-dir=datasets", "--dataset=toy"), "32x32",
                   "give --preset")


def test_train_stylegan2_fp_takes_the_config(data, tmp_path):
    base = ["--data", data, "--outdir", tmp_path, "--dry-run"]
    code, want, _ = modern(train_stylegan2_fp.main, *base)
    for config in ("config-e-Gskip-Dresnet", "config-e"):
        code, out, err = modern(train_stylegan2_fp.main, f"--config={config}", *base)
        assert code == 0 and json.loads(out) == json.loads(want)
        noted(err, f"--config={config}", "(nothing: the only architecture")
    code, out, err = modern(train_stylegan2_fp.main, "--config", "config-f", *base)
    one_error_line(code, out, err, "--config=config-f", "config-e-Gskip-Dresnet")


def test_run_generator_with_flag_values(world, tmp_path, capsys):
    snap = world / "snap.safetensors"
    code, _, err = release(run_generator.main, capsys, "generate-images", f"--network={snap}", "--seeds=0-1",
                           f"--result-dir={tmp_path / 'rel'}", "--identical-latent=False",
                           "--identical-watermark=True", "--device", "cpu")
    assert code == 0, err
    noted(err, "--identical-latent=False", "(nothing: leave out --identical-latent)")
    noted(err, "--identical-watermark=True", "--identical-fingerprint")
    noted(err, "python run_generator.py generate-images", "python generate.py images --network")
    assert modern(generate.cli, "images", "--network", snap, "--seeds", "0-1", "--outdir", tmp_path / "ours",
                  "--identical-fingerprint", "--device", "cpu")[0] == 0
    assert files(tmp_path / "rel") == files(tmp_path / "ours")
    # generate.py itself takes --flag=True / --flag False.
    code, _, err = modern(generate.cli, "images", "--network", snap, "--seeds", "0-2", "--outdir", tmp_path / "t",
                          "--identical-latent=True", "--identical-watermark", "False", "--device", "cpu")
    assert code == 0, err
    noted(err, "--identical-latent=True", "--identical-latent")
    assert modern(generate.cli, "images", "--network", snap, "--seeds", "0-2", "--outdir", tmp_path / "t2",
                  "--identical-latent", "--device", "cpu")[0] == 0
    assert files(tmp_path / "t") == files(tmp_path / "t2")
    one_error_line(*release(run_generator.main, capsys, "style-mixing-example", f"--network={snap}"),
                   "generate-images only")
    one_error_line(*release(run_generator.main, capsys, "generate-images", f"--network={snap}", "--seeds=0",
                            "--truncation-psi=0.5"), "without truncation")


@pytest.mark.skipif(not PKL.is_file(), reason=f"oracle A not found at {ORACLE}")
def test_run_generator_converts_a_release_pickle(tmp_path, capsys):
    before = sorted(p.name for p in ORACLE.iterdir())
    code, _, err = release(run_generator.main, capsys, "generate-images", f"--network={PKL}", "--seeds=0-1",
                           f"--result-dir={tmp_path / 'rel'}", "--device", "cpu")
    assert code == 0, err
    noted(err, str(PKL), "python legacy.py --source")
    assert modern(legacy.main, "--source", PKL, "--dest", tmp_path / "A.safetensors")[0] == 0
    assert modern(generate.cli, "images", "--network", tmp_path / "A.safetensors", "--seeds", "0-1", "--outdir",
                  tmp_path / "ours", "--device", "cpu")[0] == 0
    assert files(tmp_path / "rel") == files(tmp_path / "ours")
    assert sorted(p.name for p in ORACLE.iterdir()) == before          # nothing written beside the pickle


def test_run_metrics_fid50k(world, data, tmp_path, capsys):
    inception = save_standin(tmp_path / "inc.pt")
    common = ["--inception", inception, "--num-gen", 8, "--max-real", 8, "--device", "cpu", "--no-progress"]
    snap = world / "snap.safetensors"
    code, _, err = release(run_metrics.main, capsys, f"--data-dir={data.parent}", f"--network={snap}",
                           "--metrics=fid50k", f"--dataset={data.stem}", f"--result-dir={tmp_path / 'rel'}",
                           "--num-gpus=1", "--mirror-augment=False", *common)
    assert code == 0, err
    noted(err, "--metrics=fid50k", "--metrics fid50k_full")
    noted(err, f"--result-dir={tmp_path / 'rel'}", f"--run-dir {tmp_path / 'rel'}")
    noted(err, "--num-gpus=1", "(nothing: calc_metrics.py runs in one process")
    noted(err, "--mirror-augment=False", "(nothing: leave out --mirror)")
    (tmp_path / "ours").mkdir()
    code, _, err = modern(calc_metrics.main, "--network", world / "snap.safetensors", "--metrics", "fid50k_full",
                          "--data", data, "--run-dir", tmp_path / "ours", *common)
    assert code == 0, err

    def fid(folder):
        return json.loads((folder / "metric-fid50k_full.jsonl").read_text())["fid"]
    assert fid(tmp_path / "rel") == fid(tmp_path / "ours")
    # Without --inception: one line, and no result folder left behind.
    code, out, err = release(run_metrics.main, capsys, f"--network={world / 'snap.safetensors'}", "--metrics=fid50k",
                             f"--data-dir={data.parent}", f"--dataset={data.stem}", f"--result-dir={tmp_path / 'new'}")
    one_error_line(code, out, err, "--inception")
    assert not (tmp_path / "new").exists()


# --- the artificial-fingerprints release: train.py, embed_fingerprints.py, detect_fingerprints.py -------------------

def test_train_with_celeba_preprocessing(world, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["--data_dir", world / "celeba", "--use_celeba_preprocessing", "--image_resolution", 32, "--output_dir",
            "rel", "--fingerprint_length", 8, "--batch_size", 4, "--lr", 0.0002, "--l2_loss_weight", 5,
            "--l2_loss_await", 10, "--l2_loss_ramp", 20, "--dry-run"]
    code, out, err = release(train.main, capsys, *args)
    assert code == 0, err
    noted(err, "--use_celeba_preprocessing", "python dataset_tool.py create_celeba")
    noted(err, "--fingerprint_length 8", "--bits 8")
    noted(err, "--l2_loss_await 10", "--l2-wait-steps 10")
    noted(err, "python train.py --data_dir", "python train_fingerprint_ae.py train")
    prepared = Path("rel/celeba32_crop148.zip")
    assert modern(dataset_tool.cli, "create_celeba", "--source", world / "celeba", "--dest", "ours.zip", "--cx", 89,
                  "--cy", 109, "--size", 148, "--resolution", 32, "--max-images", "all")[0] == 0
    assert members(prepared) == members(Path("ours.zip")) and len(members(prepared)) == 6
    code, want, _ = modern(train_fingerprint_ae.cli, "train", "--data", prepared, "--outdir", "rel", "--resolution",
                           32, "--bits", 8, "--batch", 4, "--lr", 0.0002, "--l2-weight", 5, "--l2-wait-steps", 10,
                           "--l2-ramp-steps", 20, "--dry-run")
    assert code == 0 and json.loads(out) == json.loads(want)
    # A rerun takes the prepared data set again; another file of that name is refused.
    stamp = prepared.stat().st_mtime_ns
    code, out2, err = release(train.main, capsys, *args)
    assert code == 0 and json.loads(out2) == json.loads(want) and prepared.stat().st_mtime_ns == stamp
    os.replace("ours.zip", prepared)
    Path(prepared).write_bytes(b"not ours")
    one_error_line(*release(train.main, capsys, *args), "is not the data set")
    one_error_line(*release(train.main, capsys, "--data_dir", "x", "--output_dir", "y", "--num_epochs", 20),
                   "--total-kimg")


def test_train_on_a_folder_of_images_of_any_size(world, tmp_path, capsys, monkeypatch):
    """Without --use_celeba_preprocessing the release resized each image as it read it: a folder of images of any
    size (here 178x218) is prepared once as dataset_tool.py create_from_images would; a data set that dataset_tool.py
    wrote is taken as it is."""
    monkeypatch.chdir(tmp_path)
    args = ["--data_dir", world / "celeba", "--image_resolution", 32, "--output_dir", "rel", "--fingerprint_length", 8,
            "--batch_size", 4, "--dry-run"]
    code, out, err = release(train.main, capsys, *args)
    assert code == 0, err
    noted(err, "--data_dir", "python dataset_tool.py create_from_images")
    prepared = Path("rel/images32.zip")
    assert modern(dataset_tool.cli, "create_from_images", "--source", world / "celeba", "--dest", "ours.zip",
                  "--resolution", 32, "--max-images", "all")[0] == 0
    assert members(prepared) == members(Path("ours.zip")) and len(members(prepared)) == 6
    code, want, _ = modern(train_fingerprint_ae.cli, "train", "--data", prepared, "--outdir", "rel", "--resolution",
                           32, "--bits", 8, "--batch", 4, "--dry-run")
    assert code == 0 and json.loads(out) == json.loads(want)
    stamp = prepared.stat().st_mtime_ns                 # a rerun reuses it
    code, out2, _ = release(train.main, capsys, *args)
    assert code == 0 and json.loads(out2) == json.loads(want) and prepared.stat().st_mtime_ns == stamp
    Path(prepared).write_bytes(b"not ours")             # never replaced when it is not the prepared set
    one_error_line(*release(train.main, capsys, *args), "is not the data set")
    assert prepared.read_bytes() == b"not ours"
    # A folder that dataset_tool.py wrote goes to training as it is, with no preparing step.
    assert modern(dataset_tool.cli, "create_builtin", "--dest", "toy", "--max-images", 4)[0] == 0
    code, out3, err = release(train.main, capsys, "--data_dir", "toy", "--image_resolution", 32, "--output_dir", "r2",
                              "--fingerprint_length", 8, "--dry-run")
    assert code == 0, err
    assert json.loads(out3)["data"].endswith("toy") and not Path("r2").exists()


@pytest.mark.parametrize("identical", [True, False])
def test_embed_fingerprints(world, tmp_path, capsys, identical):
    small = world / "small.zip"
    enc = world / "art" / "celeba_encoder.pth"
    flag = ["--identical_fingerprints"] if identical else []
    code, _, err = release(embed_fingerprints.main, capsys, "--encoder_path", enc, "--data_dir", small,
                           "--image_resolution", 32, "--output_dir", tmp_path / "rel", *flag, "--batch_size", 16,
                           "--check", "--device", "cpu")
    assert code == 0, err
    noted(err, str(enc), "python legacy.py --source")
    noted(err, "--check", "(nothing: embed always measures")
    noted(err, f"--output_dir {tmp_path / 'rel'}", f"--dest {tmp_path / 'rel' / 'fingerprinted_images'}")
    if identical:
        (line,) = [n for n in notes(err) if n.startswith("note: release form --identical_fingerprints;")]
        how = ["--fingerprint", line.split("--fingerprint ")[1].split()[0]]
    else:
        how = ["--random-per-image"]
    assert modern(legacy.main, "--source", enc, "--dest", tmp_path / "ae.safetensors")[0] == 0
    assert modern(train_fingerprint_ae.cli, "embed", "--network", tmp_path / "ae.safetensors", "--source", small,
                  "--dest", tmp_path / "ours", *how, "--batch", 16, "--device", "cpu")[0] == 0
    # The release's list beside the images: a line "<file name> <bits>" per image, as fingerprints.csv has them.
    listed = read_release(tmp_path / "rel" / "embedded_fingerprints.txt")
    with open(tmp_path / "ours" / "fingerprints.csv", newline="") as f:
        assert listed == [(Path(r["file"]).name, r["bits"]) for r in csv.DictReader(f)] and len(listed) == 8
    rel, ours = files(tmp_path / "rel" / "fingerprinted_images"), files(tmp_path / "ours")
    rel.pop("fingerprint_report.json"), ours.pop("fingerprint_report.json")      # they name their --source
    assert rel == ours and len(rel) == 9
    assert sorted(p.name for p in (world / "art").iterdir()) == ["celeba_decoder.pth", "celeba_encoder.pth"]


def test_embed_and_detect_refusals(world, data, tmp_path, capsys):
    enc = world / "art" / "celeba_encoder.pth"
    common = ["--data_dir", data, "--output_dir", tmp_path / "o"]
    one_error_line(*release(embed_fingerprints.main, capsys, "--encoder_path", enc, *common,
                            "--use_celeba_preprocessing"), "--use_celeba_preprocessing", "dataset_tool.py")
    one_error_line(*release(embed_fingerprints.main, capsys, "--encoder_path", enc, *common, "--image_resolution",
                            64), "64", "32x32")
    one_error_line(*release(detect_fingerprints.main, capsys, "--decoder_path", world / "art" / "celeba_decoder.pth",
                            *common, "--use_celeba_preprocessing"), "--use_celeba_preprocessing")
    alone = tmp_path / "alone"
    write_pair(alone, random_release(8, 32)[0], None)
    one_error_line(*release(embed_fingerprints.main, capsys, "--encoder_path", alone / "celeba_encoder.pth",
                            *common, "--image_resolution", 32), "celeba_decoder.pth")
    assert not (tmp_path / "o").exists()
    # A file of another kind where the release's list goes is refused before anything is embedded.
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "embedded_fingerprints.txt").write_text("precious notes\n")
    one_error_line(*release(embed_fingerprints.main, capsys, "--encoder_path", enc, *common, "--image_resolution",
                            32), "embedded_fingerprints.txt", "refusing to overwrite")
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["embedded_fingerprints.txt"]


def test_detect_fingerprints(world, tmp_path, capsys):
    small = world / "small.zip"
    dec = world / "art" / "celeba_decoder.pth"
    code, _, err = release(detect_fingerprints.main, capsys, "--decoder_path", dec, "--data_dir", small,
                           "--image_resolution", 32, "--output_dir", tmp_path / "rel", "--batch_size", 16,
                           "--device", "cpu")
    assert code == 0, err
    noted(err, f"--output_dir {tmp_path / 'rel'}", "--format release")
    noted(err, "python detect_fingerprints.py", "detect_attribute.py decode --network celeba_decoder.safetensors")
    assert modern(legacy.main, "--source", dec, "--dest", tmp_path / "dec.safetensors")[0] == 0
    assert modern(detect_attribute.cli, "decode", "--network", tmp_path / "dec.safetensors", "--images", small,
                  "--out", tmp_path / "ours.txt", "--format", "release", "--resize", "--batch", 16,
                  "--device", "cpu")[0] == 0
    text = (tmp_path / "rel" / "detected_fingerprints.txt").read_text()
    assert text == (tmp_path / "ours.txt").read_text() and len(text.splitlines()) == 8
    assert sorted(p.name for p in (world / "art").iterdir()) == ["celeba_decoder.pth", "celeba_encoder.pth"]


# --- the rewriting itself ---------------------------------------------------------------------------------------

def test_translate_keeps_this_ports_forms_and_notes_each_release_form_once():
    forms = {"--num-images": release_cli.rename("--max-images")}
    t = release_cli.translate(["--max-images", "3", "--force", "--num_images=2", "--num_images=2"], forms,
                              options={"--max-images"}, flags={"--force": ("--force", None)})
    assert t.args == ["--max-images", "3", "--force", "--max-images", "2", "--max-images", "2"]
    assert t.notes == ["note: release form --num_images=2; this port's form: --max-images 2"]
    t = release_cli.translate(["--force=no", "--force", "yes", "-h"], {}, flags={"--force": ("--force", "--no-force")})
    assert t.args == ["--no-force", "--force", "-h"] and len(t.notes) == 2
