"""detect_attribute.py decode end to end on tiny networks: the bits of every image without a registry (CSV and the
artificial-fingerprinting release's text format), the majority vote of a data set fingerprinted by the
autoencoder, decoders from snapshots, baked generators and autoencoder files, and bad inputs."""

from __future__ import annotations

import csv
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
from data.fingerprint_dataset import DECODED_COLUMNS, fingerprint_images, is_decode_output, majority_vote, read_release
from networks import build_networks, save_network
from networks.autoencoder import AutoencoderDecoder, FingerprintEncoder
from networks.checkpoint import load_decoder
from tests.test_crafted_cli import CRAFTED, make

AE_FINGERPRINT = "10110010"


def run(*args):
    return CliRunner().invoke(detect_attribute.cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny 32-bit snapshot; 4 images of the generator issued to bob from it (folder imgs/, with the images.csv
    that generate.py writes beside them), 2 of them in a zip; an 8-bit autoencoder file and the images of imgs/
    fingerprinted by it with AE_FINGERPRINT (folder ae_imgs/, with embed's CSV and report beside them)."""
    root = tmp_path_factory.mktemp("decode")
    torch.manual_seed(0)
    nets = build_networks("tiny32", n_bits=32)
    snap = save_network(root / "snap.safetensors", G=nets["G"], G_ema=nets["G"], D=nets["D"], F=nets["F"])
    runner = CliRunner()
    r = runner.invoke(generate.cli, ["issue", "--network", str(snap), "--registry", str(root / "issued.sqlite"),
                                     "--users", "bob", "--outdir", str(root / "issued")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(generate.cli, ["images", "--network", str(root / "issued" / "bob.safetensors"), "--seeds", "0-3",
                                     "--outdir", str(root / "imgs")])
    assert r.exit_code == 0, r.output
    with zipfile.ZipFile(root / "some.zip", "w") as zf:
        for i in (1, 2):
            zf.write(root / "imgs" / f"seed{i:04d}.png", f"sub/seed{i:04d}.png")
    enc, dec = FingerprintEncoder(n_bits=8, img_resolution=32), AutoencoderDecoder(n_bits=8, img_resolution=32)
    save_network(root / "ae.safetensors", encoder=enc, decoder=dec)
    fp = torch.tensor([float(b) for b in AE_FINGERPRINT])
    fingerprint_images(enc.eval(), dec.eval(), root / "imgs", root / "ae_imgs", fingerprint=fp, progress=False)
    return root


def in_process_logits(network: Path, files: list[Path]) -> np.ndarray:
    """The decoder's logits for these PNG files, loaded here as detect_attribute.py documents it ([-1, 1])."""
    dec = load_decoder(network)
    x = torch.from_numpy(np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])).permute(0, 3, 1, 2)
    return dec.logits(x.float() / 127.5 - 1).numpy()


def bit_strings(logits: np.ndarray) -> list[str]:
    return ["".join("1" if v > 0 else "0" for v in row) for row in logits]


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_decode_writes_the_bits_the_decoder_reads(world, tmp_path):
    imgs, snap = world / "imgs", world / "snap.safetensors"
    out = tmp_path / "bits.csv"
    r = run("decode", "--network", snap, "--images", imgs, world / "some.zip", imgs / "seed0003.png", "--out", out)
    assert r.exit_code == 0, r.output
    assert "decoded 7 images (32 bits)" in r.output and f"wrote {out}" in r.output
    rows = read_rows(out)
    assert tuple(rows[0]) == DECODED_COLUMNS
    files = [imgs / f"seed{i:04d}.png" for i in range(4)]
    # Paths as detect shows them; images.csv beside the PNGs is not an image and is passed over, as detect does.
    assert [row["path"] for row in rows] == [f.as_posix() for f in files] + [
        f"{world / 'some.zip'}:sub/seed0001.png", f"{world / 'some.zip'}:sub/seed0002.png", str(files[3])]
    logits = in_process_logits(snap, files)
    want = bit_strings(logits)
    assert [row["bits"] for row in rows] == want + want[1:3] + want[3:]
    assert all(row["kind"] == "image" and row["images"] == "1" and row["agreement"] == "" for row in rows)
    assert [float(row["mean_abs_logit"]) for row in rows[:4]] == pytest.approx(np.abs(logits).mean(1), abs=1e-4)
    # The same bits as detect's bits column (detect decides on them with a registry).
    r = run("detect", "--network", snap, "--registry", world / "issued.sqlite", "--images", imgs, "--out",
            tmp_path / "detect.csv")
    assert r.exit_code == 0, r.output
    assert [row["bits"] for row in read_rows(tmp_path / "detect.csv")] == want
    # A baked generator decodes with the F of the snapshot it was issued from; a rerun replaces the file.
    r = run("decode", "--network", world / "issued" / "bob.safetensors", "--images", imgs, "--out", out)
    assert r.exit_code == 0, r.output
    assert [row["bits"] for row in read_rows(out)] == want


def test_release_format(world, tmp_path):
    imgs = world / "imgs"
    nested = tmp_path / "nested"
    shutil.copytree(imgs, nested / "sub dir")
    out = tmp_path / "bits.txt"
    r = run("decode", "--network", world / "snap.safetensors", "--images", imgs, "--format", "release", "--out", out)
    assert r.exit_code == 0, r.output
    want = bit_strings(in_process_logits(world / "snap.safetensors", [imgs / f"seed{i:04d}.png" for i in range(4)]))
    assert out.read_text() == "".join(f"seed{i:04d}.png {b}\n" for i, b in enumerate(want))
    assert read_release(out) == [(f"seed{i:04d}.png", b) for i, b in enumerate(want)]
    # Names within each input (a sub-folder, a space: the bits are the last field), a zip's members; a rerun
    # replaces the file.
    r = run("decode", "--network", world / "snap.safetensors", "--images", nested, world / "some.zip",
            "--format", "release", "--out", out)
    assert r.exit_code == 0, r.output
    assert read_release(out) == ([(f"sub dir/seed{i:04d}.png", b) for i, b in enumerate(want)]
                                 + [("sub/seed0001.png", want[1]), ("sub/seed0002.png", want[2])])
    # Two images of one name (two folders): the format cannot tell them apart; nothing is written.
    r = run("decode", "--network", world / "snap.safetensors", "--images", imgs, nested / "sub dir",
            "--format", "release", "--out", tmp_path / "new.txt")
    assert r.exit_code == 1 and "two images are named seed0000.png" in r.output
    assert not (tmp_path / "new.txt").exists()


@pytest.mark.parametrize("network, n_bits", [("ae.safetensors", 8), ("snap.safetensors", 32)])
def test_majority_vote_of_a_fingerprinted_data_set(world, tmp_path, network, n_bits):
    ae, ae_imgs, imgs = world / network, world / "ae_imgs", world / "imgs"
    out = tmp_path / "bits.csv"
    r = run("decode", "--network", ae, "--images", ae_imgs, imgs, "--out", out, "--majority")
    assert r.exit_code == 0, r.output
    rows = read_rows(out)
    assert [row["kind"] for row in rows] == ["image"] * 8 + ["majority"] * 2
    for folder, row in ((ae_imgs, rows[8]), (imgs, rows[9])):
        logits = in_process_logits(ae, [folder / f"seed{i:04d}.png" for i in range(4)])
        ones = (logits > 0).mean(0)
        assert row["path"] == str(folder) and row["images"] == "4"
        agreement = [float(a) for a in row["agreement"].split()]
        assert len(row["bits"]) == len(agreement) == n_bits
        for j, (bit, a) in enumerate(zip(row["bits"], agreement)):
            assert a >= 0.5 and a == pytest.approx(ones[j] if bit == "1" else 1 - ones[j], abs=1e-3)
            # The bit most images read; a tie (2 of 4) goes by the sign of the summed logits.
            assert bit == ("1" if ones[j] > 0.5 or (ones[j] == 0.5 and logits[:, j].sum() > 0) else "0")
        assert f"majority of {folder} (4 images): {row['bits']}  agreement mean" in r.output
    # The release format keeps image lines only, and says so.
    r = run("decode", "--network", ae, "--images", ae_imgs, "--out", tmp_path / "bits.txt", "--majority",
            "--format", "release")
    assert r.exit_code == 0, r.output
    assert "majority of" in r.output and "not in the file" in r.output
    assert [name for name, _ in read_release(tmp_path / "bits.txt")] == [f"seed{i:04d}.png" for i in range(4)]


def test_majority_vote_breaks_ties_by_the_logits():
    logits = np.array([[1.0, -1.0, 2.0, -0.5],
                       [2.0, -1.0, -1.0, 0.25],
                       [3.0, 1.0, -0.5, 0.25],
                       [-1.0, -1.0, 1.0, 0.5]])
    bits, agree = majority_vote(logits)
    assert bits.tolist() == [1, 0, 1, 1]          # 3 of 4, 3 of 4, tie (sum +1.5), 3 of 4
    assert agree.tolist() == [0.75, 0.75, 0.5, 0.75]
    assert majority_vote(np.zeros((2, 3)))[0].tolist() == [0, 0, 0]
    with pytest.raises(ValueError):
        majority_vote(np.zeros((0, 3)))


def test_non_images_unreadable_and_wrong_sized_images(world, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(world / "imgs" / "seed0000.png", folder / "a.png")
    (folder / "notes.txt").write_text("not an image, and not named like one\n")
    (folder / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "bits.csv"
    base = ["decode", "--network", world / "snap.safetensors", "--images", folder, "--out", out]
    r = run(*base)
    assert r.exit_code == 1 and "broken.png: cannot decode" in r.output and "--skip-unreadable" in r.output
    assert r.output.count("error: ") == 1 and r.output.splitlines()[-1].startswith("error: ")   # after the bar
    assert not out.exists()
    r = run(*base, "--skip-unreadable", "--majority")
    assert r.exit_code == 0 and "skipped" in r.output and "1 skipped" in r.output, r.output
    rows = read_rows(out)
    assert [row["path"] for row in rows] == [(folder / "a.png").as_posix(), str(folder)]   # notes.txt passed over
    Image.new("RGB", (64, 48), (10, 20, 30)).save(folder / "big.png")
    r = run(*base, "--skip-unreadable")
    assert r.exit_code == 0 and "big.png: is 64x48; the decoder reads 32x32" in r.output
    r = run(*base, "--skip-unreadable", "--resize")
    assert r.exit_code == 0 and len(read_rows(out)) == 2
    # An input with no readable image has no majority: an error, the earlier file left as it was.
    only_broken = tmp_path / "only_broken"
    only_broken.mkdir()
    (only_broken / "x.png").write_bytes(b"junk")
    before = out.read_bytes()
    r = run(*base, "--skip-unreadable", "--majority", "--images", only_broken)
    assert r.exit_code == 1 and f"{only_broken}: no readable image to take the majority vote of" in r.output
    assert out.read_bytes() == before
    # Nothing readable at all, a missing input, a file that holds no decoder.
    r = run("decode", "--network", world / "snap.safetensors", "--images", only_broken, "--out", tmp_path / "n.csv",
            "--skip-unreadable")
    assert r.exit_code == 1 and "no readable images" in r.output
    r = run("decode", "--network", world / "snap.safetensors", "--images", tmp_path / "nowhere", "--out", out)
    assert r.exit_code == 1 and "no such file or folder" in r.output
    r = run("decode", "--network", world / "imgs" / "seed0000.png", "--images", folder, "--out", tmp_path / "n.csv")
    assert r.exit_code == 1 and r.output.startswith("error: ") and not (tmp_path / "n.csv").exists()


def snapshot_of_files(*paths: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for root in paths for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("out, message", [
    ("{t}/one.png", "is the input --images"),
    ("{w}/imgs/seed0000.png", "inside the input folder"),
    ("{w}/imgs/images.csv", "inside the input folder"),
    ("{w}/some.zip", "is the input --images"),
    ("{w}/snap.safetensors", "is the input --network"),
    ("{w}/imgs", "is a directory"),
    ("{t}/notes.txt", "not a bits file of detect_attribute.py decode"),
    ("{t}/res.csv", "not a bits file of detect_attribute.py decode"),
])
def test_out_never_overwrites_an_input_or_a_foreign_file(world, tmp_path, out, message):
    (tmp_path / "notes.txt").write_text("my notes\nseed0000.png 0101\n")
    (tmp_path / "res.csv").write_text("path,decision\nx.png,attributed\n")
    shutil.copy(world / "imgs" / "seed0000.png", tmp_path / "one.png")
    before = snapshot_of_files(world, tmp_path)
    r = run("decode", "--network", world / "snap.safetensors", "--images", world / "imgs", world / "some.zip",
            tmp_path / "one.png", "--out", out.format(w=world, t=tmp_path))
    assert r.exit_code in (1, 2) and message in r.output, r.output
    assert r.exit_code == 2 or (r.output.count("\n") == 1 and r.output.startswith("error: "))
    assert snapshot_of_files(world, tmp_path) == before


def test_what_counts_as_a_file_decode_wrote(tmp_path):
    f = tmp_path / "f"
    for text, ours in [(",".join(DECODED_COLUMNS) + "\n", True), ("a.png 0101\nb c.png 1100\n", True),
                       ("a.png 0101\nb.png 110\n", False), ("my notes\n", False), ("", False),
                       ("a.png 0101\n" * 500, True), ("path,bits\n", False)]:
        f.write_text(text)
        assert is_decode_output(f) is ours, text[:30]


@pytest.mark.parametrize("case", CRAFTED + ["nan_weights", "baked_from_itself"])
def test_crafted_network_files_get_one_line(tmp_path, case):
    net = make(tmp_path, case, "detect")            # nan_weights: in F, the network decode reads
    (tmp_path / "imgs").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    r = run("decode", "--network", net, "--images", tmp_path / "imgs", "--out", tmp_path / "out.csv")
    assert r.exit_code == 1, (r.output, r.exception)
    assert r.output.startswith("error: ") and r.output.count("\n") == 1, r.output
    assert str(net) in r.output or net.name in r.output, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before
