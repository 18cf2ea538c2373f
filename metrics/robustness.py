"""The robustness suite's two metrics: image attacks on generated images, model attacks on baked generators.

The attacks and their tables live in ``metrics/image_attacks.py`` (``IMAGE_ATTACKS``) and
``metrics/model_attacks.py`` (``MODEL_ATTACKS``); their names are re-exported here, so the whole suite is
one import. Two metrics (``metrics.metric_registry``), ``robustness_image`` and ``robustness_model``, each
return ``rows`` (one dict per attack and strength) and summary numbers; ``fig/plot_robustness.py`` draws
them.

**Protocol.** With a registry (``MetricOptions.registry``): the first ``users`` registered users in issue
order; each user's generator makes ``images_per_user`` images from seeds ``first_seed`` ... (z drawn by
``RandomState(seed)`` as ``generate.py images`` does, const noise, batched: equal to its PNGs up to float
rounding), rounded to 8 bits as the PNG files are (``quantize``; set False to attack the float images). A
user's generator is ``G.bake(fingerprint)`` of the measured snapshot (``generators='bake'``) or the baked
file the registry records, checked by SHA-256 (``'files'``); ``'auto'`` bakes when G takes a fingerprint.
Per attack and strength, over all images: ``bit_acc`` (mean over images of the fraction of the user's
registered bits decoded right; ``bit_acc_min`` the worst image), ``tpr`` (the fraction decided fingerprinted
at ``fpr``, default 1e-6: attributed or fingerprinted-unknown; at 1e-6 the unknown test would need two
million held-out calibration images to take part, so this is in practice the attributed fraction),
``attribution_acc`` (attributed to the right user) and ``misattributed`` (attributed to another user), with
``attribution.detection.decide`` against the whole registry (Bonferroni over its size). Decisions use the
decoder's calibration when there is one: ``MetricOptions.calibration`` (a path, a ``Calibration``, or
``'none'``), else ``<extra['decoder_file']>.calibration.json`` when present, else fair coins; ``null_model``
in the output says which. Collusion rows give instead ``bit_acc_a`` / ``bit_acc_b`` (against each user's
fingerprint) and the fractions attributed to A, to B, to someone else and to nobody (``frac_a``,
``frac_b``, ``frac_other``, ``frac_nobody``, summing to 1); users are paired in issue order.
Without a registry, images come from G with a fresh random fingerprint per seed (generate.py's draw), and
model attacks use ``users`` fingerprints drawn at random: only bit accuracy is meaningful then (detection
needs the registry it searches), so ``tpr``, ``attribution_acc`` and the collusion fractions are None.

``MetricOptions.extra`` (all optional): ``users`` (8 for images, 4 for models), ``images_per_user`` (16 /
8), ``num_images`` (128; without a registry), ``first_seed`` (0), ``attacks`` (names; default all of the
table), ``strengths`` ({name: [...]}, replacing the table's), ``fpr`` (1e-6), ``batch`` (32, decoding and
generation), ``quantize`` (True), ``generators`` ('auto'), ``decoder_file`` and ``decoder_sha256`` (to find
and check the calibration). Random draws (noise, text, weight noise) come from ``MetricOptions.seed``, the
attack, the strength and the image chunk (or user), so a row does not depend on which other rows run or on
``batch``.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from attribution.detection import Calibration, calibration_path, decide, load_calibration
from dnnlib.util import sha256_file
from metrics.image_attacks import (
    IMAGE_ATTACKS,
    to_unit_float,
)
from metrics.metric_registry import MetricOptions, register_metric
from metrics.model_attacks import (
    MODEL_ATTACKS,
    collude,
)
from networks.stylegan2 import takes_fingerprint

ATTACK_CHUNK = 64                   # Images attacked at once (and the unit of the random draws).


@dataclass
class _Setup:
    F: nn.Module
    device: torch.device | str
    batch: int
    quantize: bool
    fpr: float
    registry: Any                       # an open Registry, or None
    calibration: Calibration | None
    null_model: str | None              # 'calibrated' / 'fair-coin' / None (no registry)
    calibration_file: str | None


def _opt(extra: dict, key: str, default, kind: type):
    value = extra.get(key, default)
    if kind is int and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"extra[{key!r}] must be a positive integer, got {value!r}")
    if kind is bool and not isinstance(value, bool):
        raise ValueError(f"extra[{key!r}] must be True or False, got {value!r}")
    return value


def _load_calibration(opts: MetricOptions) -> tuple[Calibration | None, str | None]:
    cal = opts.calibration
    if isinstance(cal, Calibration):
        return cal, "(given)"
    if isinstance(cal, str) and cal == "none":
        return None, None
    path = Path(cal) if cal is not None else None
    if path is None and opts.extra.get("decoder_file"):
        beside = calibration_path(opts.extra["decoder_file"])
        path = beside if beside.is_file() else None
    if path is None:
        return None, None
    return load_calibration(path, opts.extra.get("decoder_sha256")), str(path)


def _setup(opts: MetricOptions) -> _Setup:
    if opts.F is None:
        raise ValueError("the robustness metrics need a fingerprint decoder (MetricOptions.F)")
    extra = opts.extra
    fpr = float(extra.get("fpr", 1e-6))
    if not 0 < fpr < 1:
        raise ValueError(f"extra['fpr'] must be in (0, 1), got {fpr}")
    registry = None
    if opts.registry is not None:
        from attribution.registry import Registry
        registry = Registry(opts.registry, readonly=True)
        if len(registry) == 0:
            registry.close()
            raise ValueError(f"{opts.registry}: the registry is empty")
    try:
        cal, cal_file = _load_calibration(opts) if registry is not None else (None, None)
    except Exception:
        registry.close()
        raise
    null = None if registry is None else ("calibrated" if cal is not None else "fair-coin")
    return _Setup(F=opts.F, device=opts.device, batch=_opt(extra, "batch", 32, int),
                  quantize=_opt(extra, "quantize", True, bool), fpr=fpr, registry=registry, calibration=cal,
                  null_model=null, calibration_file=cal_file)


def _latents(seeds: Sequence[int], z_dim: int, n_bits: int) -> tuple[torch.Tensor, np.ndarray]:
    """generate.py's draw per seed: RandomState(seed) gives z, then c."""
    zs, cs = [], []
    for s in seeds:
        rs = np.random.RandomState(s)
        zs.append(rs.randn(z_dim))
        cs.append(rs.randint(0, 2, size=n_bits) if n_bits else np.zeros(0, dtype=np.int64))
    return torch.from_numpy(np.stack(zs)).float(), np.stack(cs).astype(np.uint8)


@torch.no_grad()
def _generate(setup: _Setup, gen: Callable[[torch.Tensor, slice], torch.Tensor], n: int) -> torch.Tensor:
    """Images of ``gen(z batch, index slice)`` in [-1, 1] -> CPU uint8 (8-bit as a PNG) or float [0, 1]."""
    out = []
    for start in range(0, n, setup.batch):
        img = gen(slice(start, min(n, start + setup.batch))).float()
        if setup.quantize:
            out.append(((img + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu())
        else:
            out.append(((img + 1) / 2).clamp(0, 1).cpu())
    return torch.cat(out)


@torch.no_grad()
def _decode(setup: _Setup, images01: torch.Tensor) -> np.ndarray:
    out = []
    for start in range(0, len(images01), setup.batch):
        x = images01[start:start + setup.batch].to(setup.device).float() * 2 - 1
        logits = setup.F(x)
        out.append((logits[1] if isinstance(logits, tuple) else logits).float().cpu().numpy())
    return np.concatenate(out)


def _check_resolution(G: nn.Module, F: nn.Module) -> None:
    rg, rf = getattr(G, "img_resolution", None), getattr(F, "img_resolution", None)
    if rg is not None and rf is not None and rg != rf:
        raise ValueError(f"the generator makes {rg}x{rg} images, the decoder reads {rf}x{rf}")


def _bit_acc(logits: np.ndarray, fingerprints: np.ndarray) -> np.ndarray:
    return ((logits > 0) == fingerprints.astype(bool)).mean(axis=1)


def _score(setup: _Setup, logits: np.ndarray, fingerprints: np.ndarray, owners: np.ndarray) -> dict[str, Any]:
    acc = _bit_acc(logits, fingerprints)
    row: dict[str, Any] = {"n": int(len(acc)), "bit_acc": float(acc.mean()), "bit_acc_min": float(acc.min()),
                           "tpr": None, "attribution_acc": None, "misattributed": None}
    if setup.registry is not None:
        d = decide(logits, setup.registry, setup.fpr, setup.calibration)
        dec = np.asarray(d.decision)
        attributed = dec == "attributed"
        row.update(tpr=float((dec != "not-fingerprinted").mean()),
                   attribution_acc=float((attributed & (d.nearest_id == owners)).mean()),
                   misattributed=float((attributed & (d.nearest_id != owners)).mean()))
    return row


@dataclass
class _User:
    id: int                  # registry id (-1: a drawn fingerprint, no registry)
    name: str
    bits: np.ndarray         # uint8 [n]
    generator: nn.Module     # baked: generator(z, noise_mode=...)
    source: str              # 'baked from G' or 'registry file'


def _users(opts: MetricOptions, setup: _Setup, count: int) -> list[_User]:
    """The first ``count`` registered users with their generators (or drawn fingerprints without a registry)."""
    G = opts.G
    can_bake = hasattr(G, "bake") and int(getattr(G, "n_bits", 0)) > 0
    mode = opts.extra.get("generators", "auto")
    if mode not in ("auto", "bake", "files"):
        raise ValueError(f"extra['generators'] must be 'auto', 'bake' or 'files', got {mode!r}")
    if mode == "auto":
        mode = "bake" if can_bake or setup.registry is None else "files"
    if mode == "bake" and not can_bake:
        raise ValueError("generators='bake' needs a fingerprinted generator (G.bake); this G takes no fingerprint")
    if setup.registry is None:
        if not can_bake:
            raise ValueError("without a registry the robustness metrics need a fingerprinted G to draw users from")
        fps = np.random.default_rng([opts.seed, 0x5EED]).integers(0, 2, size=(count, G.n_bits)).astype(np.uint8)
        return [_User(-1, f"drawn{k}", fps[k], G.bake(torch.from_numpy(fps[k]).float()[None]), "baked from G")
                for k in range(count)]
    from networks.checkpoint import load_network
    reg = setup.registry
    ids, _ = reg.packed()
    users = []
    for e in reg.entries(ids[:count].tolist()):
        bits = np.frombuffer(e.bits.encode(), dtype=np.uint8) - ord("0")
        if mode == "bake":
            if len(bits) != G.n_bits:
                raise ValueError(f"the registry holds {len(bits)}-bit fingerprints; G takes {G.n_bits} bits")
            users.append(_User(e.id, e.user, bits, G.bake(torch.from_numpy(bits).float()[None]), "baked from G"))
            continue
        if not e.file or not Path(e.file).is_file():
            raise ValueError(f"user {e.user}: the registry records no readable generator file ({e.file!r}); "
                             "use generators='bake'")
        if e.file_sha256 and sha256_file(e.file) != e.file_sha256:
            raise ValueError(f"user {e.user}: {e.file} is not the file that was issued (SHA-256 differs)")
        nets = load_network(e.file, device=opts.device)
        if "G" not in nets:
            raise ValueError(f"user {e.user}: {e.file} holds no generator")
        users.append(_User(e.id, e.user, bits, nets["G"], "registry file"))
    return users


def _user_images(setup: _Setup, generator: nn.Module, zs: torch.Tensor) -> torch.Tensor:
    generator = generator.to(setup.device)
    return _generate(setup, lambda sl: generator(zs[sl].to(setup.device), noise_mode="const"), len(zs))


def _row_seed(seed: int, attack: str, index: int, *more: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(attack.encode()), index, *more])


def _selected(extra: dict, table: dict) -> list[tuple[str, tuple]]:
    """The attacks of ``table`` named in extra['attacks'] (all when absent) with their strengths.

    One list may name image and model attacks together (both metrics of one ``calc_metrics.py`` call read
    it): each metric takes the names of its own table; a name in neither table is an error.
    """
    known = set(IMAGE_ATTACKS) | set(MODEL_ATTACKS)
    names = extra.get("attacks")
    if isinstance(names, str):
        names = [names]
    overrides = extra.get("strengths") or {}
    for label, given in (("attack(s)", names or []), ("extra['strengths'] names attack(s)", overrides)):
        unknown = [n for n in given if n not in known]
        if unknown:
            raise ValueError(f"unknown {label} {unknown}; available: {', '.join([*IMAGE_ATTACKS, *MODEL_ATTACKS])}")
    names = list(table) if names is None else [n for n in names if n in table]
    return [(n, tuple(overrides.get(n, table[n].strengths))) for n in names]


def _summary(setup: _Setup, rows: list[dict], users: list[_User]) -> dict[str, Any]:
    clean = next((r for r in rows if r["strength"] == _identity_of(r["attack"])), None)
    worst = min(rows, key=lambda r: r["bit_acc"]) if rows else None
    return {
        "registry": None if setup.registry is None else str(setup.registry.path),
        "registry_size": None if setup.registry is None else len(setup.registry),
        "num_users": len(users), "fpr": setup.fpr, "null_model": setup.null_model,
        "calibration": setup.calibration_file, "quantized_8bit": setup.quantize,
        "bit_acc_clean": None if clean is None else clean["bit_acc"],
        "tpr_clean": None if clean is None else clean["tpr"],
        "attribution_acc_clean": None if clean is None else clean.get("attribution_acc"),
        "bit_acc_worst": None if worst is None else worst["bit_acc"],
        "worst_attack": None if worst is None else f"{worst['attack']} {worst['strength']}",
    }


def _identity_of(name: str) -> float | None:
    table = IMAGE_ATTACKS if name in IMAGE_ATTACKS else MODEL_ATTACKS
    return table[name].identity


@register_metric("robustness_image")
@torch.no_grad()
def robustness_image(opts: MetricOptions) -> dict[str, Any]:
    """Bit accuracy, TPR at the FPR and attribution accuracy per image attack and strength (module docstring)."""
    from tqdm import tqdm

    setup = _setup(opts)
    try:
        _check_resolution(opts.G, opts.F)
        extra = opts.extra
        first = int(extra.get("first_seed", 0))
        attacks = _selected(extra, IMAGE_ATTACKS)
        if setup.registry is None:
            if not takes_fingerprint(opts.G):
                raise ValueError("robustness_image needs a fingerprinted G (or a registry of issued generators)")
            num = _opt(extra, "num_images", 128, int)
            zs, fps = _latents(range(first, first + num), opts.G.z_dim, opts.G.n_bits)
            c = torch.from_numpy(fps).float()
            images = _generate(setup, lambda sl: opts.G(zs[sl].to(setup.device), c[sl].to(setup.device),
                                                        noise_mode="const"), num)
            owners = np.full(num, -1)
            users: list[_User] = []
            source, per = "G with a random fingerprint per seed", None
        else:
            users = _users(opts, setup, _opt(extra, "users", 8, int))
            per = _opt(extra, "images_per_user", 16, int)
            zs, _ = _latents(range(first, first + per), users[0].generator.z_dim, 0)
            images = torch.cat([_user_images(setup, u.generator, zs) for u in users])
            fps = np.repeat(np.stack([u.bits for u in users]), per, axis=0)
            owners = np.repeat(np.asarray([u.id for u in users]), per)
            source = users[0].source
        rows = []
        jobs = [(name, i, s) for name, strengths in attacks for i, s in enumerate(strengths)]
        for name, i, s in tqdm(jobs, desc="robustness_image", disable=not opts.progress):
            fn = IMAGE_ATTACKS[name].fn
            logits = np.concatenate([
                _decode(setup, fn(images[k:k + ATTACK_CHUNK], s, _row_seed(opts.seed, name, i, k // ATTACK_CHUNK)))
                for k in range(0, len(images), ATTACK_CHUNK)])
            rows.append({"attack": name, "strength": s, **_score(setup, logits, fps, owners)})
        return {**_summary(setup, rows, users), "num_images": int(len(images)), "images_per_user": per,
                "first_seed": first, "generators": source, "users": [u.name for u in users], "rows": rows}
    finally:
        if setup.registry is not None:
            setup.registry.close()


def _collusion_rows(opts: MetricOptions, setup: _Setup, users: list[_User], zs: torch.Tensor,
                    strengths: tuple) -> list[dict]:
    pairs = [(users[k], users[k + 1]) for k in range(0, len(users) - 1, 2)]
    rows = []
    for t in strengths:
        acc_a, acc_b, decided = [], [], []
        for a, b in pairs:
            logits = _decode(setup, to_unit_float(_user_images(setup, collude(a.generator, b.generator, t), zs)))
            acc_a.append(_bit_acc(logits, a.bits[None]))
            acc_b.append(_bit_acc(logits, b.bits[None]))
            if setup.registry is not None:
                d = decide(logits, setup.registry, setup.fpr, setup.calibration)
                att = np.asarray(d.decision) == "attributed"
                decided.append(np.stack([att & (d.nearest_id == a.id), att & (d.nearest_id == b.id), ~att]))
        row: dict[str, Any] = {"attack": "collusion", "strength": t, "n": int(sum(len(x) for x in acc_a)),
                               "pairs": len(pairs)}
        if pairs:
            aa, bb = np.concatenate(acc_a), np.concatenate(acc_b)
            row.update(bit_acc=float(aa.mean()), bit_acc_min=float(aa.min()), bit_acc_a=float(aa.mean()),
                       bit_acc_b=float(bb.mean()))
        else:
            row.update(bit_acc=None, bit_acc_min=None, bit_acc_a=None, bit_acc_b=None)
        if decided:
            fa, fb, none = (np.concatenate([x[j] for x in decided]) for j in range(3))
            row.update(frac_a=float(fa.mean()), frac_b=float(fb.mean()), frac_nobody=float(none.mean()),
                       frac_other=float((~fa & ~fb & ~none).mean()), tpr=float(1 - none.mean()))
        else:
            row.update(frac_a=None, frac_b=None, frac_other=None, frac_nobody=None, tpr=None)
        rows.append(row)
    return rows


@register_metric("robustness_model")
@torch.no_grad()
def robustness_model(opts: MetricOptions) -> dict[str, Any]:
    """Bit accuracy and decisions of F on baked generators under weight noise, quantisation, pruning, collusion."""
    from tqdm import tqdm

    setup = _setup(opts)
    try:
        _check_resolution(opts.G, opts.F)
        extra = opts.extra
        attacks = _selected(extra, MODEL_ATTACKS)
        users = _users(opts, setup, _opt(extra, "users", 4, int))
        per = _opt(extra, "images_per_user", 8, int)
        first = int(extra.get("first_seed", 0))
        zs, _ = _latents(range(first, first + per), users[0].generator.z_dim, 0)
        rows = []
        jobs = [(name, i, s) for name, strengths in attacks if name != "collusion" for i, s in enumerate(strengths)]
        for name, i, s in tqdm(jobs, desc="robustness_model", disable=not opts.progress):
            logits, fps, owners = [], [], []
            for k, u in enumerate(users):
                attacked = MODEL_ATTACKS[name].fn(u.generator, s, _row_seed(opts.seed, name, i, k))
                logits.append(_decode(setup, to_unit_float(_user_images(setup, attacked, zs))))
                fps.append(np.repeat(u.bits[None], per, axis=0))
                owners.append(np.full(per, u.id))
            rows.append({"attack": name, "strength": s,
                         **_score(setup, np.concatenate(logits), np.concatenate(fps), np.concatenate(owners))})
        for name, strengths in attacks:
            if name == "collusion":
                rows += _collusion_rows(opts, setup, users, zs, strengths)
        return {**_summary(setup, [r for r in rows if r["attack"] != "collusion"], users),
                "images_per_user": per, "first_seed": first, "generators": users[0].source,
                "users": [u.name for u in users],
                "rows": rows}
    finally:
        if setup.registry is not None:
            setup.registry.close()
