"""metrics/fingerprint.py on stand-in networks whose answers are known."""

import math

import pytest
import torch

from metrics.fingerprint import SNAPSHOT_METRICS, fingerprint_metrics


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


def test_snapshot_metric_registry():
    assert set(SNAPSHOT_METRICS) == {"fp_bit_acc1k"}
    out = SNAPSHOT_METRICS["fp_bit_acc1k"](PaintG(), ReadF(), 0, "cpu")
    assert out["num"] == 1000 and out["bit_acc"] == 1.0
