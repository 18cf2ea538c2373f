"""The paper's networks, their presets and network files; later also losses and training loops."""

from training.checkpoint import CheckpointError, load_network, read_header, save_network
from training.networks import BakedGenerator, Discriminator, FingerprintDecoder, Generator
from training.presets import PRESETS, build_networks

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
