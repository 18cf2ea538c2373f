"""The fingerprinted StyleGAN2: embedding E (c -> w), synthesis, G, D, decoder F, baked G.

Names follow the paper: E is the fingerprint embedding (the release calls it G's mapping
network), F is the fingerprint decoder (the release calls it "E"). Facts in
``docs/method.md#scalable-fingerprinting``; the TF variable layout in ``docs/method.md#release-pickles``.

Style slots (index into the broadcast w, ``num_ws = 2 log2(R) - 2``): at 4x4 the conv uses
slot 0 and its ToRGB slot 1; at resolution 2^k, conv0 (up-sampling) uses 2k-5, conv1 2k-4
and ToRGB 2k-3. The fingerprinted G broadcasts one w to all slots.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from networks.layers import (
    DEFAULT_RESAMPLE_FILTER,
    Conv2dLayer,
    FullyConnectedLayer,
    MinibatchStdLayer,
    SynthesisLayer,
    channels_at,
)
from torch_utils.bits import one_fingerprint
from torch_utils.misc import empty_module
from torch_utils.ops import downsample2d, setup_filter, upsample2d

NOISE_MODES = ("random", "paired", "const", "none")   # paired: one random draw for both halves of the batch


def _log2_resolution(resolution: int) -> int:
    k = int(round(math.log2(resolution)))
    if resolution < 4 or 2**k != resolution:
        raise ValueError(f"resolution must be a power of two >= 4, got {resolution}")
    return k


def _check_plain(net: nn.Module, plain: nn.Module, what: str) -> None:
    """``plain`` is ``net``'s architecture without fingerprint bits (``n_bits`` 0), else a ValueError."""
    ours, theirs = dict(net.init_kwargs, n_bits=0), plain.init_kwargs
    if plain.n_bits != 0 or ours != theirs:
        diff = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
        raise ValueError(f"{what} (n_bits 0) of its architecture; they differ in {', '.join(diff) or 'n_bits'}")


class EmbeddingNetwork(nn.Module):
    """E: fingerprint c in {0,1}^n -> w, 8 lrelu dense layers with lr multiplier 0.01.

    By default c is used raw (no +-1 remap, no normalisation), exactly as the release does;
    ``c_encoding='pm1'`` feeds 2c - 1 instead (an option for faster learning).
    """

    def __init__(self, n_bits: int, w_dim: int, num_layers: int = 8, hidden: int = 512,
                 lr_multiplier: float = 0.01, equalized: bool = True, c_encoding: str = "raw"):
        super().__init__()
        if c_encoding not in ("raw", "pm1"):
            raise ValueError(f"c_encoding must be 'raw' or 'pm1', got {c_encoding!r}")
        self.c_encoding = c_encoding
        self.n_bits = n_bits
        self.w_dim = w_dim
        self.num_layers = num_layers
        widths = [n_bits] + [hidden] * (num_layers - 1) + [w_dim]
        for i in range(num_layers):
            setattr(self, f"fc{i}", FullyConnectedLayer(widths[i], widths[i + 1], activation="lrelu",
                                                        lr_multiplier=lr_multiplier, equalized=equalized))

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        if c.ndim != 2 or c.shape[1] != self.n_bits:
            raise ValueError(f"expected fingerprints c of shape [N, {self.n_bits}], got {tuple(c.shape)}")
        x = c.to(self.fc0.weight.dtype)
        if self.c_encoding == "pm1":
            x = 2 * x - 1
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        return x


class SynthesisBlock(nn.Module):
    """One resolution of the skip generator: [conv0 (x2 up)], conv1, ToRGB."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 modulated: bool, resample_filter: tuple[float, ...], equalized: bool):
        super().__init__()
        self.resolution = resolution
        k = _log2_resolution(resolution)
        common = dict(w_dim=w_dim, resolution=resolution, modulated=modulated,
                      resample_filter=resample_filter, equalized=equalized)
        if resolution == 4:
            self.conv = SynthesisLayer(in_channels, out_channels, **common)
            self.slots = {"conv": 0, "torgb": 1}
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, up=2, **common)
            self.conv1 = SynthesisLayer(out_channels, out_channels, **common)
            self.slots = {"conv0": 2 * k - 5, "conv1": 2 * k - 4, "torgb": 2 * k - 3}
        self.torgb = SynthesisLayer(out_channels, img_channels, kernel_size=1, demodulate=False,
                                    use_noise=False, activation="linear", **common)
        self.register_buffer("resample_filter", setup_filter(resample_filter), persistent=True)

    def forward(self, x: torch.Tensor, img: torch.Tensor | None, ws: torch.Tensor | None, noise_mode: str,
                fused: bool) -> tuple[torch.Tensor, torch.Tensor]:
        def w_for(name: str) -> torch.Tensor | None:
            return None if ws is None else ws[:, self.slots[name]]

        for name in ("conv", "conv0", "conv1"):
            if name in self.slots:
                x = getattr(self, name)(x, w_for(name), noise_mode=noise_mode, fused=fused)
        y = self.torgb(x, w_for("torgb"), fused=fused)
        img = y if img is None else upsample2d(img, self.resample_filter) + y
        return x, img


class SynthesisNetwork(nn.Module):
    """z -> dense 4x4 input -> skip-architecture synthesis -> image in [-1, 1] (linear output)."""

    def __init__(self,
                 z_dim: int,                              # Latent width (512 in the paper).
                 w_dim: int,                              # Style width.
                 img_resolution: int,                     # Output resolution R.
                 img_channels: int = 3,
                 channel_base: int = 8192,                # nf(stage) = channel_base / 2^stage ...
                 channel_max: int = 512,                  # ... clipped to channel_max.
                 mod_range: tuple[int, int] | None = (4, 128),  # Modulated resolutions [lo, hi].
                 resample_filter: tuple[float, ...] = DEFAULT_RESAMPLE_FILTER,
                 equalized: bool = True):
        super().__init__()
        self.z_dim = z_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.log2_res = _log2_resolution(img_resolution)
        self.num_ws = 2 * self.log2_res - 2
        self.resolutions = [2**k for k in range(2, self.log2_res + 1)]
        self.mod_range = mod_range

        def nf(stage: int) -> int:
            return channels_at(stage, channel_base, channel_max)

        self.latent = FullyConnectedLayer(z_dim, nf(1) * 16, activation="lrelu", equalized=equalized)
        self.latent_channels = nf(1)
        in_ch = nf(1)
        for res in self.resolutions:
            k = _log2_resolution(res)
            out_ch = nf(k - 1)
            modulated = mod_range is not None and mod_range[0] <= res <= mod_range[1]
            setattr(self, f"b{res}", SynthesisBlock(in_ch, out_ch, w_dim, res, img_channels, modulated,
                                                    resample_filter, equalized))
            in_ch = out_ch
        self.modulated_layers = [name for name, layer in self.layers() if layer.modulated]

    def forward(self, z: torch.Tensor, ws: torch.Tensor | None, noise_mode: str = "random",
                fused: bool = True) -> torch.Tensor:
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"expected z of shape [N, {self.z_dim}], got {tuple(z.shape)}")
        if ws is None and self.modulated_layers:
            raise ValueError(f"ws are required: layers {self.modulated_layers[:3]}... are style-modulated")
        if ws is not None and (ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim)):
            raise ValueError(f"expected ws of shape [N, {self.num_ws}, {self.w_dim}], got {tuple(ws.shape)}")
        x = self.latent(z.to(self.latent.weight.dtype)).reshape(z.shape[0], self.latent_channels, 4, 4)
        img = None
        for res in self.resolutions:
            x, img = getattr(self, f"b{res}")(x, img, ws, noise_mode, fused)
        return img

    def layers(self) -> list[tuple[str, SynthesisLayer]]:
        """(name, layer) of every synthesis layer, in forward order."""
        return [(n, m) for n, m in self.named_modules() if isinstance(m, SynthesisLayer)]


class Generator(nn.Module):
    """The fingerprinted generator G(z, c): E embeds c into one w, broadcast to every style slot."""

    def __init__(self,
                 z_dim: int = 512,                        # Latent width.
                 n_bits: int = 128,                        # Fingerprint bits n (0: plain StyleGAN2 baseline).
                 w_dim: int = 512,                        # Embedding (style) width.
                 img_resolution: int = 128,
                 img_channels: int = 3,
                 embed_layers: int = 8,                   # Depth of E.
                 embed_hidden: int = 512,                 # Width of E's hidden layers.
                 embed_lr_multiplier: float = 0.01,       # E's learning-rate multiplier.
                 c_encoding: str = "raw",                 # How c enters E: 'raw' 0/1 (release) or 'pm1'.
                 channel_base: int = 8192,
                 channel_max: int = 512,
                 mod_range: tuple[int, int] | None = (4, 128),
                 resample_filter: tuple[float, ...] = DEFAULT_RESAMPLE_FILTER):
        super().__init__()
        mod_range = None if mod_range is None else (int(mod_range[0]), int(mod_range[1]))
        self.init_kwargs = dict(z_dim=z_dim, n_bits=n_bits, w_dim=w_dim, img_resolution=img_resolution,
                                img_channels=img_channels, embed_layers=embed_layers, embed_hidden=embed_hidden,
                                embed_lr_multiplier=embed_lr_multiplier, c_encoding=c_encoding,
                                channel_base=channel_base,
                                channel_max=channel_max, mod_range=None if mod_range is None else list(mod_range),
                                resample_filter=list(resample_filter))
        self.z_dim = z_dim
        self.n_bits = n_bits
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.embedding = EmbeddingNetwork(n_bits, w_dim, embed_layers, embed_hidden, embed_lr_multiplier,
                                          c_encoding=c_encoding)
        self.synthesis = SynthesisNetwork(z_dim, w_dim, img_resolution, img_channels, channel_base, channel_max,
                                          mod_range, tuple(resample_filter))
        self.num_ws = self.synthesis.num_ws

    def embed(self, c: torch.Tensor) -> torch.Tensor:
        """w = E(c), [N, w_dim]."""
        return self.embedding(c)

    def forward(self, z: torch.Tensor, c: torch.Tensor, noise_mode: str = "random",
                fused: bool = True) -> torch.Tensor:
        if z.shape[0] != c.shape[0]:
            raise ValueError(f"z and c disagree on the batch size: {z.shape[0]} vs {c.shape[0]}")
        ws = self.embed(c).unsqueeze(1).repeat(1, self.num_ws, 1)
        return self.synthesis(z, ws, noise_mode=noise_mode, fused=fused)

    def styles_input(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The ws [N, num_ws, w_dim] that the path-length regulariser differentiates the images by: E(c) per slot."""
        return self.embed(c).unsqueeze(1).repeat(1, self.num_ws, 1)

    def synthesize(self, z: torch.Tensor, c: torch.Tensor, ws: torch.Tensor, fused: bool = True) -> torch.Tensor:
        """The images of latents z under the styles ``ws`` (from ``styles_input``)."""
        return self.synthesis(z, ws, fused=fused)

    @torch.no_grad()
    def start_from_plain(self, plain: Generator) -> None:
        """Take every weight of ``plain``, a trained plain generator (``n_bits`` 0) of this architecture, and
        give E's new fingerprint inputs zero weights: until training moves them, G(z, c) is ``plain``'s image
        of z for every c (the fingerprint modulation starts at the identity)."""
        _check_plain(self, plain, "a fingerprinted generator starts from a plain one")
        state = plain.state_dict()
        state["embedding.fc0.weight"] = torch.zeros_like(self.embedding.fc0.weight)
        self.load_state_dict(state)

    @torch.no_grad()
    def bake(self, c: torch.Tensor) -> BakedGenerator:
        """A per-user generator with fingerprint ``c`` [1, n_bits] folded into its weights.

        The result has no fingerprint input and no embedding network: every modulated (and
        demodulated) filter is computed once from w = E(c), so its holder cannot feed
        another fingerprint. Baking uses the fused forward pass's own arithmetic, so with const
        noise ``baked(z)`` is bit-identical to ``self(z, c)`` for one sample; batches agree to
        float32 rounding (as G's own batched and per-sample outputs do).
        """
        c = one_fingerprint(c, self.n_bits, self.synthesis.latent.weight)
        w = self.embed(c)
        # Runtime values of every parameter; buffers (noise, FIR filters) as they are.
        syn = self.synthesis
        state = {f"b{r}.resample_filter": getattr(syn, f"b{r}").resample_filter.clone() for r in syn.resolutions}
        state.update({f"latent.{k}": v for k, v in self.synthesis.latent.runtime_params().items()})
        for name, layer in self.synthesis.layers():
            state.update({f"{name}.{k}": v for k, v in layer.runtime_params(w).items()})
        kw = self.init_kwargs
        baked = empty_module(BakedGenerator, z_dim=self.z_dim, img_resolution=self.img_resolution,
                             img_channels=self.img_channels, n_bits=self.n_bits,
                             channel_base=kw["channel_base"], channel_max=kw["channel_max"],
                             resample_filter=kw["resample_filter"])
        baked.synthesis.load_state_dict(state, strict=True, assign=True)
        return baked.requires_grad_(False).eval()


class BakedGenerator(nn.Module):
    """A per-user generator G_c(z): fixed weights, no fingerprint input (see ``Generator.bake``)."""

    def __init__(self,
                 z_dim: int = 512,
                 img_resolution: int = 128,
                 img_channels: int = 3,
                 n_bits: int = 128,             # Length of the baked fingerprint (not the bits).
                 channel_base: int = 8192,
                 channel_max: int = 512,
                 resample_filter: tuple[float, ...] = DEFAULT_RESAMPLE_FILTER):
        super().__init__()
        self.init_kwargs = dict(z_dim=z_dim, img_resolution=img_resolution, img_channels=img_channels,
                                n_bits=n_bits, channel_base=channel_base,
                                channel_max=channel_max, resample_filter=list(resample_filter))
        self.z_dim = z_dim
        self.n_bits = n_bits
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = SynthesisNetwork(z_dim, 1, img_resolution, img_channels, channel_base, channel_max,
                                          mod_range=None, resample_filter=tuple(resample_filter), equalized=False)

    def forward(self, z: torch.Tensor, *, noise_mode: str = "random") -> torch.Tensor:
        return self.synthesis(z, None, noise_mode=noise_mode)


def takes_fingerprint(G: nn.Module) -> bool:
    """Whether ``G`` takes a fingerprint input c: a fingerprinted ``Generator``; a plain one (n_bits 0) and a
    ``BakedGenerator`` (its fingerprint folded in) take none."""
    return int(getattr(G, "n_bits", 0)) > 0 and not isinstance(G, BakedGenerator)


class DiscriminatorBlock(nn.Module):
    """One resolution of the D / F trunk: [FromRGB], conv0, conv1 (x2 down), [1x1 skip]."""

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, resolution: int,
                 img_channels: int, architecture: str, first: bool, resample_filter: tuple[float, ...]):
        super().__init__()
        self.architecture = architecture
        self.has_fromrgb = first or architecture == "skip"
        if self.has_fromrgb:
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, 1, activation="lrelu")
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, 3, activation="lrelu")
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, 3, activation="lrelu", down=2,
                                 resample_filter=resample_filter)
        if architecture == "resnet":
            self.skip = Conv2dLayer(tmp_channels, out_channels, 1, bias=False, down=2,
                                    resample_filter=resample_filter)
        self.register_buffer("resample_filter", setup_filter(resample_filter), persistent=True)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.has_fromrgb:
            y = self.fromrgb(img)
            x = y if x is None else x + y
            if self.architecture == "skip":
                img = downsample2d(img, self.resample_filter)
        t = x
        x = self.conv1(self.conv0(x))
        if self.architecture == "resnet":
            x = (x + self.skip(t)) * (1 / math.sqrt(2))
        return x, img


class DiscriminatorTrunk(nn.Module):
    """The resnet (or orig / skip) trunk shared by D and F, ending in a dense head."""

    def __init__(self,
                 img_resolution: int = 128,
                 img_channels: int = 3,
                 out_dim: int = 1,                        # Width of the final dense output.
                 architecture: str = "resnet",            # 'resnet' (paper), 'orig' or 'skip'.
                 channel_base: int = 8192,
                 channel_max: int = 512,
                 mbstd_group_size: int = 4,
                 mbstd_num_channels: int = 1,             # 0 disables minibatch-stddev (F).
                 resample_filter: tuple[float, ...] = DEFAULT_RESAMPLE_FILTER,
                 head_channels: int | None = None):       # Width of the dense layer before the output (nf(0)).
        super().__init__()
        if architecture not in ("resnet", "orig", "skip"):
            raise ValueError(f"architecture must be 'resnet', 'orig' or 'skip', got {architecture!r}")
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.log2_res = _log2_resolution(img_resolution)

        def nf(stage: int) -> int:
            return channels_at(stage, channel_base, channel_max)

        self.block_resolutions = [2**k for k in range(self.log2_res, 2, -1)]
        for res in self.block_resolutions:
            k = _log2_resolution(res)
            setattr(self, f"b{res}", DiscriminatorBlock(nf(k - 1), nf(k - 1), nf(k - 2), res, img_channels,
                                                        architecture, res == img_resolution,
                                                        tuple(resample_filter)))
        self.architecture = architecture
        if img_resolution == 4 or architecture == "skip":
            self.fromrgb4 = Conv2dLayer(img_channels, nf(1), 1, activation="lrelu")
        # As in the release, minibatch-stddev exists only for groups of more than one sample.
        use_mbstd = mbstd_num_channels > 0 and mbstd_group_size > 1
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if use_mbstd else None
        self.conv = Conv2dLayer(nf(1) + (mbstd_num_channels if use_mbstd else 0), nf(1), 3, activation="lrelu")
        head = head_channels or nf(0)
        self.fc = FullyConnectedLayer(nf(1) * 16, head, activation="lrelu")
        self.out = FullyConnectedLayer(head, out_dim)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if img.ndim != 4 or img.shape[1:] != (self.img_channels, self.img_resolution, self.img_resolution):
            raise ValueError(f"expected images of shape [N, {self.img_channels}, {self.img_resolution}, "
                             f"{self.img_resolution}], got {tuple(img.shape)}")
        img = img.to(self.conv.weight.dtype)
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f"b{res}")(x, img)
        if hasattr(self, "fromrgb4"):
            y = self.fromrgb4(img)
            x = y if x is None else x + y
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        return self.out(x)


class Discriminator(DiscriminatorTrunk):
    """D(images) -> realness scores [N, 1]."""

    def __init__(self,
                 img_resolution: int = 128,
                 img_channels: int = 3,
                 architecture: str = "resnet",
                 channel_base: int = 8192,
                 channel_max: int = 512,
                 mbstd_group_size: int = 4,
                 mbstd_num_channels: int = 1,
                 resample_filter: tuple[float, ...] = DEFAULT_RESAMPLE_FILTER):
        super().__init__(img_resolution, img_channels, 1, architecture, channel_base, channel_max,
                         mbstd_group_size, mbstd_num_channels, resample_filter)
        self.init_kwargs = dict(img_resolution=img_resolution, img_channels=img_channels,
                                architecture=architecture, channel_base=channel_base, channel_max=channel_max,
                                mbstd_group_size=mbstd_group_size, mbstd_num_channels=mbstd_num_channels,
                                resample_filter=list(resample_filter))


class FingerprintDecoder(DiscriminatorTrunk):
    """F(images) -> (z_hat [N, z_dim], bit logits [N, n_bits]); bits = logits > 0.

    D's trunk without minibatch-stddev, whose final dense layer outputs z_dim + n_bits values.
    """

    def __init__(self,
                 z_dim: int = 512,
                 n_bits: int = 128,
                 img_resolution: int = 128,
                 img_channels: int = 3,
                 architecture: str = "resnet",
                 channel_base: int = 8192,
                 channel_max: int = 512,
                 resample_filter: tuple[float, ...] = DEFAULT_RESAMPLE_FILTER,
                 head_channels: int | None = None):       # Width before the output (None: nf(0), the release).
        super().__init__(img_resolution, img_channels, z_dim + n_bits, architecture, channel_base, channel_max,
                         mbstd_group_size=1, mbstd_num_channels=0, resample_filter=resample_filter,
                         head_channels=head_channels)
        self.init_kwargs = dict(z_dim=z_dim, n_bits=n_bits, img_resolution=img_resolution,
                                img_channels=img_channels, architecture=architecture, channel_base=channel_base,
                                channel_max=channel_max, resample_filter=list(resample_filter),
                                head_channels=head_channels)
        self.z_dim = z_dim
        self.n_bits = n_bits

    @torch.no_grad()
    def start_from_plain(self, plain: FingerprintDecoder) -> None:
        """Take every weight of ``plain``, the latent decoder of a plain run (``n_bits`` 0) of this architecture;
        the outputs of the bits keep their fresh initialisation (the trunk already reads the generator's
        images)."""
        _check_plain(self, plain, "a fingerprint decoder starts from a plain run's decoder")
        state = plain.state_dict()
        for name in ("out.weight", "out.bias"):
            fresh = self.state_dict()[name].clone()
            fresh[: self.z_dim] = state[name]
            state[name] = fresh
        self.load_state_dict(state)

    def forward(self, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = super().forward(img)
        return out[:, : self.z_dim], out[:, self.z_dim:]
