"""Model attacks of the robustness suite: changes to the weights of a baked (per-user) generator.

``metrics/robustness.py`` runs them on the issued generators (the ``robustness_model`` metric);
``docs/method.md#evaluation`` lists the model-level attacks of the field.

A model attack is ``attack(generator, strength, rng) -> a new generator`` (the input is not changed); it
acts on the *weight tensors*: every parameter with at least two dimensions (convolution and dense weights,
including ToRGB and the latent layer). Biases, noise strengths and buffers (the stored noise, FIR filters)
are kept. ``rng`` is as for the image attacks (``metrics/image_attacks.py``): a ``numpy.random.Generator``,
an int seed or None (seed 0).
  * ``weight_noise`` s: W + s std(W) N(0, 1) per tensor (std over the tensor's elements), s = 0 ... 0.5;
  * ``quantize`` b: uniform quantisation per tensor to 2^b levels from its minimum to its maximum (both
    kept exactly), b = 8 ... 2; b = 0 means unquantised (the identity);
  * ``prune`` p: per tensor, the floor(p numel) entries of smallest magnitude set to 0 (ties broken by
    position), p = 0 ... 0.9. Per tensor, not global: a global threshold would empty the small layers;
  * ``collusion`` t: the element-wise mixture A + t (B - A) of two users' baked weights (``torch.lerp``;
    every parameter and buffer), t = 0 (A), 0.25, 0.5 (the average), 0.75, 1 (B). The metric pairs users
    in issue order (1st with 2nd, 3rd with 4th, ...).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from metrics.image_attacks import Rng, _check, _rng  # The strength check and the seeding of every attack.


def weight_tensors(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """(name, parameter) of every parameter with at least two dimensions: the tensors model attacks change."""
    return [(n, p) for n, p in module.named_parameters() if p.ndim >= 2]


def _copy(module: nn.Module) -> nn.Module:
    return copy.deepcopy(module)


@torch.no_grad()
def weight_noise(generator: nn.Module, strength: float, rng: Rng = None) -> nn.Module:
    """W + strength std(W) N(0, 1) for every weight tensor (a new module)."""
    _check("weight_noise", strength, strength >= 0, ">= 0")
    out = _copy(generator)
    if strength == 0:
        return out
    gen = _rng(rng)
    for _, w in weight_tensors(out):
        noise = torch.from_numpy(gen.standard_normal(tuple(w.shape))).to(dtype=w.dtype, device=w.device)
        w.add_(noise * (strength * w.std(correction=0)))
    return out


@torch.no_grad()
def quantize_weights(generator: nn.Module, bits: float, rng: Rng = None) -> nn.Module:
    """Every weight tensor rounded to 2^bits levels, uniform from its min to its max (bits 0: unchanged)."""
    _check("quantize", bits, float(bits).is_integer() and (bits == 0 or 1 <= bits <= 16), "0 or an integer in 1..16")
    out = _copy(generator)
    if bits == 0:
        return out
    for _, w in weight_tensors(out):
        lo, hi = w.min(), w.max()
        if hi <= lo:
            continue
        step = (hi - lo) / (2 ** int(bits) - 1)
        q = ((w - lo) / step).round().clamp(0, 2 ** int(bits) - 1)
        w.copy_(torch.where(q == 2 ** int(bits) - 1, hi, lo + q * step))
    return out


@torch.no_grad()
def prune_weights(generator: nn.Module, fraction: float, rng: Rng = None) -> nn.Module:
    """Per weight tensor, its floor(fraction numel) smallest-magnitude entries set to 0 (ties by position)."""
    _check("prune", fraction, 0 <= fraction <= 1, "in [0, 1]")
    out = _copy(generator)
    for _, w in weight_tensors(out):
        k = int(math.floor(fraction * w.numel()))
        if k:
            order = torch.argsort(w.detach().abs().flatten(), stable=True)
            w.view(-1)[order[:k]] = 0
    return out


@torch.no_grad()
def collude(a: nn.Module, b: nn.Module, t: float = 0.5) -> nn.Module:
    """A + t (B - A) element-wise over every parameter and buffer (t = 0.5: the average); a new module."""
    _check("collusion", t, 0 <= t <= 1, "in [0, 1]")
    sa, sb = a.state_dict(), b.state_dict()
    if sa.keys() != sb.keys() or any(sa[k].shape != sb[k].shape for k in sa):
        raise ValueError("collusion needs two generators of the same architecture")
    out = _copy(a)
    out.load_state_dict({k: torch.lerp(v, sb[k].to(v), t) if v.is_floating_point() else v
                         for k, v in sa.items()})
    return out


@dataclass(frozen=True)
class ModelAttack:
    name: str
    fn: Callable
    strengths: tuple[float, ...]
    identity: float
    unit: str


MODEL_ATTACKS: dict[str, ModelAttack] = {a.name: a for a in (
    ModelAttack("weight_noise", weight_noise, (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5), 0.0,
                "noise std (of each tensor's std)"),
    ModelAttack("quantize", quantize_weights, (0, 8, 7, 6, 5, 4, 3, 2), 0, "bits per weight (0: float32)"),
    ModelAttack("prune", prune_weights, (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9), 0.0,
                "pruned fraction per tensor"),
    ModelAttack("collusion", collude, (0.0, 0.25, 0.5, 0.75, 1.0), 0.0, "weight of user B"),
)}
