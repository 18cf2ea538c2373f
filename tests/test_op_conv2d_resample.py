"""conv2d_resample: both up-sampling paths agree, and all modes match numpy loop oracles."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.op_oracles import (
    conv2d_resample_release_np,
    conv2d_up_zero_insert_np,
    no_tf32,
    rand,
    requires_cuda,
    t64,
)
from torch_utils.ops.conv2d_resample import conv2d_resample
from torch_utils.ops.upfirdn2d import setup_filter

TOL = {"rtol": 1e-11, "atol": 1e-11}


def _filter(taps) -> torch.Tensor:
    return setup_filter(taps).double()


def _inputs(n, groups, i, o, k, h, w, seed):
    x = rand((n, groups * i, h, w), seed=seed)
    wt = rand((groups * o, i, k, k), seed=seed + 1)
    return x, wt


@pytest.mark.parametrize("groups", [1, 2, 3])
@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("taps", [[1, 3, 3, 1], [1, 1], [1, 2, 1]])
def test_up_transpose_equals_ref(taps, k, groups):
    x, w = _inputs(2, groups, 2, 3, k, 5, 4, seed=k + 10 * groups)
    f = _filter(taps)
    a = conv2d_resample(t64(x), t64(w), f=f, up=2, groups=groups, impl="transpose")
    b = conv2d_resample(t64(x), t64(w), f=f, up=2, groups=groups, impl="ref")
    assert tuple(a.shape) == (2, groups * 3, 10, 8)
    torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("impl", ["transpose", "ref"])
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("taps", [[1, 3, 3, 1], [1, 2, 1]])
def test_up_matches_oracles(taps, k, groups, impl):
    x, w = _inputs(2, groups, 2, 2, k, 4, 3, seed=20 + k)
    f = _filter(taps)
    y = conv2d_resample(t64(x), t64(w), f=f, up=2, groups=groups, impl=impl).numpy()
    # The release's definition (transposed conv + FIR) ...
    release = conv2d_resample_release_np(x, w, f.numpy(), up=2, groups=groups)
    # ... and zero insertion + FIR + 'valid' correlation with the padding stated in the code.
    zero_insert = conv2d_up_zero_insert_np(x, w, f.numpy(), groups=groups)
    assert y.shape == release.shape == zero_insert.shape == (2, 2 * groups, 8, 6)
    np.testing.assert_allclose(y, release, **TOL)
    np.testing.assert_allclose(y, zero_insert, **TOL)


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("taps", [[1, 3, 3, 1], [1, 1], [1, 2, 1]])
def test_down_matches_oracle(taps, k, groups):
    x, w = _inputs(2, groups, 2, 3, k, 6, 8, seed=30 + k)
    f = _filter(taps)
    y = conv2d_resample(t64(x), t64(w), f=f, down=2, groups=groups).numpy()
    ref = conv2d_resample_release_np(x, w, f.numpy(), down=2, groups=groups)
    assert y.shape == ref.shape == (2, 3 * groups, 3, 4)
    np.testing.assert_allclose(y, ref, **TOL)


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("with_filter", [False, True])
def test_no_resampling_is_same_correlation(k, groups, with_filter):
    x, w = _inputs(2, groups, 3, 2, k, 5, 6, seed=40 + k)
    f = _filter([1, 3, 3, 1]) if with_filter else None  # ignored without resampling
    y = conv2d_resample(t64(x), t64(w), f=f, groups=groups).numpy()
    ref = conv2d_resample_release_np(x, w, None, groups=groups)
    assert y.shape == ref.shape == (2, 2 * groups, 5, 6)
    np.testing.assert_allclose(y, ref, **TOL)


def test_conv_is_correlation_not_convolution():
    # One input impulse through a 3x3 kernel in 'same' mode shows the kernel rotated by 180
    # degrees (that is what correlation does); a convolution would show it as is.
    x = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    x[0, 0, 1, 1] = 1
    w = torch.arange(1.0, 10.0, dtype=torch.float64).reshape(1, 1, 3, 3)
    y = conv2d_resample(x, w)
    torch.testing.assert_close(y, w.flip([2, 3]), rtol=0, atol=0)


def test_up_down_keep_symmetric_images_symmetric():
    # Symmetric kernel + symmetric filter: mirroring commutes with the op (no half-pixel shift).
    f = _filter([1, 3, 3, 1])
    w0 = rand((2, 2, 3, 3), seed=50)
    w = t64(w0 + w0[:, :, ::-1, ::-1])
    x = t64(rand((1, 2, 4, 4), seed=51))
    for kwargs in [{"up": 2}, {"up": 2, "impl": "ref"}, {"down": 2}, {}]:
        a = conv2d_resample(x.flip([2, 3]), w, f=f, **kwargs)
        b = conv2d_resample(x, w, f=f, **kwargs).flip([2, 3])
        torch.testing.assert_close(a, b, **TOL)


def test_weight_is_cast_to_input_dtype():
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    w = torch.randn(3, 2, 3, 3, dtype=torch.float32, generator=torch.Generator().manual_seed(1))
    y = conv2d_resample(x, w, f=setup_filter([1, 3, 3, 1]), up=2)
    assert y.dtype == torch.float64


def test_errors():
    x = torch.zeros(1, 2, 4, 4)
    w = torch.zeros(2, 2, 3, 3)
    f = setup_filter([1, 3, 3, 1])
    with pytest.raises(ValueError):
        conv2d_resample(x, w, f, up=3)
    with pytest.raises(ValueError):
        conv2d_resample(x, w, f, down=4)
    with pytest.raises(ValueError):
        conv2d_resample(x, w, f, up=2, down=2)
    with pytest.raises(ValueError):
        conv2d_resample(x, w, f, up=2, impl="cuda")
    with pytest.raises(ValueError):
        conv2d_resample(x, torch.zeros(2, 2, 2, 2), f)  # even kernel
    with pytest.raises(ValueError):
        conv2d_resample(x, torch.zeros(2, 2, 3, 1), f)  # non-square kernel
    with pytest.raises(ValueError):
        conv2d_resample(x, w, None, up=2)
    with pytest.raises(ValueError):
        conv2d_resample(x, w, None, down=2)


# ----------------------------------------------------------------------------------------------
# gradients


@pytest.mark.parametrize(("up", "down", "impl", "groups"), [
    (2, 1, "transpose", 1),
    (2, 1, "ref", 1),
    (2, 1, "transpose", 2),
    (1, 2, "transpose", 1),
    (1, 2, "transpose", 2),
    (1, 1, "transpose", 1),
])
def test_gradcheck(up, down, impl, groups):
    f = _filter([1, 3, 3, 1])
    x = t64(rand((1, 2 * groups, 4, 4), seed=60), requires_grad=True)
    w = t64(rand((2 * groups, 2, 3, 3), seed=61), requires_grad=True)

    def fn(x, w):
        return conv2d_resample(x, w, f=f, up=up, down=down, groups=groups, impl=impl)

    assert torch.autograd.gradcheck(fn, (x, w))
    assert torch.autograd.gradgradcheck(fn, (x, w))


def test_transpose_and_ref_gradients_agree():
    f = _filter([1, 3, 3, 1])
    x = t64(rand((2, 4, 4, 3), seed=62), requires_grad=True)
    w = t64(rand((6, 2, 3, 3), seed=63), requires_grad=True)
    g = t64(rand((2, 6, 8, 6), seed=64))
    grads = []
    for impl in ["transpose", "ref"]:
        y = conv2d_resample(x, w, f=f, up=2, groups=2, impl=impl)
        grads.append(torch.autograd.grad(y, (x, w), grad_outputs=g))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, **TOL)


# ----------------------------------------------------------------------------------------------
# CUDA


@requires_cuda
def test_conv2d_resample_cuda_matches_cpu():
    x = torch.tensor(rand((2, 4, 6, 6), seed=70), dtype=torch.float32)
    w = torch.tensor(rand((6, 2, 3, 3), seed=71), dtype=torch.float32)
    f = setup_filter([1, 3, 3, 1])
    with no_tf32():
        for kwargs in [{"up": 2}, {"up": 2, "impl": "ref"}, {"down": 2}, {}]:
            cpu = conv2d_resample(x, w, f=f, groups=2, **kwargs)
            gpu = conv2d_resample(x.cuda(), w.cuda(), f=f.cuda(), groups=2, **kwargs)
            assert gpu.is_cuda
            torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-5, atol=1e-5)
