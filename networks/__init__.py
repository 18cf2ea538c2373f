"""The paper's networks (StyleGAN2 with fingerprint embedding and modulation, discriminator, fingerprint decoder,
baked generator; the fingerprint autoencoder), a standard StyleGAN2 in NVlabs' layout, their presets, and network
files."""

from networks.checkpoint import CheckpointError, load_network, read_header, register_network_class, save_network
from networks.checkpoint_checks import SCHEMAS as _SCHEMAS
from networks.presets import PRESETS, build_networks
from networks.sg2_fingerprint import SG2FingerprintedGenerator
from networks.stylegan2 import BakedGenerator, Discriminator, FingerprintDecoder, Generator
from networks.stylegan2_ada import SG2Discriminator, SG2Generator

# Network files may hold the standard StyleGAN2 (imported from stylegan2-ada-pytorch pickles by legacy.py), also
# with a fingerprint module.
for _cls in (SG2Generator, SG2Discriminator, SG2FingerprintedGenerator):
    register_network_class(_cls, _SCHEMAS[_cls.__name__])

__all__ = [
    "PRESETS",
    "BakedGenerator",
    "CheckpointError",
    "Discriminator",
    "FingerprintDecoder",
    "Generator",
    "SG2Discriminator",
    "SG2FingerprintedGenerator",
    "SG2Generator",
    "build_networks",
    "load_network",
    "read_header",
    "save_network",
]
