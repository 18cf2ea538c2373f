"""upfirdn2d / upsample2d / downsample2d / setup_filter against a numpy loop oracle."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.op_oracles import no_tf32, rand, requires_cuda, t64, upfirdn2d_np
from torch_utils.ops.upfirdn2d import downsample2d, setup_filter, upfirdn2d, upsample2d

# A non-square filter with no symmetry at all: any flip or transpose mistake changes the result.
F_ASYM = np.array([[1.0, -2.0, 0.5, 3.0],
                   [0.25, 4.0, -1.0, 2.0],
                   [-3.0, 0.75, 1.5, -0.5]])

# (x0, x1, y0, y1) quadruples: zero, symmetric, asymmetric, negative (crop) and mixed.
PADS = [(0, 0, 0, 0), (2, 2, 2, 2), (1, 3, 2, 0), (-1, 2, 3, -2)]


def _out_size(size: int, up: int, p0: int, p1: int, k: int, down: int) -> int:
    return (size * up + p0 + p1 - k) // down + 1


@pytest.mark.parametrize("flip_filter", [False, True])
@pytest.mark.parametrize("pad", PADS)
@pytest.mark.parametrize("down", [1, 2])
@pytest.mark.parametrize("up", [1, 2, 3])
def test_upfirdn2d_matches_oracle(up, down, pad, flip_filter):
    x = rand((2, 3, 5, 6), seed=up * 100 + down)
    gain = 1.7
    y = upfirdn2d(t64(x), t64(F_ASYM), up=up, down=down, padding=list(pad), flip_filter=flip_filter, gain=gain)
    ref = upfirdn2d_np(x, F_ASYM, up=(up, up), down=(down, down), pad=pad, flip_filter=flip_filter, gain=gain)
    x0, x1, y0, y1 = pad
    expected_shape = (2, 3, _out_size(5, up, y0, y1, 3, down), _out_size(6, up, x0, x1, 4, down))
    assert ref.shape == expected_shape
    assert tuple(y.shape) == expected_shape
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("up", "down", "pad"), [
    ((2, 1), (1, 1), (0, 1, 2, 3)),
    ((1, 3), (1, 1), (1, 1, -1, 2)),
    ((3, 2), (2, 1), (2, -1, 0, 1)),
    ((1, 1), (1, 2), (1, 2, 1, 2)),
    ((2, 3), (2, 2), (3, 0, 0, 3)),
])
def test_upfirdn2d_separate_xy_factors(up, down, pad):
    x = rand((1, 2, 4, 5), seed=7)
    y = upfirdn2d(t64(x), t64(F_ASYM), up=up, down=down, padding=pad)
    ref = upfirdn2d_np(x, F_ASYM, up=up, down=down, pad=pad)
    assert tuple(y.shape) == ref.shape
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("padding", "quad"), [
    (2, (2, 2, 2, 2)),
    ((1, 3), (1, 1, 3, 3)),        # a pair is (px, py)
    ([0, 2, -1, 1], (0, 2, -1, 1)),
])
def test_upfirdn2d_padding_forms(padding, quad):
    x = rand((1, 1, 5, 5), seed=3)
    y = upfirdn2d(t64(x), t64(F_ASYM), padding=padding)
    np.testing.assert_allclose(y.numpy(), upfirdn2d_np(x, F_ASYM, pad=quad), rtol=1e-12, atol=1e-12)


def test_upfirdn2d_impulse_convolution_vs_correlation():
    # A unit impulse convolved with [1, 2, 3] reproduces the filter; correlation reverses it.
    x = torch.zeros(1, 1, 1, 5, dtype=torch.float64)
    x[..., 2] = 1
    f = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    conv = upfirdn2d(x, f, padding=[1, 1, 0, 0])
    corr = upfirdn2d(x, f, padding=[1, 1, 0, 0], flip_filter=True)
    assert conv.flatten().tolist() == [0.0, 1.0, 2.0, 3.0, 0.0]
    assert corr.flatten().tolist() == [0.0, 3.0, 2.0, 1.0, 0.0]


def test_upfirdn2d_zero_insertion_and_decimation_by_hand():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]], dtype=torch.float64)
    up = upfirdn2d(x, None, up=2)
    assert up[0, 0].tolist() == [[1, 0, 2, 0], [0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0]]
    down = upfirdn2d(up, None, down=2)
    assert torch.equal(down, x)
    # f=None with no resampling is the identity.
    assert torch.equal(upfirdn2d(x, None), x)


def test_upfirdn2d_float32_filter_with_float64_input():
    x = rand((1, 2, 4, 4), seed=11)
    f = setup_filter([1, 3, 3, 1])
    y = upfirdn2d(t64(x), f, up=2, padding=2)
    assert y.dtype == torch.float64
    np.testing.assert_allclose(y.numpy(), upfirdn2d_np(x, f.double().numpy(), up=(2, 2), pad=(2,) * 4),
                               rtol=1e-6, atol=1e-7)


def test_upfirdn2d_errors():
    x = torch.zeros(1, 1, 4, 4)
    f = setup_filter([1, 1])
    with pytest.raises(ValueError):
        upfirdn2d(torch.zeros(1, 4, 4), f)
    with pytest.raises(ValueError):
        upfirdn2d(x, torch.ones(3))
    with pytest.raises(ValueError):
        upfirdn2d(x, f, up=0)
    with pytest.raises(ValueError):
        upfirdn2d(x, f, down=0)
    with pytest.raises(ValueError):
        upfirdn2d(x, f, padding=[1, 2, 3])


# ----------------------------------------------------------------------------------------------
# setup_filter


def test_setup_filter_outer_product_normalised():
    f = setup_filter([1, 3, 3, 1])
    assert f.dtype == torch.float32 and tuple(f.shape) == (4, 4)
    k = np.array([1.0, 3.0, 3.0, 1.0])
    np.testing.assert_allclose(f.numpy(), np.outer(k, k) / 64.0, rtol=1e-7)
    assert float(f.sum()) == pytest.approx(1.0, abs=1e-6)


def test_setup_filter_2d_and_unnormalised():
    g = np.array([[1.0, 2.0, 0.0], [4.0, 1.0, 2.0]])
    f = setup_filter(g)
    np.testing.assert_allclose(f.numpy(), g / g.sum(), rtol=1e-7)
    raw = setup_filter([1, 2], normalize=False)
    np.testing.assert_allclose(raw.numpy(), [[1, 2], [2, 4]])
    assert tuple(setup_filter(torch.tensor([1.0, 1.0])).shape) == (2, 2)


def test_setup_filter_errors():
    with pytest.raises(ValueError):
        setup_filter([])
    with pytest.raises(ValueError):
        setup_filter(np.ones((2, 2, 2)))


# ----------------------------------------------------------------------------------------------
# upsample2d / downsample2d


@pytest.mark.parametrize(("taps", "up"), [([1, 3, 3, 1], 2), ([1, 1], 2), ([1, 2, 1], 2), ([1, 1, 1], 3)])
def test_upsample2d_shape_and_release_padding(taps, up):
    f = setup_filter(taps).double()
    x = rand((2, 2, 5, 3), seed=5)
    y = upsample2d(t64(x), f, up=up, gain=1.5)
    assert tuple(y.shape) == (2, 2, 5 * up, 3 * up)
    # StyleGAN2 release upsample_2d: p = fw - up, pad0 = (p+1)//2 + up - 1, pad1 = p//2, gain * up^2.
    p = len(taps) - up
    pad = ((p + 1) // 2 + up - 1, p // 2) * 2
    ref = upfirdn2d_np(x, f.numpy(), up=(up, up), pad=pad, gain=1.5 * up * up)
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("taps", "down"), [([1, 3, 3, 1], 2), ([1, 1], 2), ([1, 2, 1], 2), ([1, 1, 1], 3)])
def test_downsample2d_shape_and_release_padding(taps, down):
    f = setup_filter(taps).double()
    x = rand((2, 2, 6, 12), seed=6)
    y = downsample2d(t64(x), f, down=down, gain=0.5)
    assert tuple(y.shape) == (2, 2, 6 // down, 12 // down)
    p = len(taps) - down
    pad = ((p + 1) // 2, p // 2) * 2
    ref = upfirdn2d_np(x, f.numpy(), down=(down, down), pad=pad, gain=0.5)
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("taps", [[1, 3, 3, 1], [1, 1]])
def test_upsample2d_constant_stays_constant(taps):
    # Every polyphase component of these filters sums to 1/up^2, so with the up^2 gain a
    # constant image stays constant (times gain) away from the zero-padded border.
    f = setup_filter(taps).double()
    x = torch.full((1, 2, 8, 8), 0.7, dtype=torch.float64)
    y = upsample2d(x, f)
    interior = y[:, :, 3:-3, 3:-3]
    torch.testing.assert_close(interior, torch.full_like(interior, 0.7), rtol=1e-12, atol=1e-12)
    assert float(interior.mean()) == pytest.approx(float(x.mean()), rel=1e-12)
    y3 = upsample2d(x, f, gain=3.0)
    torch.testing.assert_close(y3[:, :, 3:-3, 3:-3], torch.full_like(interior, 2.1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("taps", [[1, 3, 3, 1], [1, 1], [1, 2, 1]])
def test_downsample2d_constant_stays_constant(taps):
    f = setup_filter(taps).double()
    x = torch.full((1, 1, 12, 12), -1.3, dtype=torch.float64)
    y = downsample2d(x, f)
    interior = y[:, :, 1:-1, 1:-1]
    torch.testing.assert_close(interior, torch.full_like(interior, -1.3), rtol=1e-12, atol=1e-12)


def test_resampling_keeps_image_centred():
    # With a symmetric filter, up/down-sampling commutes with mirroring the image: no half-pixel
    # shift in either direction.
    f = setup_filter([1, 3, 3, 1]).double()
    x = t64(rand((1, 2, 6, 6), seed=9))
    flip = [2, 3]
    torch.testing.assert_close(upsample2d(x.flip(flip), f), upsample2d(x, f).flip(flip), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(downsample2d(x.flip(flip), f), downsample2d(x, f).flip(flip),
                               rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# gradients


@pytest.mark.parametrize(("up", "down", "pad", "flip_filter"), [
    (2, 1, (2, 1, 1, 2), False),
    (1, 2, (1, 1, 0, 2), False),
    (3, 2, (-1, 2, 2, -1), True),
    ((2, 1), (1, 2), (0, 1, 1, 0), False),
])
def test_upfirdn2d_gradcheck(up, down, pad, flip_filter):
    x = t64(rand((1, 2, 3, 3), seed=21), requires_grad=True)
    f = t64(F_ASYM[:2, :3], requires_grad=True)

    def fn(x, f):
        return upfirdn2d(x, f, up=up, down=down, padding=pad, flip_filter=flip_filter, gain=1.3)

    assert torch.autograd.gradcheck(fn, (x, f))
    assert torch.autograd.gradgradcheck(fn, (x, f))


def test_upsample_downsample_gradcheck():
    f = setup_filter([1, 3, 3, 1]).double()
    x = t64(rand((1, 1, 3, 4), seed=22), requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: upsample2d(x, f), (x,))
    assert torch.autograd.gradgradcheck(lambda x: downsample2d(x, f), (x,))


# ----------------------------------------------------------------------------------------------
# CUDA


@requires_cuda
def test_upfirdn2d_cuda_matches_cpu():
    x = torch.tensor(rand((2, 3, 7, 6), seed=31), dtype=torch.float32)
    f = torch.tensor(F_ASYM, dtype=torch.float32)
    with no_tf32():
        for up, down, pad in [(2, 1, (2, 1, 1, 2)), (1, 2, (1, 1, 0, 2)), (3, 2, (-1, 2, 2, -1))]:
            cpu = upfirdn2d(x, f, up=up, down=down, padding=pad, gain=1.3)
            gpu = upfirdn2d(x.cuda(), f.cuda(), up=up, down=down, padding=pad, gain=1.3)
            assert gpu.is_cuda
            torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-5, atol=1e-5)
        fs = setup_filter([1, 3, 3, 1])
        torch.testing.assert_close(upsample2d(x.cuda(), fs.cuda()).cpu(), upsample2d(x, fs), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(downsample2d(x.cuda(), fs).cpu(), downsample2d(x, fs), rtol=1e-5, atol=1e-5)


def test_numpy_integer_factors_and_padding_are_accepted():
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    f = setup_filter([1, 3, 3, 1]).double()
    a = upfirdn2d(x, f, up=np.int64(2), padding=np.int64(1))
    b = upfirdn2d(x, f, up=2, padding=1)
    assert torch.equal(a, b)


def test_centred_resampling_refuses_non_square_filters():
    f = torch.ones(3, 4) / 12
    with pytest.raises(ValueError, match="square"):
        upsample2d(torch.zeros(1, 1, 4, 4), f)
    with pytest.raises(ValueError, match="square"):
        downsample2d(torch.zeros(1, 1, 4, 4), f)
