"""Fingerprinting a standard StyleGAN2 (``networks.stylegan2_ada``), and baking it back to a plain one.

``SG2FingerprintedGenerator`` is an ``SG2Generator`` (same ``mapping`` and ``synthesis`` modules, same
parameter names) plus a ``fingerprint`` module: an embedding network E of the fingerprint c (n bits; the
one of ``networks.stylegan2``) and, for every style-modulated layer l (``b4.conv1``, ``b4.torgb``, ...), a
dense layer A_l from E(c) to that layer's input channels. The layer's weight is modulated per input channel
by the fingerprint on top of the style modulation::

    W'_l = W_l * s_l(w) * t_l(c),   s_l = affine_l(w),   t_l = A_l(E(c))     (then demodulation, as before)

A_l's weight starts at zero and its bias at one (stored with the +1, as NVlabs stores the style affine's
bias), so t_l = 0 * E(c) + 1 is exactly 1 for every c: until training moves A_l, the fingerprinted generator
computes bit for bit what the imported generator computes. E starts random (and receives gradients once A_l
has moved). Fine-tuning chooses what trains with ``parameter_group``: ``embedding`` (E and the A_l),
``affine`` (also the style affines of the synthesis layers) or ``all``.

Baking folds t_l(c) of one fingerprint into the stored weights, ``weight[:, i] *= t_l[i]`` (it commutes with
the run-time flip of the up-sampling convs and with demodulation), and gives back a plain ``SG2Generator``
whose ``state_dict()`` has the NVlabs names and shapes; ``interop.sg2ada_state_dict.export_state_dicts`` (``legacy.py
--source user.safetensors --dest user.pt``) writes one for ``G.load_state_dict(torch.load(path, weights_only=True))``
in NVlabs' code base.
"""

from __future__ import annotations

import torch
from torch import nn

from networks.layers import FullyConnectedLayer
from networks.stylegan2 import EmbeddingNetwork
from networks.stylegan2_ada import MappingNetwork, SG2Generator, SynthesisNetwork
from torch_utils.bits import one_fingerprint
from torch_utils.misc import empty_module

# What fine-tuning may train; each group contains the previous ones.
PARAMETER_GROUPS = ("embedding", "affine", "all")


class FingerprintModulation(nn.Module):
    """c [N, n_bits] -> per-layer, per-input-channel scales ``{layer name: t_l [N, in_channels]}``."""

    def __init__(self, layers: list[tuple[str, int]], n_bits: int, embed_dim: int, embed_layers: int,
                 embed_hidden: int, embed_lr_multiplier: float, c_encoding: str):
        super().__init__()
        self.n_bits = n_bits
        self.embedding = EmbeddingNetwork(n_bits, embed_dim, embed_layers, embed_hidden, embed_lr_multiplier,
                                          c_encoding=c_encoding)
        # affine["b8"]["conv0"] modulates synthesis.b8.conv0: state-dict keys fingerprint.affine.b8.conv0.weight.
        self.affine = nn.ModuleDict()
        for name, in_channels in layers:
            block, layer = name.split(".")
            if block not in self.affine:
                self.affine[block] = nn.ModuleDict()
            fc = FullyConnectedLayer(embed_dim, in_channels)
            fc.weight = nn.Parameter(torch.zeros(in_channels, embed_dim))   # t = 0 * E(c) + 1: the identity
            fc.bias = nn.Parameter(torch.ones(in_channels))
            self.affine[block][layer] = fc
        self.layer_names = [name for name, _ in layers]

    def forward(self, c: torch.Tensor) -> dict[str, torch.Tensor]:
        e = self.embedding(c)
        return {name: self.affine[name.split(".")[0]][name.split(".")[1]](e) for name in self.layer_names}


class SG2FingerprintedGenerator(nn.Module):
    """G(z, c): a standard StyleGAN2 whose synthesis weights are modulated by the fingerprint c (n_bits)."""

    def __init__(self,
                 z_dim: int = 512,
                 w_dim: int = 512,
                 img_resolution: int = 256,
                 img_channels: int = 3,
                 mapping_layers: int = 8,
                 mapping_hidden: int | None = None,
                 mapping_lr_multiplier: float = 0.01,
                 channel_base: int = 32768,
                 channel_max: int = 512,
                 conv_clamp: float | None = None,
                 n_bits: int = 128,                       # Fingerprint bits.
                 embed_dim: int | None = None,            # Width of E(c) (None: w_dim).
                 embed_layers: int = 8,                   # Depth of E.
                 embed_hidden: int = 512,                 # Width of E's hidden layers.
                 embed_lr_multiplier: float = 0.01,       # E's learning-rate multiplier.
                 c_encoding: str = "raw"):                # How c enters E: 'raw' 0/1 or 'pm1' (2c - 1).
        super().__init__()
        if n_bits < 1:
            raise ValueError(f"a fingerprinted generator needs n_bits >= 1, got {n_bits}")
        self.plain_kwargs = dict(z_dim=z_dim, w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                 mapping_layers=mapping_layers, mapping_hidden=mapping_hidden,
                                 mapping_lr_multiplier=mapping_lr_multiplier, channel_base=channel_base,
                                 channel_max=channel_max, conv_clamp=conv_clamp)
        self.init_kwargs = dict(self.plain_kwargs, n_bits=n_bits, embed_dim=embed_dim, embed_layers=embed_layers,
                                embed_hidden=embed_hidden, embed_lr_multiplier=embed_lr_multiplier,
                                c_encoding=c_encoding)
        self.z_dim, self.w_dim, self.c_dim, self.n_bits = z_dim, w_dim, 0, n_bits
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, channel_base, channel_max, conv_clamp)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, w_dim, self.num_ws, mapping_layers, mapping_hidden,
                                      mapping_lr_multiplier)
        layers = [(name, layer.in_channels) for name, layer in self.synthesis.layers()]
        self.fingerprint = FingerprintModulation(layers, n_bits, embed_dim or w_dim, embed_layers, embed_hidden,
                                                 embed_lr_multiplier, c_encoding)

    @classmethod
    def from_plain(cls, plain: SG2Generator, n_bits: int, **fingerprint_kwargs) -> SG2FingerprintedGenerator:
        """A fingerprinted generator that starts as ``plain`` (copies of its weights, on its device and dtype)."""
        ref = plain.synthesis.b4.const
        with torch.device(ref.device):
            G = cls(**plain.init_kwargs, n_bits=n_bits, **fingerprint_kwargs).to(ref.dtype)
        G.load_plain(plain)
        return G

    @torch.no_grad()
    def load_plain(self, plain: SG2Generator) -> None:
        """Take every weight of ``plain`` (an ``SG2Generator`` of this architecture); the fingerprint module is
        left as it is (freshly built: the identity)."""
        if type(plain) is not SG2Generator or plain.init_kwargs != self.plain_kwargs:
            theirs = getattr(plain, "init_kwargs", {})
            diff = sorted(k for k in self.plain_kwargs if theirs.get(k) != self.plain_kwargs[k])
            raise ValueError(f"expected an SG2Generator of this architecture; differs in {', '.join(diff) or 'class'}")
        self.mapping.load_state_dict(plain.mapping.state_dict())
        self.synthesis.load_state_dict(plain.synthesis.state_dict())

    def scales(self, c: torch.Tensor) -> dict[str, torch.Tensor]:
        """t_l(c) of every synthesis layer, ``{name: [N, in_channels]}``."""
        return self.fingerprint(c)

    def forward(self, z: torch.Tensor, c: torch.Tensor, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, noise_mode: str = "random", fused: bool = True) -> torch.Tensor:
        """Images [N, C, R, R] for latents z [N, z_dim] and fingerprints c [N, n_bits] (0/1)."""
        if c.ndim != 2 or c.shape != (z.shape[0], self.n_bits):
            raise ValueError(f"expected fingerprints c of shape [{z.shape[0]}, {self.n_bits}], got {tuple(c.shape)}")
        ws = self.mapping(z, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode, fused=fused, fp=self.scales(c))

    def styles_input(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The ws [N, num_ws, w_dim] that the path-length regulariser differentiates the images by."""
        return self.mapping(z)

    def synthesize(self, z: torch.Tensor, c: torch.Tensor, ws: torch.Tensor, fused: bool = True) -> torch.Tensor:
        """The images of ``ws`` (from ``styles_input``) under fingerprints ``c``."""
        return self.synthesis(ws, fused=fused, fp=self.scales(c))

    def parameter_group(self, which: str) -> dict[str, nn.Parameter]:
        """The parameters (by name) that fine-tuning group ``which`` trains: ``embedding`` (the fingerprint module:
        E and the per-layer A_l), ``affine`` (also every synthesis layer's style affine) or ``all``."""
        if which not in PARAMETER_GROUPS:
            raise ValueError(f"parameter group must be one of {PARAMETER_GROUPS}, got {which!r}")

        def wanted(name: str) -> bool:
            if which == "all" or name.startswith("fingerprint."):
                return True
            return which == "affine" and name.startswith("synthesis.") and ".affine." in name

        return {name: p for name, p in self.named_parameters() if wanted(name)}

    def set_trainable(self, which: str) -> list[str]:
        """``requires_grad`` on the parameters of group ``which`` only; returns their names."""
        group = self.parameter_group(which)
        for name, p in self.named_parameters():
            p.requires_grad_(name in group)
        return list(group)

    @torch.no_grad()
    def bake(self, c: torch.Tensor) -> SG2Generator:
        """A plain ``SG2Generator`` (no fingerprint input) computing ``self(z, c)`` for fingerprint ``c`` [1, n_bits].

        Every modulated layer's stored weight is multiplied per input channel by t_l(c); nothing else changes
        (mapping, w_avg, styles, noise, biases), so truncation and every noise mode behave as in ``self``. The
        result shares no storage with ``self`` and is in eval mode without gradients.
        """
        c = one_fingerprint(c, self.n_bits, self.synthesis.b4.const)
        scales = self.scales(c)
        state = {f"mapping.{k}": v.clone() for k, v in self.mapping.state_dict().items()}
        state.update({f"synthesis.{k}": v.clone() for k, v in self.synthesis.state_dict().items()})
        for name, t in scales.items():
            key = f"synthesis.{name}.weight"
            state[key] = state[key] * t[0].to(state[key].dtype)[None, :, None, None]
        baked = empty_module(SG2Generator, **self.plain_kwargs)
        baked.load_state_dict(state, strict=True, assign=True)
        return baked.requires_grad_(False).eval()

