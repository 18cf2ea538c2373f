"""metrics/fingerprint.py on stand-in networks whose answers are known."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from attribution.detection import binomial_tail
from attribution.registry import Registry
from dnnlib.util import sha256_file
from metrics import fingerprint, metric_main
from metrics.fingerprint import fingerprint_metrics, iter_samples, transfer_metrics
from networks.stylegan2 import BakedGenerator


class PaintG(torch.nn.Module):
    """Writes the fingerprint into the first row of channel 0 (as -1/+1); everything else is 0."""

    z_dim, n_bits = 4, 16

    def forward(self, z, c, noise_mode="const"):
        img = torch.zeros(z.shape[0], 3, 8, 16)
        img[:, 0, 0, :] = c * 2 - 1
        return img


class ReadF(torch.nn.Module):
    def __init__(self, flip: int = 0):
        super().__init__()
        self.flip = flip

    def forward(self, img):
        logits = img[:, 0, 0, :].clone()
        logits[:, : self.flip] *= -1           # decode the first `flip` bits wrongly
        return torch.zeros(img.shape[0], 4), logits


def test_perfect_and_partly_wrong_decoders():
    perfect = fingerprint_metrics(PaintG(), ReadF(), num=200, batch=64)
    assert perfect["bit_acc"] == 1.0 and perfect["bit_acc_min"] == 1.0 and perfect["num"] == 200
    quarter_wrong = fingerprint_metrics(PaintG(), ReadF(flip=4), num=200, batch=64)
    assert quarter_wrong["bit_acc"] == pytest.approx(0.75)


def test_consistency_psnr_matches_the_changed_pixels():
    result = fingerprint_metrics(PaintG(), ReadF(), num=2000, batch=500)
    # Images in [0, 1] differ by 1 exactly where c and c' differ: half of 16 of the 3*8*16 pixels.
    expected_mse = 0.5 * 16 / (3 * 8 * 16)
    assert result["consistency_psnr"] == pytest.approx(10 * math.log10(1 / expected_mse), abs=0.1)


def test_metric_registry_runs_and_reports(tmp_path):
    assert "fp_bit_acc1k" in metric_main.list_metrics()
    out = metric_main.calc_metric("fp_bit_acc1k", metric_main.MetricOptions(G=PaintG(), F=ReadF()))
    assert out["num"] == 1000 and out["bit_acc"] == 1.0 and out["metric"] == "fp_bit_acc1k"
    metric_main.report_metric(out, tmp_path, "network-snapshot-000004.safetensors", kimg=4.0)
    metric_main.report_metric(out, tmp_path, "network-snapshot-000008.safetensors", kimg=8.0)
    lines = [json.loads(x) for x in (tmp_path / "metric-fp_bit_acc1k.jsonl").read_text().splitlines()]
    assert [x["kimg"] for x in lines] == [4.0, 8.0] and lines[1]["bit_acc"] == 1.0
    with pytest.raises(ValueError, match="unknown metric 'fid1k'.*fp_bit_acc1k"):
        metric_main.canonical_name("fid1k")


class _BlockDecoder(torch.nn.Module):
    """Reads bit i from the sign of pixel row i's mean (a decoder we can reason about)."""
    n_bits, img_resolution = 8, 32

    def forward(self, img):
        return img[:, :, :8, :].mean(dim=(1, 3))


class _PaintingG(torch.nn.Module):
    """A plain generator (no fingerprint input) that paints ``rows`` into image rows 0..7, or random rows."""
    z_dim, n_bits, img_resolution = 4, 0, 32

    def __init__(self, rows=None):
        super().__init__()
        self.rows = rows

    def forward(self, z, c, noise_mode="const"):
        assert c.shape == (z.shape[0], 0)
        img = torch.zeros(z.shape[0], 3, 32, 32)
        signs = (self.rows * 2 - 1).expand(z.shape[0], 8) if self.rows is not None else z.repeat(1, 2).sign()
        img[:, :, :8, :] = 0.5 * signs[:, None, :, None]
        return img


def test_transfer_metrics_reads_the_data_sets_fingerprint():
    fp = torch.tensor([1, 0, 1, 1, 0, 0, 1, 0.])
    carried = transfer_metrics(_PaintingG(fp), _BlockDecoder(), fp, num=64)
    assert carried == {"num": 64, "bit_acc": 1.0, "bit_acc_min": 1.0, "majority_bits_correct": 8, "bits": 8}
    lost = transfer_metrics(_PaintingG(), _BlockDecoder(), fp, num=400)
    assert abs(lost["bit_acc"] - 0.5) < 0.06 and lost["bit_acc_min"] < 0.3
    inverted = transfer_metrics(_PaintingG(1 - fp), _BlockDecoder(), fp, num=8)
    assert inverted["bit_acc"] == 0 and inverted["majority_bits_correct"] == 0
    with pytest.raises(ValueError, match="a fingerprint of 8 bits"):
        transfer_metrics(_PaintingG(fp), _BlockDecoder(), fp[:4])
    big = _PaintingG(fp)
    big.img_resolution = 64
    with pytest.raises(ValueError, match="64x64 images"):
        transfer_metrics(big, _BlockDecoder(), fp)


# -- registered metrics: bit_acc, uniqueness -------------------------------------------------------------

LEVEL = 128 / 127.5 - 1       # an 8-bit level


class FaintG(torch.nn.Module):
    """Writes the fingerprint as LEVEL +- 0.001: read from float images, lost by 8-bit quantisation."""
    z_dim, n_bits, img_resolution = 4, 16, 16

    def forward(self, z, c, noise_mode="const"):
        img = torch.zeros(z.shape[0], 3, 8, 16)
        img[:, 0, 0, :] = LEVEL + (c * 2 - 1) * 1e-3
        return img


class FaintF(torch.nn.Module):
    def forward(self, img):
        return torch.zeros(img.shape[0], 4), img[:, 0, 0, :] - (LEVEL + 2e-4)


class PaintBaked(BakedGenerator):
    """A stand-in per-user generator (no c input) painting its fixed bits like PaintG."""

    def __init__(self, bits):
        torch.nn.Module.__init__(self)
        self.z_dim, self.n_bits, self.img_resolution = 4, 0, 16
        self.n_bits = len(bits)
        self.bits = torch.tensor([float(b) for b in bits])

    def forward(self, z, *, noise_mode="random"):
        img = torch.zeros(z.shape[0], 3, 8, 16)
        img[:, 0, 0, :] = self.bits * 2 - 1
        return img


def test_bit_acc_metric_float_and_8bit():
    out = metric_main.calc_metric("bit_acc", metric_main.MetricOptions(G=PaintG(), F=ReadF(flip=4),
                                                                       extra={"num": 64}))
    assert out["num"] == 64 and out["n_bits"] == 16
    assert out["bit_acc"] == pytest.approx(0.75) and out["bit_acc_8bit"] == pytest.approx(0.75)
    assert out["p_value"] == pytest.approx(binomial_tail(12, 16))
    faint = metric_main.calc_metric("bit_acc", metric_main.MetricOptions(G=FaintG(), F=FaintF(), extra={"num": 400}))
    assert faint["bit_acc"] == 1.0 and abs(faint["bit_acc_8bit"] - 0.5) < 0.05   # 8-bit: every bit reads 0
    # A baked generator: its one fingerprint must be given.
    bits = "0110" * 4
    baked = metric_main.MetricOptions(G=PaintBaked(bits), F=ReadF(), extra={"num": 8, "fingerprint": bits})
    assert metric_main.calc_metric("bit_acc", baked)["bit_acc"] == 1.0
    baked.extra["fingerprint"] = "1" * 16
    assert metric_main.calc_metric("bit_acc", baked)["bit_acc"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="fingerprint is not stored"):
        metric_main.calc_metric("bit_acc", metric_main.MetricOptions(G=PaintBaked(bits), F=ReadF()))
    with pytest.raises(ValueError, match="decoder F"):
        metric_main.calc_metric("bit_acc", metric_main.MetricOptions(G=PaintG()))


def test_iter_samples_is_seeded_and_leaves_the_rng_alone():
    torch.manual_seed(5)
    before = torch.random.get_rng_state()
    a = [x for _, _, x in iter_samples(PaintG(), 10, seed=3, batch=4, noise_mode="random")]
    assert torch.equal(torch.random.get_rng_state(), before)
    b = [x for _, _, x in iter_samples(PaintG(), 10, seed=3, batch=4, noise_mode="random")]
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and [x.shape[0] for x in a] == [4, 4, 2]


@pytest.fixture
def stand_in_registry(tmp_path, monkeypatch):
    """A registry of 4 users whose 'generator files' hold their bits as text; load_network reads them back
    as PaintBaked stand-ins (files given relative to the registry's folder)."""
    rng = np.random.default_rng(0)
    bits = ["".join(map(str, rng.integers(0, 2, 16))) for _ in range(4)]
    rows = ["user,bits,file,file_sha256"]
    for i, b in enumerate(bits):
        (tmp_path / f"u{i}.safetensors").write_text(b)
        rows.append(f"u{i},{b},u{i}.safetensors,{sha256_file(tmp_path / f'u{i}.safetensors')}")
    (tmp_path / "reg.csv").write_text("\n".join(rows) + "\n")
    with Registry(tmp_path / "reg.sqlite") as reg:
        reg.import_csv(tmp_path / "reg.csv", check_distance=False)
    monkeypatch.chdir(tmp_path.parent)
    monkeypatch.setattr(fingerprint, "load_network",
                        lambda path, device="cpu", names=None: {"G": PaintBaked(Path(path).read_text())})
    return tmp_path / "reg.sqlite", bits


def test_uniqueness_known_answers(stand_in_registry):
    reg, bits = stand_in_registry
    opts = metric_main.MetricOptions(G=PaintG(), F=ReadF(), registry=str(reg), extra={"per_generator": 3})
    out = metric_main.calc_metric("uniqueness", opts)
    arr = np.array([[int(ch) for ch in b] for b in bits])
    pair = [int((arr[i] != arr[j]).sum()) for i in range(4) for j in range(i + 1, 4)]
    assert out["generators"] == 4 and out["exact_matches"] == 4 and out["bit_acc"] == 1.0
    assert out["collisions"] == 0 and out["hamming_min"] == min(pair) == out["registered_hamming_min"]
    assert out["hamming_mean"] == pytest.approx(np.mean(pair))
    # A decoder that gets the first 2 bits wrong: no exact match, same distances.
    wrong = metric_main.calc_metric("uniqueness", metric_main.MetricOptions(
        G=PaintG(), F=ReadF(flip=2), registry=str(reg), extra={"per_generator": 3}))
    assert wrong["exact_matches"] == 0 and wrong["bit_acc"] == pytest.approx(14 / 16)
    assert wrong["hamming_min"] == min(pair)

    class Constant(torch.nn.Module):               # decodes the same fingerprint from everything
        def forward(self, img):
            return torch.zeros(img.shape[0], 4), torch.ones(img.shape[0], 16)
    same = metric_main.calc_metric("uniqueness", metric_main.MetricOptions(
        G=PaintG(), F=Constant(), registry=str(reg), extra={"max_generators": 3}))
    assert same["generators"] == 3 and same["collisions"] == 3 and same["hamming_min"] == 0


def test_uniqueness_errors(stand_in_registry):
    reg, _ = stand_in_registry
    with pytest.raises(ValueError, match="needs the registry"):
        metric_main.calc_metric("uniqueness", metric_main.MetricOptions(G=PaintG(), F=ReadF()))
    with pytest.raises(ValueError, match="16-bit fingerprints, the decoder reads 8"):
        class F8(ReadF):
            n_bits = 8
        metric_main.calc_metric("uniqueness", metric_main.MetricOptions(G=PaintG(), F=F8(), registry=str(reg)))
    (reg.parent / "u1.safetensors").write_text("1" * 16)
    with pytest.raises(ValueError, match="not the file issued to u1"):
        metric_main.calc_metric("uniqueness", metric_main.MetricOptions(G=PaintG(), F=ReadF(), registry=str(reg)))
