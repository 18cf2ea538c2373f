"""Low-level ops: FIR resampling, bias + activation, modulated convolution.

Every op here is written in plain PyTorch (no custom kernels, no private ``torch._C``
APIs), so it runs unchanged on CPU and CUDA and is differentiable to any order.
"""

from torch_utils.ops.bias_act import ACTIVATIONS, bias_act
from torch_utils.ops.conv2d_resample import conv2d_resample
from torch_utils.ops.modulated_conv2d import modulated_conv2d
from torch_utils.ops.upfirdn2d import downsample2d, setup_filter, upfirdn2d, upsample2d

__all__ = [
    "ACTIVATIONS",
    "bias_act",
    "conv2d_resample",
    "downsample2d",
    "modulated_conv2d",
    "setup_filter",
    "upfirdn2d",
    "upsample2d",
]
