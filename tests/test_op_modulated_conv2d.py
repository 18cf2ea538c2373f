"""modulated_conv2d: fused == non-fused, per-sample loop oracle, demodulation norm, gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.op_oracles import (
    conv2d_resample_release_np,
    modulated_weight_np,
    no_tf32,
    rand,
    requires_cuda,
    t64,
)
from torch_utils.ops.conv2d_resample import conv2d_resample
from torch_utils.ops.modulated_conv2d import modulate_weight, modulated_conv2d
from torch_utils.ops.upfirdn2d import setup_filter

TOL = {"rtol": 1e-11, "atol": 1e-11}


def _inputs(n=3, i=4, o=5, k=3, h=4, w=5, seed=0):
    x = rand((n, i, h, w), seed=seed)
    weight = rand((o, i, k, k), seed=seed + 1)
    styles = rand((n, i), seed=seed + 2, low=0.2, high=2.0) * np.where(rand((n, i), seed=seed + 3) > -0.3, 1, -1)
    return x, weight, styles


def _filter():
    return setup_filter([1, 3, 3, 1]).double()


@pytest.mark.parametrize("impl", ["transpose", "ref"])
@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("demodulate", [True, False])
def test_fused_equals_non_fused(demodulate, up, impl):
    x, weight, styles = _inputs(seed=up)
    args = (t64(x), t64(weight), t64(styles))
    kw = {"demodulate": demodulate, "up": up, "resample_filter": _filter(), "impl": impl}
    fused = modulated_conv2d(*args, fused=True, **kw)
    non_fused = modulated_conv2d(*args, fused=False, **kw)
    assert tuple(fused.shape) == (3, 5, 4 * up, 5 * up)
    torch.testing.assert_close(fused, non_fused, **TOL)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("k", [1, 3])
def test_matches_per_sample_loop_oracle(k, demodulate, up, fused):
    x, weight, styles = _inputs(n=2, i=3, o=2, k=k, seed=10 + k)
    f = _filter()
    y = modulated_conv2d(t64(x), t64(weight), t64(styles), demodulate=demodulate, up=up, resample_filter=f,
                         fused=fused)
    for s in range(x.shape[0]):
        ws = modulated_weight_np(weight, styles[s], demodulate)
        ref = conv2d_resample(t64(x[s:s + 1]), t64(ws), f=f, up=up, groups=1)
        torch.testing.assert_close(y[s:s + 1], ref, **TOL)


@pytest.mark.parametrize("up", [1, 2])
def test_matches_numpy_release_oracle(up):
    # Fully independent of the torch ops: numpy weight modulation + numpy release convolution.
    x, weight, styles = _inputs(n=2, i=2, o=2, k=3, h=3, w=4, seed=20)
    f = _filter()
    y = modulated_conv2d(t64(x), t64(weight), t64(styles), up=up, resample_filter=f).numpy()
    for s in range(x.shape[0]):
        ws = modulated_weight_np(weight, styles[s], demodulate=True)
        ref = conv2d_resample_release_np(x[s:s + 1], ws, f.numpy(), up=up)
        np.testing.assert_allclose(y[s:s + 1], ref, **TOL)


def test_modulate_weight_demodulated_norm_is_one():
    _, weight, styles = _inputs(n=4, i=3, o=6, k=3, seed=30)
    wn = modulate_weight(t64(weight), t64(styles), demodulate=True)
    assert tuple(wn.shape) == (4, 6, 3, 3, 3)
    norms = wn.square().sum(dim=[2, 3, 4])
    torch.testing.assert_close(norms, torch.ones(4, 6, dtype=torch.float64), rtol=1e-7, atol=1e-7)
    for s in range(4):
        np.testing.assert_allclose(wn[s].numpy(), modulated_weight_np(weight, styles[s], True), **TOL)


def test_modulate_weight_without_demodulation():
    _, weight, styles = _inputs(n=2, i=3, o=4, k=3, seed=31)
    wn = modulate_weight(t64(weight), t64(styles), demodulate=False)
    for s in range(2):
        np.testing.assert_allclose(wn[s].numpy(), modulated_weight_np(weight, styles[s], False), **TOL)


def test_demodulation_makes_output_invariant_to_style_scale():
    # Demodulation divides out any per-sample scale of the styles (up to eps).
    x, weight, styles = _inputs(n=2, seed=32)
    a = modulated_conv2d(t64(x), t64(weight), t64(styles))
    b = modulated_conv2d(t64(x), t64(weight), t64(styles * 7.5))
    torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-7)


def test_dtype_follows_input():
    x, weight, styles = _inputs(n=2, seed=33)
    y = modulated_conv2d(t64(x), torch.tensor(weight, dtype=torch.float32), torch.tensor(styles, dtype=torch.float32))
    assert y.dtype == torch.float64


def test_shape_errors():
    x = torch.zeros(2, 3, 4, 4)
    with pytest.raises(ValueError):
        modulated_conv2d(x, torch.zeros(4, 2, 3, 3), torch.ones(2, 3))  # weight in-channels
    with pytest.raises(ValueError):
        modulated_conv2d(x, torch.zeros(4, 3, 3, 3), torch.ones(2, 4))  # style width
    with pytest.raises(ValueError):
        modulated_conv2d(x, torch.zeros(4, 3, 3, 3), torch.ones(3, 3))  # style batch


# ----------------------------------------------------------------------------------------------
# gradients


@pytest.mark.parametrize(("fused", "demodulate", "up"), [
    (True, True, 1),
    (True, True, 2),
    (True, False, 1),
    (False, True, 1),
    (False, True, 2),
    (False, False, 2),
])
def test_gradcheck(fused, demodulate, up):
    x, weight, styles = _inputs(n=2, i=2, o=2, k=3, h=3, w=3, seed=40)
    args = (t64(x, True), t64(weight, True), t64(styles, True))
    f = _filter()

    def fn(x, weight, styles):
        return modulated_conv2d(x, weight, styles, demodulate=demodulate, up=up, resample_filter=f, fused=fused)

    assert torch.autograd.gradcheck(fn, args)
    assert torch.autograd.gradgradcheck(fn, args)


@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("demodulate", [True, False])
def test_fused_and_non_fused_gradients_agree(demodulate, up):
    x, weight, styles = _inputs(seed=50)
    f = _filter()
    g = t64(rand((3, 5, 4 * up, 5 * up), seed=51))
    grads = []
    for fused in [True, False]:
        args = (t64(x, True), t64(weight, True), t64(styles, True))
        y = modulated_conv2d(*args, demodulate=demodulate, up=up, resample_filter=f, fused=fused)
        grads.append(torch.autograd.grad(y, args, grad_outputs=g))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


# ----------------------------------------------------------------------------------------------
# CUDA


@requires_cuda
def test_modulated_conv2d_cuda_matches_cpu():
    x, weight, styles = (torch.tensor(a, dtype=torch.float32) for a in _inputs(seed=60))
    f = setup_filter([1, 3, 3, 1])
    with no_tf32():
        for fused in [True, False]:
            for up in [1, 2]:
                cpu = modulated_conv2d(x, weight, styles, up=up, resample_filter=f, fused=fused)
                gpu = modulated_conv2d(x.cuda(), weight.cuda(), styles.cuda(), up=up, resample_filter=f.cuda(),
                                       fused=fused)
                assert gpu.is_cuda
                torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-5, atol=1e-5)
