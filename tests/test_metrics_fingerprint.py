"""metrics/fingerprint.py on stand-in networks whose answers are known."""

import json
import math

import pytest
import torch

from metrics import metric_main
from metrics.fingerprint import fingerprint_metrics, transfer_metrics


class PaintG(torch.nn.Module):
    """Writes the fingerprint into the first row of channel 0 (as -1/+1); everything else is 0."""

    z_dim, c_dim = 4, 16

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
    fingerprint_bits, img_resolution = 8, 32

    def forward(self, img):
        return img[:, :, :8, :].mean(dim=(1, 3))


class _PaintingG(torch.nn.Module):
    """A plain generator (no fingerprint input) that paints ``rows`` into image rows 0..7, or random rows."""
    z_dim, c_dim, img_resolution = 4, 0, 32

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
