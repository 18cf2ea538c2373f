"""bias_act against plain formulas for every activation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.op_oracles import rand, requires_cuda, t64
from torch_utils.ops.bias_act import ACTIVATIONS, bias_act

SQRT2 = math.sqrt(2.0)

# name -> (formula(x, alpha), default alpha, default gain), written from the definitions.
FORMULAS = {
    "linear": (lambda x, a: x, 0.0, 1.0),
    "relu": (lambda x, a: np.maximum(x, 0.0), 0.0, SQRT2),
    "lrelu": (lambda x, a: np.where(x >= 0, x, a * x), 0.2, SQRT2),
    "tanh": (lambda x, a: np.tanh(x), 0.0, 1.0),
    "sigmoid": (lambda x, a: 1.0 / (1.0 + np.exp(-x)), 0.0, 1.0),
}

ACTS = sorted(ACTIVATIONS)


def _away_from_zero(shape, seed, margin=0.1):
    """Values in ±[margin, 1.5]: keeps relu / lrelu kinks away from the finite differences."""
    rng = np.random.default_rng(seed)
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(margin, 1.5, size=shape)


def test_every_activation_has_a_formula():
    assert set(ACTIVATIONS) == set(FORMULAS)


@pytest.mark.parametrize("act", ACTS)
def test_defaults(act):
    formula, alpha, gain = FORMULAS[act]
    assert ACTIVATIONS[act].default_alpha == pytest.approx(alpha)
    assert ACTIVATIONS[act].default_gain == pytest.approx(gain)
    x = rand((2, 3, 4, 5), seed=1, low=-3, high=3)
    b = rand((3,), seed=2)
    y = bias_act(t64(x), t64(b), act=act)
    ref = formula(x + b[None, :, None, None], alpha) * gain
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("act", ACTS)
def test_custom_alpha_and_gain(act):
    formula, _, _ = FORMULAS[act]
    x = rand((3, 4), seed=3, low=-2, high=2)
    b = rand((4,), seed=4)
    y = bias_act(t64(x), t64(b), act=act, alpha=0.37, gain=0.8)
    np.testing.assert_allclose(y.numpy(), formula(x + b, 0.37) * 0.8, rtol=1e-12, atol=1e-12)


def test_lrelu_by_hand():
    x = torch.tensor([[-2.0, -0.5, 0.0, 1.0, 3.0]], dtype=torch.float64)
    y = bias_act(x, act="lrelu")
    expected = torch.tensor([[-0.4, -0.1, 0.0, 1.0, 3.0]], dtype=torch.float64) * SQRT2
    torch.testing.assert_close(y, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("act", ACTS)
def test_no_bias(act):
    formula, alpha, gain = FORMULAS[act]
    x = rand((2, 3, 2, 2), seed=5, low=-2, high=2)
    np.testing.assert_allclose(bias_act(t64(x), act=act).numpy(), formula(x, alpha) * gain, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("act", ["linear", "lrelu", "tanh"])
def test_clamp(act):
    formula, alpha, gain = FORMULAS[act]
    x = rand((2, 6, 3), seed=6, low=-4, high=4)
    b = rand((6,), seed=7)
    y = bias_act(t64(x), t64(b), act=act, clamp=0.5)
    ref = np.clip(formula(x + b[None, :, None], alpha) * gain, -0.5, 0.5)
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-12, atol=1e-12)
    assert float(y.abs().max()) <= 0.5
    # The clamp actually bit: some values were outside ±0.5 before it.
    assert np.abs(formula(x + b[None, :, None], alpha) * gain).max() > 0.5
    # clamp=0 squashes everything to 0; clamp=None leaves values alone.
    assert float(bias_act(t64(x), t64(b), act=act, clamp=0).abs().max()) == 0.0
    unclamped = bias_act(t64(x), t64(b), act=act, clamp=None)
    np.testing.assert_allclose(unclamped.numpy(), formula(x + b[None, :, None], alpha) * gain, rtol=1e-12)


@pytest.mark.parametrize(("shape", "dim"), [((5, 3, 2), 0), ((2, 3, 4, 5), 2), ((2, 3, 4, 5), 3), ((2, 3, 4), -1),
                                            ((4, 7), 1)])
def test_bias_along_other_dims(shape, dim):
    x = rand(shape, seed=8, low=-2, high=2)
    b = rand((shape[dim],), seed=9)
    bshape = [1] * len(shape)
    bshape[dim] = -1
    y = bias_act(t64(x), t64(b), dim=dim, act="lrelu")
    ref = FORMULAS["lrelu"][0](x + b.reshape(bshape), 0.2) * SQRT2
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-12, atol=1e-12)


def test_float32_input_with_float64_bias_keeps_input_dtype():
    x = torch.randn(2, 3, generator=torch.Generator().manual_seed(0))
    b = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)
    y = bias_act(x, b, act="tanh")
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, torch.tanh(x + b.float()))


def test_bias_shape_errors():
    x = torch.zeros(2, 3, 4, 4)
    with pytest.raises(ValueError):
        bias_act(x, torch.zeros(4))  # dim 1 has 3 channels
    with pytest.raises(ValueError):
        bias_act(x, torch.zeros(1, 3))  # not 1-D
    with pytest.raises(ValueError):
        bias_act(x, torch.zeros(3), dim=2)


def test_unknown_activation():
    with pytest.raises(ValueError, match="swish"):
        bias_act(torch.zeros(1, 2), act="swish")


# ----------------------------------------------------------------------------------------------
# gradients


@pytest.mark.parametrize("act", ACTS)
def test_gradcheck(act):
    x = t64(_away_from_zero((2, 3, 2), seed=10), requires_grad=True)
    b = t64(rand((3,), seed=11, low=-0.05, high=0.05), requires_grad=True)  # |x + b| >= 0.05

    def fn(x, b):
        return bias_act(x, b, act=act, alpha=0.3, gain=1.4)

    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


def test_gradcheck_clamp_and_dim():
    # Values stay away from both the lrelu kink (0) and the clamp edges (±0.9).
    x = t64(np.array([[-2.0, -0.5, 0.3, 1.6], [0.2, 2.5, -0.7, -1.2], [0.5, -0.25, 1.1, 0.45]]), requires_grad=True)
    b = t64(np.array([0.02, -0.03, 0.01, 0.04]), requires_grad=True)

    def fn(x, b):
        return bias_act(x, b, dim=1, act="lrelu", clamp=0.9)

    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


# ----------------------------------------------------------------------------------------------
# CUDA


@requires_cuda
def test_bias_act_cuda_matches_cpu():
    x = torch.tensor(rand((2, 5, 3, 3), seed=12, low=-3, high=3), dtype=torch.float32)
    b = torch.tensor(rand((5,), seed=13), dtype=torch.float32)
    for act in ACTS:
        cpu = bias_act(x, b, act=act, clamp=1.5)
        gpu = bias_act(x.cuda(), b.cuda(), act=act, clamp=1.5)
        assert gpu.is_cuda
        torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-6, atol=1e-6)


def test_negative_clamp_is_an_error():
    with pytest.raises(ValueError, match="clamp"):
        bias_act(torch.zeros(2, 3), clamp=-1.0)
