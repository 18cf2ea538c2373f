"""Crafted network files, for the tests of ``networks.checkpoint``, the CLI tests and the benchmarks.

``network_file`` saves a small real network file (tiny networks built from the ``tiny32`` preset at
16x16, so it loads in milliseconds); ``rewrite_header`` edits its safetensors header in place (an 8-byte
little-endian length, then the JSON header whose ``__metadata__`` holds our string fields);
``crafted_network(dest, case)`` writes one of the ``CASES`` in one line, each a file that loading must
refuse with a ``CheckpointError`` whose message contains ``CASES[case].match``. For example::

    bad = crafted_network(tmp_path / "bad.safetensors", "embed_layers")
    result = runner.invoke(generate, ["--network", str(bad), ...])   # one "error: ..." line, rc 1
"""

from __future__ import annotations

import copy
import json
import os
import struct
from pathlib import Path
from typing import Any, NamedTuple

import torch

from networks import build_networks, save_network

TINY = dict(resolution=16, n_bits=8, z_dim=8, w_dim=8, embed_hidden=8, embed_layers=2, channel_base=64,
            channel_max=16, mod_range=(4, 16))
KEEP = object()  # "leave this field as it is"


def tiny_networks(seed: int = 0) -> dict[str, torch.nn.Module]:
    """``{'G', 'D', 'F'}``: the tiny networks the files here hold (same seed, same weights)."""
    torch.manual_seed(seed)
    return build_networks("tiny32", **TINY)


def network_file(dest: str | os.PathLike, names: tuple[str, ...] = ("G_ema",), nan_in: str | None = None) -> Path:
    """Save tiny networks under ``names`` (among G, G_ema, D, F) to ``dest``.

    ``("G_ema",)`` is a generator file, ``("G", "G_ema", "D", "F")`` a snapshot. ``nan_in`` names a tensor
    (``"<network>.<key>"``) whose first element is set to NaN before saving.
    """
    nets = tiny_networks()
    chosen = {name: nets[name.removesuffix("_ema")] for name in names}
    if nan_in is not None:
        name, key = nan_in.split(".", 1)
        chosen[name] = copy.deepcopy(chosen[name])
        with torch.no_grad():
            chosen[name].state_dict()[key].view(-1)[0] = float("nan")
    return save_network(dest, extra={"kimg": 1.0}, **chosen)


def baked_file(dest: str | os.PathLike, source: str | os.PathLike, source_sha256: str | None = None) -> Path:
    """A tiny baked generator whose header names ``source`` as the snapshot it was issued from."""
    G = tiny_networks()["G"]
    extra: dict[str, Any] = {"issued_to": "eve", "source": str(source)}
    if source_sha256 is not None:
        extra["source_sha256"] = source_sha256
    return save_network(dest, extra=extra, G=G.bake(torch.zeros(1, G.n_bits)))


def rewrite_header(path: str | os.PathLike, *, kwargs: dict[str, Any] | None = None, network: str | None = None,
                   metadata: dict[str, str] | None = None, extra: Any = KEEP,
                   rename_tensor: tuple[str, str] | None = None, header_length: int | None = None) -> Path:
    """Edit the header of network file ``path`` in place; returns ``path``.

    ``kwargs`` are merged into the constructor kwargs of ``network`` (default: the first network);
    ``metadata`` replaces raw metadata strings (e.g. ``{"networks": "[" * 10**5}``); ``extra`` replaces
    the ``extra`` field by the JSON of any value; ``rename_tensor=(old, new)`` renames a tensor entry;
    ``header_length`` overwrites the 8-byte length that leads the file (nothing else is then changed).
    """
    path = Path(path)
    data = path.read_bytes()
    if header_length is not None:
        path.write_bytes(struct.pack("<Q", header_length) + data[8:])
        return path
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    meta = header["__metadata__"]
    if kwargs:
        nets = json.loads(meta["networks"])
        nets[network or next(iter(nets))]["kwargs"].update(kwargs)
        meta["networks"] = json.dumps(nets)
    if extra is not KEEP:
        meta["extra"] = json.dumps(extra)
    if rename_tensor is not None:
        old, new = rename_tensor
        header[new] = header.pop(old)
    meta.update(metadata or {})
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n:])
    return path


class Case(NamedTuple):
    """A crafted header: ``rewrite_header`` arguments, and what the refusal's message must contain."""
    match: str
    edits: dict[str, Any]


def deep(levels: int) -> str:
    """A JSON array nested ``levels`` deep."""
    return "[" * levels + "]" * levels


CASES: dict[str, Case] = {
    # Constructor kwargs (G_ema of a generator file).
    "embed_layers": Case("embed_layers", {"kwargs": {"embed_layers": 10**7}}),
    "img_resolution": Case("img_resolution", {"kwargs": {"img_resolution": 2**40}}),
    "resolution_not_power_of_two": Case("img_resolution", {"kwargs": {"img_resolution": 48}}),
    "channel_max": Case("channel_max", {"kwargs": {"channel_max": 10**12}}),
    "negative_z_dim": Case("z_dim", {"kwargs": {"z_dim": -1}}),
    "negative_img_channels": Case("img_channels", {"kwargs": {"img_channels": -3}}),
    "bool_for_int": Case("n_bits", {"kwargs": {"n_bits": True}}),
    "float_for_int": Case("w_dim", {"kwargs": {"w_dim": 8.0}}),
    "string_for_int": Case("embed_hidden", {"kwargs": {"embed_hidden": "8"}}),
    "nan_lr_multiplier": Case("embed_lr_multiplier", {"kwargs": {"embed_lr_multiplier": float("nan")}}),
    "c_encoding": Case("c_encoding", {"kwargs": {"c_encoding": "gray"}}),
    "mod_range": Case("mod_range", {"kwargs": {"mod_range": [16, 4]}}),
    "resample_filter": Case("resample_filter", {"kwargs": {"resample_filter": [1, -1]}}),
    # The JSON fields.
    "networks_deep": Case("networks is nested", {"metadata": {"networks": deep(10_000)}}),
    "extra_deep": Case("extra is nested", {"metadata": {"extra": deep(100_000)}}),
    "networks_huge": Case("networks is", {"metadata": {"networks": json.dumps({"G": " " * (1 << 20)})}}),
    "too_many_networks": Case("17 networks", {"metadata": {"networks": json.dumps(
        {f"N{i}": {"class": "Generator", "kwargs": {}} for i in range(17)})}}),
    "network_name": Case("network name", {"metadata": {"networks": json.dumps({"G.x": {"class": "Generator",
                                                                                     "kwargs": {}}})}}),
    "extra_list": Case("extra must be a JSON object", {"extra": [1, 2]}),
    "extra_source": Case("extra.source", {"extra": {"source": 5}}),
    "extra_source_sha256": Case("extra.source_sha256", {"extra": {"source_sha256": ["ab"]}}),
    "extra_kimg": Case("extra.kimg", {"extra": {"kimg": "soon"}}),
    "extra_options": Case("extra.options", {"extra": {"options": ["data"]}}),
    # The rest of the header.
    "format_version": Case("format_version", {"metadata": {"format_version": "-1"}}),
    "kind": Case("kind", {"metadata": {"kind": "baked_generator"}}),
    "stray_tensor": Case("belongs to no network", {"rename_tensor": ("G_ema.synthesis.latent.bias",
                                                                     "H.synthesis.latent.bias")}),
    "header_length": Case("header claims", {"header_length": 2**60}),
}


def crafted_network(dest: str | os.PathLike, case: str) -> Path:
    """Write crafted case ``case`` (a key of ``CASES``): a tiny generator file with its header edited."""
    return rewrite_header(network_file(dest), **CASES[case].edits)
