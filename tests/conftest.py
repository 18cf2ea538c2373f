"""Shared test settings: deterministic, thread-limited torch on CPU."""

import torch

torch.set_num_threads(2)
