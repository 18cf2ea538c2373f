"""The paper's networks (StyleGAN2 with fingerprint embedding and modulation, discriminator, fingerprint decoder,
baked generator; the fingerprint autoencoder), their presets, and network files."""

from networks.checkpoint import CheckpointError, load_network, read_header, save_network
from networks.presets import PRESETS, build_networks
from networks.stylegan2 import BakedGenerator, Discriminator, FingerprintDecoder, Generator

__all__ = [
    "PRESETS",
    "BakedGenerator",
    "CheckpointError",
    "Discriminator",
    "FingerprintDecoder",
    "Generator",
    "build_networks",
    "load_network",
    "read_header",
    "save_network",
]
