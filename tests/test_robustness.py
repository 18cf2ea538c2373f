"""metrics/robustness.py: attacks against known answers, model attacks, both metrics end to end, the plot."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from attribution.detection import calibrate, calibration_path, save_calibration
from attribution.registry import Registry
from metrics import image_attacks as ia
from metrics import metric_main
from metrics import model_attacks as ma
from torch_utils.ops.hamming import pack_bits

# -- stand-in networks with known answers ----------------------------------------------------------
# 32 bits as a 4 x 8 grid of 8 x 4 blocks, each +-0.5 in [-1, 1] plus a little z-dependent colour: the
# decoder reads block means, so clean images decode perfectly and geometry changes move the blocks.

BITS, RES = 32, 32


class BlockBaked(torch.nn.Module):
    z_dim, img_resolution = 4, RES

    def __init__(self, c: torch.Tensor):
        super().__init__()
        grid = (c.reshape(4, 8) - 0.5).repeat_interleave(8, 0).repeat_interleave(4, 1)   # [32, 32], +-0.5
        self.pattern = torch.nn.Parameter(grid[None].repeat(3, 1, 1).clone(), requires_grad=False)
        self.colour = torch.nn.Parameter(torch.linspace(-1, 1, 12).reshape(3, 4), requires_grad=False)
        self.bias = torch.nn.Parameter(torch.zeros(3), requires_grad=False)

    def forward(self, z, noise_mode="const"):
        return self.pattern[None] + 0.05 * torch.tanh(z @ self.colour.T)[:, :, None, None] + self.bias[:, None, None]


class BlockG(torch.nn.Module):
    z_dim, n_bits, img_resolution = 4, BITS, RES

    def bake(self, c):
        return BlockBaked(torch.as_tensor(c, dtype=torch.float32).reshape(-1))

    def forward(self, z, c, noise_mode="const"):
        return torch.cat([self.bake(ci)(zi[None]) for zi, ci in zip(z, c)])


class BlockF(torch.nn.Module):
    img_resolution = RES

    def forward(self, img):
        means = img.mean(1).reshape(-1, 4, 8, 8, 4).mean((2, 4))           # [N, 4, 8]
        return torch.zeros(len(img), 4), 10 * means.reshape(-1, BITS)


def block_registry(path, users=3, seed=0):
    bits = np.random.default_rng(seed).integers(0, 2, (users, BITS))
    Registry(path).add_many([f"u{i}" for i in range(users)], pack_bits(bits), n_bits=BITS, check_distance=False)
    return bits


def stats(row):
    """A row without its attack and strength (rows of identity strengths must agree on everything else)."""
    return {k: v for k, v in row.items() if k not in ("attack", "strength")}


def images(n=2, c=3, res=RES, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, c, res, res), dtype=np.uint8))


# -- image attacks -----------------------------------------------------------------------------------

def test_every_attack_shape_dtype_range_and_determinism():
    x8, xf = images(), images().double() / 255
    gray = images(1, 1, 16)
    for name, attack in ia.IMAGE_ATTACKS.items():
        for s in sorted({attack.strengths[0], attack.strengths[-1]}):
            y = attack.fn(x8, s, np.random.default_rng(3))
            assert y.shape == x8.shape and y.dtype == torch.float32, (name, s)
            assert 0 <= float(y.min()) and float(y.max()) <= 1, (name, s)
            assert torch.equal(y, attack.fn(x8, s, np.random.default_rng(3))), (name, s)
            assert torch.equal(attack.fn(x8.numpy(), s, 3), attack.fn(x8, s, 3)), (name, s)   # numpy, int seed
            yf = attack.fn(xf, s, 3)
            assert yf.dtype == torch.float64 and yf.shape == xf.shape, (name, s)
            assert attack.fn(gray, s, 3).shape == gray.shape, (name, s)
    a, b = (ia.gaussian_noise(x8, 0.1, np.random.default_rng(k)) for k in (1, 2))
    assert not torch.equal(a, b)


def test_identity_strengths_are_exact_noops():
    x = images().float() / 255
    for name, attack in ia.IMAGE_ATTACKS.items():
        if attack.identity is not None:
            assert torch.equal(attack.fn(x, attack.identity, 0), x), name
    for res in (32, 48, 128):
        y = images(1, 3, res).float() / 255
        assert torch.equal(ia.center_crop(y, 128), y) and torch.equal(ia.gaussian_noise(y, 0.0, 5), y)
        assert torch.equal(ia.combined(y, 0), y) and torch.equal(ia.gaussian_blur(y, 1), y)
    assert torch.equal(ia.identity(images()), images().float() / 255)


def test_jpeg_100_is_near_identity_and_lower_quality_is_worse():
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
    smooth = torch.stack([xx, yy, (xx + yy) / 2])[None]
    smooth = (smooth * 255).round() / 255
    err = {q: float((ia.jpeg(smooth, q) - smooth).abs().mean()) for q in (100, 50, 10)}
    # Pillow's defaults keep 4:2:0 chroma subsampling even at quality 100: a few levels at most, under one on average.
    assert float((ia.jpeg(smooth, 100) - smooth).abs().max()) <= 8 / 255 and err[100] <= 1 / 255
    assert err[100] < err[50] < err[10]


def test_known_answers_of_the_geometry_and_colour_attacks():
    x = images().float() / 255
    assert torch.equal(ia.rotate(x, 90), torch.rot90(x, 1, dims=(2, 3)))           # counter-clockwise
    flat = torch.full((1, 3, 32, 32), 0.25)
    for y in (ia.center_crop(flat, 40), ia.gaussian_blur(flat, 45), ia.resize(flat, 0.1), ia.crop_area(flat, 0.1)):
        torch.testing.assert_close(y, flat, atol=1e-6, rtol=0)
    torch.testing.assert_close(ia.brightness(flat, 2), torch.full_like(flat, 128 / 255))   # 64 * 2 = 128
    assert ia.blur_kernel(45, 128) == (22, pytest.approx(7.1)) and ia.blur_kernel(45, 32) == (6, pytest.approx(1.775))
    assert ia.blur_kernel(3, 32) == (1, pytest.approx(0.2)) and ia.blur_kernel(0, 128) == (0, 0.0)
    # Crop s/128 keeps the centre: at 32 px, s = 64 is the centre 16 x 16 enlarged back (bicubic, as the detector).
    pil = Image.fromarray(x[0, 0, 8:24, 8:24].numpy()).resize((32, 32), Image.Resampling.BICUBIC)
    np.testing.assert_allclose(ia.center_crop(x, 64)[0, 0].numpy(), np.clip(np.asarray(pil), 0, 1), atol=1e-6)
    noisy = ia.gaussian_noise(torch.full((1, 3, 64, 64), 0.5), 0.1, 0)
    assert float(noisy.std()) == pytest.approx(0.1, rel=0.05)
    # Combined level k is the four attacks in order.
    lv = ia.COMBINED_LEVELS[4]
    assert (lv.crop, lv.blur, lv.jpeg, lv.noise) == (96, 9, 60, 0.08) and len(ia.COMBINED_LEVELS) == 10
    manual = ia.gaussian_noise(ia.jpeg(ia.gaussian_blur(ia.center_crop(x, 96), 9), 60), 0.08, 7)
    assert torch.equal(ia.combined(x, 4, 7), manual)
    text = ia.overlay_text(x, 0.25, 1)
    assert 0 < float((text != x).float().mean()) < 0.5
    with pytest.raises(ValueError, match="crop"):
        ia.center_crop(x, 0)
    with pytest.raises(ValueError, match="jpeg"):
        ia.jpeg(x, 101)


# -- model attacks -----------------------------------------------------------------------------------

SLIM = dict(n_bits=32, z_dim=32, w_dim=32, embed_hidden=32, channel_max=16)   # tiny32, narrower: fast on CPU


@pytest.fixture(scope="module")
def baked():
    from networks import build_networks
    torch.manual_seed(0)
    G = build_networks("tiny32", which=("G",), **SLIM)["G"]
    return G.bake(torch.randint(0, 2, (1, 32)).float()), G.bake(torch.randint(0, 2, (1, 32)).float())


def state_equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_model_attacks_at_strength_zero_are_exact_noops_and_leave_the_input(baked):
    a, b = baked
    before = {k: v.clone() for k, v in a.state_dict().items()}
    for name, attack in ma.MODEL_ATTACKS.items():
        if name != "collusion":
            assert state_equal(attack.fn(a, attack.identity, 0), a), name
            attack.fn(a, attack.strengths[-1], 0)
    assert all(torch.equal(before[k], v) for k, v in a.state_dict().items())
    for t in (0.0, 0.25, 0.5, 1.0):
        assert state_equal(ma.collude(a, a, t), a)                         # a user colluding with itself
    assert state_equal(ma.collude(a, b, 0.0), a) and state_equal(ma.collude(a, b, 1.0), b)
    key = "synthesis.b32.conv1.weight"
    mid = ma.collude(a, b, 0.5).state_dict()[key]
    torch.testing.assert_close(mid, (a.state_dict()[key] + b.state_dict()[key]) / 2)


def test_model_attacks_do_what_they_say(baked):
    a, _ = baked
    names = {n for n, _ in ma.weight_tensors(a)}
    assert "synthesis.b32.conv1.weight" in names and "synthesis.b32.conv1.bias" not in names
    q, p, w = ma.quantize_weights(a, 3), ma.prune_weights(a, 0.7), ma.weight_noise(a, 0.1, np.random.default_rng(0))
    for name, ref in a.state_dict().items():
        if name in names:
            assert q.state_dict()[name].unique().numel() <= 8
            assert q.state_dict()[name].min() == ref.min() and q.state_dict()[name].max() == ref.max()
            assert float((p.state_dict()[name] == 0).float().mean()) >= 0.7 - 1 / ref.numel()
            kept = p.state_dict()[name] != 0
            assert kept.sum() == 0 or ref.abs()[kept].min() >= ref.abs()[~kept].max()
            rel = float((w.state_dict()[name] - ref).std() / ref.std())
            assert rel == pytest.approx(0.1, rel=0.35)
        else:
            for m in (q, p, w):
                assert torch.equal(m.state_dict()[name], ref), name
    assert state_equal(ma.weight_noise(a, 0.1, np.random.default_rng(0)), w)


# -- the metrics on stand-ins with known answers --------------------------------------------------------

def test_metrics_known_answers_on_block_stand_ins(tmp_path):
    block_registry(tmp_path / "reg.sqlite")
    opts = metric_main.MetricOptions(G=BlockG(), F=BlockF(), registry=str(tmp_path / "reg.sqlite"), seed=1, extra={
        "users": 3, "images_per_user": 2, "attacks": ["none", "crop", "noise", "rotate", "comb"],
        "strengths": {"crop": [128, 32], "noise": [0.0, 0.5], "rotate": [90]}})
    res = metric_main.calc_metric("robustness_image", opts)
    rows = {(r["attack"], r["strength"]): r for r in res["rows"]}
    assert res["null_model"] == "fair-coin" and res["num_images"] == 6 and res["registry_size"] == 3
    assert res["bit_acc_clean"] == 1.0 and res["tpr_clean"] == 1.0 and res["attribution_acc_clean"] == 1.0
    for key in (("crop", 128), ("noise", 0.0)):
        assert stats(rows[key]) == stats(rows[("none", 0)])
    assert rows[("rotate", 90)]["bit_acc"] < 0.9 and rows[("crop", 32)]["bit_acc"] < 0.9
    assert rows[("noise", 0.5)]["bit_acc"] > 0.9                     # block means average the noise out
    assert json.loads(json.dumps(res)) == res

    model = metric_main.calc_metric("robustness_model", metric_main.MetricOptions(
        G=BlockG(), F=BlockF(), registry=str(tmp_path / "reg.sqlite"), extra={
            "users": 2, "images_per_user": 2, "strengths": {"weight_noise": [0.0, 0.05], "quantize": [0, 2],
                                                           "prune": [0.0, 0.9], "collusion": [0.0, 0.5, 1.0]}}))
    rows = {(r["attack"], r["strength"]): r for r in model["rows"]}
    clean = rows[("weight_noise", 0.0)]
    assert clean["bit_acc"] == 1.0 and clean["attribution_acc"] == 1.0 and model["users"] == ["u0", "u1"]
    assert stats(rows[("quantize", 0)]) == stats(clean) and stats(rows[("prune", 0.0)]) == stats(clean)
    assert rows[("quantize", 2)]["bit_acc"] == 1.0                   # a two-valued pattern survives 2 bits
    assert rows[("prune", 0.9)]["bit_acc"] < 0.9
    assert rows[("collusion", 0.0)]["frac_a"] == 1.0 and rows[("collusion", 1.0)]["frac_b"] == 1.0
    half = rows[("collusion", 0.5)]
    assert math.isclose(half["frac_a"] + half["frac_b"] + half["frac_other"] + half["frac_nobody"], 1.0)
    assert half["bit_acc_a"] < 1.0 and half["bit_acc_b"] < 1.0


def test_without_a_registry_only_bit_accuracy():
    res = metric_main.calc_metric("robustness_image", metric_main.MetricOptions(
        G=BlockG(), F=BlockF(), extra={"num_images": 3, "attacks": ["none", "blur"], "strengths": {"blur": [0, 45]}}))
    assert res["bit_acc_clean"] == 1.0 and res["tpr_clean"] is None and res["null_model"] is None
    assert all(r["tpr"] is None and r["attribution_acc"] is None for r in res["rows"])
    model = metric_main.calc_metric("robustness_model", metric_main.MetricOptions(
        G=BlockG(), F=BlockF(), extra={"users": 2, "images_per_user": 1, "attacks": ["prune", "collusion"],
                                       "strengths": {"prune": [0.0], "collusion": [0.0]}}))
    assert model["rows"][0]["bit_acc"] == 1.0 and model["rows"][1]["bit_acc_a"] == 1.0
    assert model["rows"][1]["frac_a"] is None
    with pytest.raises(ValueError, match="unknown attack"):
        metric_main.calc_metric("robustness_image", metric_main.MetricOptions(G=BlockG(), F=BlockF(),
                                                                              extra={"attacks": ["crop", "nope"]}))


# -- end to end: a tiny snapshot, users issued by generate.py, both metrics, the JSONL and the plot -------

def test_end_to_end_on_a_tiny_registry(tmp_path):
    import generate
    from fig import plot_robustness
    from networks import build_networks, load_network, save_network

    torch.manual_seed(0)
    nets = build_networks("tiny32", **SLIM)
    snap = save_network(tmp_path / "snap.safetensors", G=nets["G"], G_ema=nets["G"], D=nets["D"], F=nets["F"])
    r = CliRunner().invoke(generate.cli, ["issue", "--network", str(snap), "--registry", str(tmp_path / "reg.sqlite"),
                                          "--users", "alice,bob", "--outdir", str(tmp_path / "issued")])
    assert r.exit_code == 0, r.output
    loaded = load_network(snap, names=["G_ema", "F"])
    logits = np.random.default_rng(0).normal(size=(60, 32))
    save_calibration(calibrate(logits, "unchecked"), calibration_path(snap))
    run = tmp_path / "run"
    run.mkdir()
    common = dict(G=loaded["G_ema"], F=loaded["F"], registry=str(tmp_path / "reg.sqlite"))
    res = metric_main.calc_metric("robustness_image", metric_main.MetricOptions(**common, extra={
        "users": 2, "images_per_user": 1, "decoder_file": str(snap), "generators": "files",
        "attacks": ["none", "crop", "jpeg", "noise", "brightness"],
        "strengths": {"crop": [128, 64], "jpeg": [50], "noise": [0.0, 0.2], "brightness": [1.0]}}))
    assert res["null_model"] == "calibrated" and res["calibration"] == str(calibration_path(snap))
    assert res["generators"] == "registry file" and res["num_images"] == 2 and len(res["rows"]) == 7
    rows = {(r["attack"], r["strength"]): r for r in res["rows"]}
    for key in (("crop", 128), ("noise", 0.0), ("brightness", 1.0)):
        assert stats(rows[key]) == stats(rows[("none", 0)])
    for row in res["rows"]:
        assert 0 <= row["bit_acc"] <= 1 and 0 <= row["tpr"] <= 1 and row["n"] == 2
    metric_main.report_metric(res, run, snapshot=str(snap))
    model = metric_main.calc_metric("robustness_model", metric_main.MetricOptions(**common, extra={
        "users": 2, "images_per_user": 1, "strengths": {"weight_noise": [0.0, 0.1], "quantize": [0, 4],
                                                       "prune": [0.5], "collusion": [0.5]}}))
    assert model["generators"] == "baked from G" and model["null_model"] == "fair-coin"
    rows = {(r["attack"], r["strength"]): r for r in model["rows"]}
    assert stats(rows[("quantize", 0)]) == stats(rows[("weight_noise", 0.0)])
    assert rows[("collusion", 0.5)]["pairs"] == 1
    metric_main.report_metric(model, run)
    line = json.loads((run / "metric-robustness_image.jsonl").read_text().splitlines()[-1])
    assert line["metric"] == "robustness_image" and line["snapshot"] == str(snap) and len(line["rows"]) == 7
    for name in ("image", "model"):
        out = tmp_path / f"{name}.png"
        r = CliRunner().invoke(plot_robustness.main, ["--jsonl", str(run / f"metric-robustness_{name}.jsonl"),
                                                      "--out", str(out)])
        assert r.exit_code == 0, r.output
        assert Image.open(out).size[0] > 100
