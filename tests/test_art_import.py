"""Importing the artificial-fingerprinting release's autoencoders (``legacy.py --source X_encoder.pth``):
the converted networks reproduce the release's outputs (the oracle files, and a reference forward pass
written here from the spec at other sizes), the result works with this project's tools, and bad, hostile or
misplaced files fail with one error line and write nothing."""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

import interop.art_import
import interop.torch_file
import legacy
from networks.autoencoder import RELEASE_ENCODER, AutoencoderDecoder, DecoderWithLatent, FingerprintEncoder
from networks.checkpoint import load_decoder, load_network, read_header, save_network
from tests.release_fakes import Reduce
from tests.shared_paths import SHARED
from tests.test_legacy_cli import assert_one_error_line

REPO = Path(__file__).resolve().parents[1]
ART = SHARED / "oracle" / "art_A"
TOL = 1e-5
SENTINEL = "PWNED"

needs_oracle = pytest.mark.skipif(not all((ART / f).is_file() for f in ("oracle_encoder.pth", "oracle_decoder.pth",
                                                                          "io.npz")),
                                  reason=f"art_A oracle not found at {ART}")


def invoke(*args: str | os.PathLike) -> Any:
    return CliRunner().invoke(legacy.main, [str(a) for a in args])


# --- the release's networks, from the spec (shared/spec/ART_CHECKPOINTS.md), as plain functions ---------------

def _nearest(x: torch.Tensor, k: int) -> torch.Tensor:
    return x.repeat_interleave(k, 2).repeat_interleave(k, 3)


def reference_encoder(sd: dict, img01: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    def conv(k, x, stride=1):
        return F.relu(F.conv2d(x, sd[f"conv{k}.weight"], sd[f"conv{k}.bias"], stride=stride, padding=1))

    def up(k, x):
        x = F.pad(_nearest(x, 2), (0, 1, 0, 1))
        return F.relu(F.conv2d(x, sd[f"up{k}.weight"], sd[f"up{k}.bias"]))

    n, _, r, _ = img01.shape
    secret = F.relu(F.linear(bits, sd["secret_dense.weight"], sd["secret_dense.bias"])).view(n, 3, 16, 16)
    inputs = torch.cat([_nearest(secret, r // 16), img01], 1)
    c1 = conv(1, inputs)
    c2 = conv(2, c1, 2)
    c3 = conv(3, c2, 2)
    c4 = conv(4, c3, 2)
    x = conv(5, c4, 2)
    x = conv(6, torch.cat([c4, up(6, x)], 1))
    x = conv(7, torch.cat([c3, up(7, x)], 1))
    x = conv(8, torch.cat([c2, up(8, x)], 1))
    x = conv(9, torch.cat([c1, up(9, x), inputs], 1))
    x = conv(10, x)
    return torch.sigmoid(F.conv2d(x, sd["residual.weight"], sd["residual.bias"]))


def reference_decoder(sd: dict, img01: torch.Tensor) -> torch.Tensor:
    x = img01
    for i, stride in zip(range(0, 14, 2), (2, 1, 2, 1, 2, 2, 2)):
        x = F.relu(F.conv2d(x, sd[f"decoder.{i}.weight"], sd[f"decoder.{i}.bias"], stride=stride, padding=1))
    x = F.relu(F.linear(x.flatten(1), sd["dense.0.weight"], sd["dense.0.bias"]))
    return F.linear(x, sd["dense.2.weight"], sd["dense.2.bias"])


def release_shapes(n_bits: int, res: int) -> tuple[dict, dict]:
    """The shapes of the release's encoder and decoder state dicts (the spec's key lists)."""
    enc = {"secret_dense": (3 * 16 * 16, n_bits)}
    for k, (cin, cout) in enumerate([(6, 32), (32, 32), (32, 64), (64, 128), (128, 256)], 1):
        enc[f"conv{k}"] = (cout, cin, 3, 3)
    for k, (cin, cout, fuse_in) in zip(range(6, 10), [(256, 128, 256), (128, 64, 128), (64, 32, 64), (32, 32, 70)]):
        enc[f"up{k}"] = (cout, cin, 2, 2)
        enc[f"conv{k}"] = (cout, fuse_in, 3, 3)
    enc["conv10"], enc["residual"] = (32, 32, 3, 3), (3, 32, 1, 1)
    dec = {}
    for i, (cin, cout) in zip(range(0, 14, 2), [(3, 32), (32, 32), (32, 64), (64, 64), (64, 64), (64, 128),
                                                (128, 128)]):
        dec[f"decoder.{i}"] = (cout, cin, 3, 3)
    dec["dense.0"], dec["dense.2"] = (512, 128 * (res // 32) ** 2), (n_bits, 512)
    return enc, dec


def random_release(n_bits: int, res: int, seed: int = 0) -> tuple[dict, dict]:
    """Release-shaped state dicts with He-scaled random weights (signals keep their scale through the depth)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for shapes in release_shapes(n_bits, res):
        sd = {}
        for name, shape in shapes.items():
            fan_in = int(np.prod(shape[1:]))
            sd[f"{name}.weight"] = torch.randn(shape, generator=g) * (2 / fan_in) ** 0.5
            sd[f"{name}.bias"] = torch.randn(shape[0], generator=g) * 0.05
        out.append(sd)
    return out[0], out[1]


def write_pair(folder: Path, enc: dict | None, dec: dict | None, name: str = "celeba") -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / f"{name}_encoder.pth", folder / f"{name}_decoder.pth"
    for sd, path in zip((enc, dec), paths):
        if sd is not None:
            torch.save(sd, path)
    return paths


def inputs(n_bits: int, res: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(3, 3, res, res, generator=g), torch.randint(0, 2, (3, n_bits), generator=g).float()


@pytest.fixture(scope="module")
def io() -> dict[str, np.ndarray]:
    if not (ART / "io.npz").is_file():
        pytest.skip(f"art_A oracle not found at {ART}")
    with np.load(ART / "io.npz") as f:
        return {k: torch.from_numpy(f[k]) for k in f.files}


# --- the oracle: the release's own outputs ---------------------------------------------------------------

@needs_oracle
def test_reference_functions_reproduce_the_oracle(io: dict) -> None:
    """The spec-reading of this file (used at other sizes below) gives the release's outputs."""
    enc = torch.load(ART / "oracle_encoder.pth", weights_only=True, map_location="cpu")
    dec = torch.load(ART / "oracle_decoder.pth", weights_only=True, map_location="cpu")
    with torch.no_grad():
        assert (reference_encoder(enc, io["image"], io["fingerprint"]) - io["encoded"]).abs().max() <= TOL
        assert (reference_decoder(dec, io["encoded"]) - io["decoder_logits"]).abs().max() <= TOL


@needs_oracle
def test_cli_converts_the_oracle_pair(tmp_path: Path, io: dict) -> None:
    """End to end, in a fresh interpreter: the encoder's decoder is picked up beside it; a user of our format
    (images in [-1, 1]) gets the release's fingerprinted image (mapped to [-1, 1]) and its logits."""
    dest = tmp_path / "out" / "art.safetensors"
    proc = subprocess.run([sys.executable, "legacy.py", "--source", str(ART / "oracle_encoder.pth"), "--dest",
                           str(dest)], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "oracle_decoder.pth" in proc.stdout and str(dest) in proc.stdout
    header = read_header(dest)
    assert header["kind"] == "autoencoder" and header["n_bits"] == "48" and header["resolution"] == "32"
    assert header["networks"]["encoder"]["kwargs"] == dict(n_bits=48, img_resolution=32, img_channels=3,
                                                           residual=False, **RELEASE_ENCODER)
    extra = header["extra"]
    assert extra["converted_from"] == "art-release-pth" and extra["source"] == "oracle_encoder.pth"
    for role in ("encoder", "decoder"):
        digest = hashlib.sha256((ART / f"oracle_{role}.pth").read_bytes()).hexdigest()
        assert extra["sources"][role] == {"file": f"oracle_{role}.pth", "sha256": digest}
    assert extra["source_sha256"] == extra["sources"]["encoder"]["sha256"]

    nets = load_network(dest, names=["encoder", "decoder"])   # as train_fingerprint_ae.py embed loads it
    with torch.no_grad():
        encoded = nets["encoder"](io["image"] * 2 - 1, io["fingerprint"])
        assert (encoded - (io["encoded"] * 2 - 1)).abs().max() <= TOL
        assert (nets["decoder"](io["encoded"] * 2 - 1) - io["decoder_logits"]).abs().max() <= TOL
        assert (nets["decoder"](encoded) - io["decoder_logits"]).abs().max() <= TOL
    loaded = load_decoder(dest)                                # as detect_attribute.py loads it
    assert loaded.n_bits == 48 and loaded.resolution == 32
    assert (loaded.logits(io["encoded"] * 2 - 1) - io["decoder_logits"]).abs().max() <= TOL


@needs_oracle
def test_decoder_alone_and_encoder_alone(tmp_path: Path, io: dict) -> None:
    enc_path, dec_path = tmp_path / "x_encoder.pth", tmp_path / "x_decoder.pth"
    shutil.copy(ART / "oracle_encoder.pth", enc_path)
    shutil.copy(ART / "oracle_decoder.pth", dec_path)
    dest = tmp_path / "dec.safetensors"
    result = invoke("--source", dec_path, "--dest", dest)       # the encoder beside it is not taken
    assert result.exit_code == 0, (result.output, result.exception)
    assert list(read_header(dest)["networks"]) == ["decoder"]
    dec = load_network(dest)["decoder"]
    f = DecoderWithLatent.from_decoder(dec, z_dim=16)            # as train_stylegan2_fp.py --fp-decoder does
    with torch.no_grad():
        assert (f(io["encoded"] * 2 - 1)[1] - io["decoder_logits"]).abs().max() <= TOL
    assert load_decoder(dest).n_bits == 48

    dec_path.unlink()
    dest = tmp_path / "enc.safetensors"
    assert_one_error_line(invoke("--source", enc_path, "--dest", dest), "x_encoder.pth", "--resolution")
    assert not dest.exists()
    result = invoke("--source", enc_path, "--dest", dest, "--resolution", 32)
    assert result.exit_code == 0, (result.output, result.exception)
    enc = load_network(dest)["encoder"]
    with torch.no_grad():
        assert (enc(io["image"] * 2 - 1, io["fingerprint"]) - (io["encoded"] * 2 - 1)).abs().max() <= TOL
    assert_one_error_line(invoke("--source", enc_path, "--dest", tmp_path / "e.safetensors", "--resolution", 48),
                          "x_encoder.pth", "power of two")


# --- other sizes, against the reference functions (no oracle needed) ---------------------------------------

@pytest.mark.parametrize(("n_bits", "res"), [(10, 64), (100, 128)])
def test_other_sizes_are_read_from_the_shapes(tmp_path: Path, n_bits: int, res: int) -> None:
    enc_sd, dec_sd = random_release(n_bits, res)
    source, _ = write_pair(tmp_path, enc_sd, dec_sd)
    dest = tmp_path / "art.safetensors"
    result = invoke("--source", source, "--dest", dest)
    assert result.exit_code == 0, (result.output, result.exception)
    nets = load_network(dest)
    assert (nets["encoder"].n_bits, nets["encoder"].img_resolution) == (n_bits, res)
    assert (nets["decoder"].n_bits, nets["decoder"].img_resolution) == (n_bits, res)
    img01, bits = inputs(n_bits, res)
    with torch.no_grad():
        want = reference_encoder(enc_sd, img01, bits)
        assert want.std() > 0.01                              # not a saturated, trivially equal output
        got = nets["encoder"](img01 * 2 - 1, bits)
        assert (got - (want * 2 - 1)).abs().max() <= TOL
        want_logits = reference_decoder(dec_sd, want)
        assert (nets["decoder"](got) - want_logits).abs().max() <= TOL * max(1.0, want_logits.abs().max().item())


def test_converted_autoencoder_embeds_a_data_set(tmp_path: Path, data: Path) -> None:
    """``train_fingerprint_ae.py embed`` takes the converted file as it takes its own snapshots."""
    import train_fingerprint_ae

    source, _ = write_pair(tmp_path, *random_release(8, 32))
    net = tmp_path / "art.safetensors"
    assert invoke("--source", source, "--dest", net).exit_code == 0
    dest = tmp_path / "fp"
    result = CliRunner().invoke(train_fingerprint_ae.cli, ["embed", "--network", str(net), "--source", str(data),
                                                           "--dest", str(dest), "--fingerprint", "10110001",
                                                           "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert len(list(dest.rglob("*.png"))) == 64


def test_encoder_layout_options_round_trip_and_old_files_load(tmp_path: Path) -> None:
    torch.manual_seed(0)
    enc = FingerprintEncoder(8, 32, **RELEASE_ENCODER)
    path = save_network(tmp_path / "ae.safetensors", encoder=enc, decoder=AutoencoderDecoder(8, 32))
    assert read_header(path)["networks"]["encoder"]["kwargs"]["up_conv"] == "2x2"
    back = load_network(path)["encoder"]
    assert (back.up_conv, back.input_concat) == ("2x2", "last_fuse")
    x, c = torch.rand(2, 3, 32, 32) * 2 - 1, torch.randint(0, 2, (2, 8)).float()
    assert torch.equal(back(x, c), enc(x, c))
    # A file written before the options existed (no such kwargs) loads with this project's layout.
    old = FingerprintEncoder(8, 32)
    old.init_kwargs = {k: v for k, v in old.init_kwargs.items() if k not in ("up_conv", "input_concat")}
    back = load_network(save_network(tmp_path / "old.safetensors", encoder=old))["encoder"]
    assert (back.up_conv, back.input_concat) == ("3x3", "final") and torch.equal(back(x, c), old(x, c))
    with pytest.raises(ValueError, match="up_conv must be one of"):
        FingerprintEncoder(8, 32, up_conv="4x4")
    with pytest.raises(ValueError, match="input_concat must be one of"):
        FingerprintEncoder(8, 32, input_concat="first")


# --- failures: one error line, nothing written ---------------------------------------------------------------

def _rename(sd: dict, old: str, new: str) -> dict:
    return {(new if k == old else k): v for k, v in sd.items()}


def bad_sources(tmp_path: Path) -> dict[str, tuple[Path, list[str]]]:
    """name -> (a bad --source, what its error line must say)."""
    tmp_path.mkdir(exist_ok=True)
    enc, dec = random_release(8, 32)
    sentinel = str(tmp_path / SENTINEL)
    cases = {
        "unknown key": (_rename(enc, "conv10.weight", "conv11.weight"), ["'conv11.weight'", "unexpected"]),
        "missing key": ({k: v for k, v in dec.items() if k != "decoder.6.bias"}, ["missing 'decoder.6.bias'"]),
        "wrong shape": ({**enc, "conv9.weight": torch.zeros(32, 64, 3, 3)}, ["conv9.weight", "[32, 70, 3, 3]"]),
        "neither": ({"weight": torch.zeros(3)}, ["neither the release's encoder"]),
        "non-tensor": ({**dec, "dense.0.bias": [0.0] * 512}, ["'dense.0.bias' holds a list, not a tensor"]),
        "integer tensor": ({**dec, "dense.0.bias": torch.zeros(512, dtype=torch.int64)}, ["not dense floating"]),
        "not a dict": ([dec["dense.0.bias"]], ["holds a list, not a state dict"]),
        "not finite": ({**dec, "dense.2.bias": torch.full((8,), float("nan"))}, ["NaN or infinite"]),
        "odd size": ({**dec, "dense.0.weight": torch.zeros(512, 128 * 9)}, ["power of two", "got 96"]),
    }
    out = {}
    for name, (obj, says) in cases.items():
        role = "encoder" if isinstance(obj, dict) and "conv1.weight" in obj else "decoder"
        path = tmp_path / f"{name.replace(' ', '_')}_{role}.pth"
        torch.save(obj, path)
        out[name] = path, says
    # Pickles that would run a command under a normal unpickler: raw, and inside torch.save's zip.
    raw = tmp_path / "evil_encoder.pth"
    raw.write_bytes(pickle.dumps(Reduce(os.system, (f"touch {sentinel}",)), protocol=2))
    zipped = tmp_path / "evil_zip_encoder.pth"
    torch.save({"secret_dense.weight": Reduce(os.system, (f"touch {sentinel}",))}, zipped)
    text = tmp_path / "text_decoder.pth"
    text.write_text("hello\n")
    truncated = tmp_path / "truncated_encoder.pth"
    torch.save(enc, truncated)
    truncated.write_bytes(truncated.read_bytes()[:5000])
    refused = ["refused by weights-only loading", "posix.system"]
    unreadable = ["not a readable torch.save file"]
    out.update({"malicious": (raw, refused), "malicious zip": (zipped, refused), "text": (text, unreadable),
                "truncated": (truncated, unreadable)})
    return out


CASES = ["unknown key", "missing key", "wrong shape", "neither", "non-tensor", "integer tensor", "not a dict",
         "not finite", "odd size", "malicious", "malicious zip", "text", "truncated"]


@pytest.mark.parametrize("case", CASES)
def test_bad_files_give_one_line_and_write_nothing(tmp_path: Path, case: str) -> None:
    source, says = bad_sources(tmp_path / "in")[case]
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.safetensors").write_bytes(b"precious bytes")
    line = assert_one_error_line(invoke("--source", source, "--dest", out / "new.safetensors"), source.name, *says)
    assert "--source must be" in line or "NaN" in line or "power of two" in line
    assert not (tmp_path / "in" / SENTINEL).exists(), "the pickle's payload ran"
    assert [p.name for p in out.iterdir()] == ["keep.safetensors"]
    assert (out / "keep.safetensors").read_bytes() == b"precious bytes"


def test_malicious_pickle_in_a_fresh_interpreter(tmp_path: Path) -> None:
    source, _ = bad_sources(tmp_path)["malicious"]
    dest = tmp_path / "out.safetensors"
    proc = subprocess.run([sys.executable, "legacy.py", "--source", str(source), "--dest", str(dest)], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("error: ")
    assert not (tmp_path / SENTINEL).exists() and not dest.exists()


def test_oversized_file_is_refused_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source, _ = write_pair(tmp_path, *random_release(8, 32))
    monkeypatch.setattr(interop.torch_file, "MAX_SOURCE_BYTES", 10_000)
    monkeypatch.setattr(interop.torch_file.torch, "load", lambda *a, **k: pytest.fail("read an oversized file"))
    dest = tmp_path / "out.safetensors"
    assert_one_error_line(invoke("--source", source, "--dest", dest), source.name, "more than the 10,000")
    assert not dest.exists()


def test_mismatched_pair_and_resolution(tmp_path: Path) -> None:
    enc, _ = random_release(8, 32)
    _, dec = random_release(12, 64)
    source, _ = write_pair(tmp_path, enc, dec)
    dest = tmp_path / "out.safetensors"
    assert_one_error_line(invoke("--source", source, "--dest", dest), "8 bits", "12 bits", "not a pair")
    enc, dec = random_release(8, 64)
    source, _ = write_pair(tmp_path, enc, dec)
    assert_one_error_line(invoke("--source", source, "--dest", dest, "--resolution", 32), "64x64")
    assert not dest.exists()


@pytest.mark.parametrize("target", ["source", "symlink", "paired decoder"])
def test_dest_must_not_be_an_input(tmp_path: Path, target: str) -> None:
    source, decoder = write_pair(tmp_path, *random_release(8, 32))
    before = {p: p.read_bytes() for p in (source, decoder)}
    dest = {"source": source, "paired decoder": decoder, "symlink": tmp_path / "link.pth"}[target]
    if target == "symlink":
        dest.symlink_to(source)
    assert_one_error_line(invoke("--source", source, "--dest", dest), "--dest", "refusing to overwrite")
    assert {p: p.read_bytes() for p in (source, decoder)} == before
    assert not list(tmp_path.glob(".*.tmp"))


def test_resolution_is_refused_for_a_tf_pickle(tmp_path: Path) -> None:
    source = tmp_path / "Gs.pkl"
    source.write_bytes(pickle.dumps([1, 2, 3]))
    assert_one_error_line(invoke("--source", source, "--dest", tmp_path / "o.safetensors", "--resolution", 32),
                          "--resolution")
