"""Network presets as a literal table, and ``build_networks``.

The three paper presets reproduce the release's ``config-e-Gskip-Dresnet`` networks
(parameter counts checked against the release's in the tests); ``tiny32`` is a CPU-sized
preset for tests and quick experiments; ``quick32`` is tiny32 at half the width (32 channels), the
quickstart's preset: 2.5x the images per second of a training step on CPU, and per image it learns a
32-bit fingerprint about as fast (docs/RESULTS.md); ``tiny64`` is tiny32 with one more (32-channel) block
at 64x64, for the CPU quality-tax frontier at 64x64 (docs/results/quality.md).

``sg2tiny32`` is the other architecture (``architecture="sg2"``): a standard StyleGAN2 laid out like NVlabs'
(``networks.stylegan2_ada``: z -> mapping -> w, const input; resnet D) at tiny32's size, the plain generator that
issue 18's fine-tuning fingerprints. With ``n_bits`` 0 it is a plain ``SG2Generator``; with bits, an
``SG2FingerprintedGenerator``. Its ``channel_base`` is stated in the release's convention like every preset's and
converted (x 4) to NVlabs' (``channels_at_resolution``), so both architectures have the same widths.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from torch import nn

from networks.sg2_fingerprint import SG2FingerprintedGenerator
from networks.stylegan2 import Discriminator, FingerprintDecoder, Generator
from networks.stylegan2_ada import SG2Discriminator, SG2Generator

ARCHITECTURES = ("paper", "sg2")
# channel_base in NVlabs' convention (min(base // res, max)) = 4 x the release's (min(base / 2^(log2 res - 1), max)).
NVLABS_CHANNEL_BASE_FACTOR = 4


@dataclass(frozen=True)
class NetworkPreset:
    resolution: int                          # Image resolution R.
    n_bits: int = 128                         # Fingerprint bits n.
    z_dim: int = 512                         # Latent width (F reconstructs it).
    w_dim: int = 512                         # Embedding width.
    embed_hidden: int = 512                  # Width of E's hidden layers.
    embed_layers: int = 8                    # Depth of E (mapping_layers).
    embed_lr_multiplier: float = 0.01        # E's learning-rate multiplier (mapping_lrmul).
    c_encoding: str = "raw"                  # How c enters E: 'raw' (release) or 'pm1'.
    channel_base: int = 8192                 # fmap_base of the release's config-e.
    channel_max: int = 512                   # fmap_max.
    mod_range: tuple[int, int] = (4, 128)    # --res-modulated-range.
    d_architecture: str = "resnet"           # D and F trunk: 'resnet' (paper), 'orig', 'skip'.
    f_head: int | None = None                # Width of F's last hidden layer (None: nf(0), the release).
    architecture: str = "paper"              # G and D: 'paper' (networks.stylegan2) or 'sg2' (networks.stylegan2_ada).
    mapping_layers: int = 8                  # 'sg2': depth of the mapping z -> w.


_TINY32 = NetworkPreset(resolution=32, z_dim=128, w_dim=128, embed_hidden=128, channel_base=2048,
                        channel_max=64, mod_range=(4, 32))

PRESETS: dict[str, NetworkPreset] = {
    "celeba128": NetworkPreset(resolution=128, mod_range=(4, 128)),
    "bedroom128": NetworkPreset(resolution=128, mod_range=(4, 128)),
    "cat256": NetworkPreset(resolution=256, mod_range=(4, 256)),
    "tiny32": _TINY32,
    "quick32": dataclasses.replace(_TINY32, channel_base=1024, channel_max=32),   # tiny32 at half the width
    "tiny64": dataclasses.replace(_TINY32, resolution=64, mod_range=(4, 64)),    # tiny32 + a 32-channel 64x64 block
    # A standard StyleGAN2 at tiny32's widths; a 2-layer mapping (NVlabs' 'auto' config's depth).
    "sg2tiny32": dataclasses.replace(_TINY32, architecture="sg2", mapping_layers=2),
}


def get_preset(preset: str | NetworkPreset, **overrides) -> NetworkPreset:
    """A preset by name (or as given), with fields replaced by ``overrides``."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
        preset = PRESETS[preset]
    if "mod_range" in overrides and overrides["mod_range"] is not None:
        overrides["mod_range"] = tuple(int(v) for v in overrides["mod_range"])
    return dataclasses.replace(preset, **overrides)


def build_networks(preset: str | NetworkPreset, which: tuple[str, ...] = ("G", "D", "F"),
                   **overrides) -> dict[str, nn.Module]:
    """Fresh, randomly initialised ``{'G': Generator, 'D': Discriminator, 'F': FingerprintDecoder}``.

    ``which`` picks a subset (e.g. ``("G",)``); ``overrides`` replace preset fields.
    """
    p = get_preset(preset, **overrides)
    unknown = set(which) - {"G", "D", "F"}
    if unknown:
        raise ValueError(f"unknown network names {sorted(unknown)}; expected among G, D, F")
    common = dict(img_resolution=p.resolution, channel_base=p.channel_base, channel_max=p.channel_max)
    if p.architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {p.architecture!r}; expected one of {ARCHITECTURES}")
    nvlabs = dict(common, channel_base=p.channel_base * NVLABS_CHANNEL_BASE_FACTOR)
    mapping = dict(z_dim=p.z_dim, w_dim=p.w_dim, mapping_layers=p.mapping_layers, mapping_lr_multiplier=0.01)
    fingerprint = dict(n_bits=p.n_bits, embed_layers=p.embed_layers, embed_hidden=p.embed_hidden,
                       embed_lr_multiplier=p.embed_lr_multiplier, c_encoding=p.c_encoding)
    builders = {
        "G": lambda: Generator(z_dim=p.z_dim, n_bits=p.n_bits, w_dim=p.w_dim, embed_hidden=p.embed_hidden,
                               embed_layers=p.embed_layers, embed_lr_multiplier=p.embed_lr_multiplier,
                               c_encoding=p.c_encoding,
                               mod_range=p.mod_range, **common),
        "D": lambda: Discriminator(architecture=p.d_architecture, **common),
        "F": lambda: FingerprintDecoder(z_dim=p.z_dim, n_bits=p.n_bits, architecture=p.d_architecture,
                                        head_channels=p.f_head, **common),
    }
    if p.architecture == "sg2":
        builders["G"] = (lambda: SG2FingerprintedGenerator(**mapping, **fingerprint, **nvlabs) if p.n_bits
                         else SG2Generator(**mapping, **nvlabs))
        builders["D"] = lambda: SG2Discriminator(**nvlabs)
    return {name: builders[name]() for name in which}
