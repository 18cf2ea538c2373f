"""Checks on a network file's header, made before anything is built or loaded.

A network file names each network's class and constructor kwargs, and carries caller metadata
(``extra``). Both come from the file, so both are checked here against fixed limits: the JSON
texts by size and nesting depth before they are parsed, every kwarg against a per-class schema
(type and range; unknown kwargs refused), and the fields of ``extra`` that callers read by type.
The limits are generous for every configuration of this project (resolutions up to 1024, the
paper's 512 channels, 128-bit fingerprints, ...) and tight enough that no absurd network is
built. Every check raises ``ValueError`` with a message naming the field; ``networks.checkpoint``
adds the file's name.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_HEADER_BYTES = 16 << 20        # The whole safetensors header (tensor table and metadata).
MAX_NETWORKS_BYTES = 64 << 10      # The ``networks`` JSON text.
MAX_EXTRA_BYTES = 1 << 20          # The ``extra`` JSON text.
MAX_JSON_DEPTH = 16                # Nesting of arrays and objects in either.
MAX_NETWORKS = 16
NETWORK_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def _show(value: Any) -> str:
    """A short JSON rendering of a header value for an error message."""
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


@dataclass(frozen=True)
class Int:
    """An integer in [lo, hi]; optionally a power of two, optionally null."""
    lo: int
    hi: int
    power_of_two: bool = False
    nullable: bool = False

    def problem(self, value: Any) -> str | None:
        if value is None and self.nullable:
            return None
        if _is_int(value) and self.lo <= value <= self.hi and not (self.power_of_two and value & (value - 1)):
            return None
        kind = "a power of two" if self.power_of_two else "an integer"
        return f"must be {kind} in [{self.lo}, {self.hi}]{' or null' if self.nullable else ''}, got {_show(value)}"


@dataclass(frozen=True)
class Float:
    """A finite number in (lo, hi]; optionally null."""
    lo: float
    hi: float
    nullable: bool = False

    def problem(self, value: Any) -> str | None:
        if (value is None and self.nullable) or (_is_number(value) and self.lo < value <= self.hi):
            return None
        null = " or null" if self.nullable else ""
        return f"must be a number in ({self.lo:g}, {self.hi:g}]{null}, got {_show(value)}"


@dataclass(frozen=True)
class Choice:
    """One of a few strings (or booleans)."""
    options: tuple[Any, ...]

    def problem(self, value: Any) -> str | None:
        if any(type(value) is type(o) and value == o for o in self.options):
            return None
        return f"must be one of {', '.join(_show(o) for o in self.options)}; got {_show(value)}"


@dataclass(frozen=True)
class Range:
    """Null or ``[lo, hi]``: two integers with min_value <= lo <= hi <= max_value."""
    min_value: int
    max_value: int

    def problem(self, value: Any) -> str | None:
        if value is None or (isinstance(value, list) and len(value) == 2 and all(_is_int(v) for v in value)
                             and self.min_value <= value[0] <= value[1] <= self.max_value):
            return None
        return (f"must be null or [lo, hi] with {self.min_value} <= lo <= hi <= {self.max_value}, "
                f"got {_show(value)}")


@dataclass(frozen=True)
class Filter:
    """A 1-D FIR kernel: 1 to ``max_taps`` finite numbers of magnitude <= 1e6, with a non-zero sum."""
    max_taps: int = 16

    def problem(self, value: Any) -> str | None:
        if (isinstance(value, list) and 1 <= len(value) <= self.max_taps
                and all(_is_number(v) and abs(v) <= 1e6 for v in value) and sum(value) != 0):
            return None
        return (f"must be a list of 1 to {self.max_taps} numbers (magnitude <= 1e6) with a non-zero sum, "
                f"got {_show(value)}")


Field = Int | Float | Choice | Range | Filter

WIDTH = Int(1, 4096)                      # z_dim, w_dim, hidden widths
CHANNELS = Int(1, 4)                      # image channels (grey, grey+alpha, RGB, RGBA)
CHANNEL_BASE = Int(1, 1 << 16)
CHANNEL_MAX = Int(1, 1024)
FILTER = Filter()
SG2_CHANNEL_BASE = Int(1, 1 << 21)        # min(channel_base // res, channel_max): up to 1024 channels at 1024^2
CONV_CLAMP = Float(0, 1e6, nullable=True)


def _stylegan(min_res: int = 4) -> dict[str, Field]:
    return {"img_resolution": Int(min_res, 1024, power_of_two=True), "img_channels": CHANNELS,
            "channel_base": CHANNEL_BASE, "channel_max": CHANNEL_MAX, "resample_filter": FILTER}


TRUNK = {**_stylegan(), "architecture": Choice(("resnet", "orig", "skip"))}

# Per class (of ``checkpoint.NETWORK_CLASSES``): every constructor kwarg a file may give.
SCHEMAS: dict[str, dict[str, Field]] = {
    "Generator": {**_stylegan(), "z_dim": WIDTH, "n_bits": Int(0, 4096), "w_dim": WIDTH, "embed_layers": Int(1, 32),
                  "embed_hidden": WIDTH, "embed_lr_multiplier": Float(0, 1000), "c_encoding": Choice(("raw", "pm1")),
                  "mod_range": Range(1, 4096)},
    "BakedGenerator": {**_stylegan(), "z_dim": WIDTH, "n_bits": Int(0, 4096)},
    "Discriminator": {**TRUNK, "mbstd_group_size": Int(0, 64), "mbstd_num_channels": Int(0, 16)},
    "FingerprintDecoder": {**TRUNK, "z_dim": WIDTH, "n_bits": Int(0, 4096),
                           "head_channels": Int(1, 4096, nullable=True)},
    "FingerprintEncoder": {"n_bits": Int(1, 4096), "img_resolution": Int(16, 1024, power_of_two=True),
                           "img_channels": CHANNELS, "residual": Choice((False, True)),
                           "up_conv": Choice(("3x3", "2x2")), "input_concat": Choice(("final", "last_fuse")),
                           "antithetic": Choice((False, True))},
    "AutoencoderDecoder": {"n_bits": Int(1, 4096), "img_resolution": Int(32, 1024, power_of_two=True),
                     "img_channels": CHANNELS, "hidden": WIDTH},
    "DecoderWithLatent": {"z_dim": WIDTH, "n_bits": Int(1, 4096), "img_resolution": Int(32, 1024, power_of_two=True),
                          "img_channels": CHANNELS, "hidden": WIDTH},
    # The standard StyleGAN2 of networks.stylegan2_ada (NVlabs' layout; channel_base in NVlabs' convention).
    "SG2Generator": {"z_dim": WIDTH, "w_dim": WIDTH, "img_resolution": Int(4, 1024, power_of_two=True),
                     "img_channels": CHANNELS, "mapping_layers": Int(1, 32),
                     "mapping_hidden": Int(1, 4096, nullable=True),
                     "mapping_lr_multiplier": Float(0, 1000), "channel_base": SG2_CHANNEL_BASE,
                     "channel_max": CHANNEL_MAX, "conv_clamp": CONV_CLAMP},
    # An SG2Generator with a fingerprint module (networks.sg2_fingerprint).
    "SG2FingerprintedGenerator": {"z_dim": WIDTH, "w_dim": WIDTH, "img_resolution": Int(4, 1024, power_of_two=True),
                                  "img_channels": CHANNELS, "mapping_layers": Int(1, 32),
                                  "mapping_hidden": Int(1, 4096, nullable=True),
                                  "mapping_lr_multiplier": Float(0, 1000), "channel_base": SG2_CHANNEL_BASE,
                                  "channel_max": CHANNEL_MAX, "conv_clamp": CONV_CLAMP, "n_bits": Int(1, 4096),
                                  "embed_dim": Int(1, 4096, nullable=True), "embed_layers": Int(1, 32),
                                  "embed_hidden": WIDTH, "embed_lr_multiplier": Float(0, 1000),
                                  "c_encoding": Choice(("raw", "pm1"))},
    "SG2Discriminator": {"img_resolution": Int(8, 1024, power_of_two=True), "img_channels": CHANNELS,
                         "channel_base": SG2_CHANNEL_BASE, "channel_max": CHANNEL_MAX, "conv_clamp": CONV_CLAMP,
                         "mbstd_group_size": Int(1, 64), "mbstd_num_channels": Int(0, 16)},
}


def check_kwargs(cls_name: str, kwargs: dict[str, Any]) -> None:
    """Raise ValueError unless every kwarg of ``cls_name`` is known and within its schema."""
    schema = SCHEMAS.get(cls_name)
    if schema is None:
        raise ValueError(f"class {cls_name} has no kwargs schema; register it with one")
    for key, value in kwargs.items():
        if key not in schema:
            raise ValueError(f"unknown kwarg {key!r}; {cls_name} takes {', '.join(sorted(schema))}")
        problem = schema[key].problem(value)
        if problem:
            raise ValueError(f"{key} {problem}")


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in a JSON text, found without parsing it (strings dropped,
    then a running count of its brackets)."""
    brackets = re.sub(r"[^\[\]{}]", "", re.sub(r'"(?:[^"\\]|\\.)*"', "", text)).encode()
    if not brackets:
        return 0
    codes = np.frombuffer(brackets, dtype=np.uint8)
    return max(0, int(np.cumsum(np.where((codes == ord("[")) | (codes == ord("{")), 1, -1)).max()))


def parse_json(field: str, text: str, max_bytes: int) -> Any:
    """Parse the JSON text of header field ``field`` after bounding its size and depth."""
    if len(text) > max_bytes:
        raise ValueError(f"{field} is {len(text)} characters long; at most {max_bytes} are read")
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"{field} is nested {depth} levels deep; at most {MAX_JSON_DEPTH} are read")
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"{field} is not valid JSON ({e})") from None


def check_networks(networks: Any) -> None:
    """The ``networks`` table: ``{name: {"class": str, "kwargs": {...}}}``, a few sanely named entries."""
    if not isinstance(networks, dict) or not networks:
        raise ValueError("header lists no networks")
    if len(networks) > MAX_NETWORKS:
        raise ValueError(f"header lists {len(networks)} networks; at most {MAX_NETWORKS} are read")
    for name, spec in networks.items():
        if not NETWORK_NAME.fullmatch(name):
            raise ValueError(f"network name {_show(name)} is not an identifier of at most 64 characters")
        if not (isinstance(spec, dict) and set(spec) == {"class", "kwargs"} and isinstance(spec["class"], str)
                and isinstance(spec["kwargs"], dict)):
            raise ValueError(f"header entry for {name!r} is malformed: expected an object with 'class' (a string) "
                             "and 'kwargs' (an object)")


def _text(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= 4096


# Fields of ``extra`` that callers read, and what each must be when present.
EXTRA_FIELDS: dict[str, tuple[Any, str]] = {
    "source": (_text, "a path (a string)"),
    "source_sha256": (lambda v: isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) is not None,
                      "64 lower-case hex digits"),
    "kimg": (lambda v: v is None or (_is_number(v) and v >= 0), "a number >= 0"),
    "options": (lambda v: isinstance(v, dict) and (v.get("data") is None or _text(v["data"])),
                "an object whose 'data' is a path or null"),
    "run": (_text, "a string"),
    "issued_to": (_text, "a string"),
    "converted_from": (_text, "a string"),
}


def check_extra(extra: Any) -> None:
    """``extra`` is a JSON object whose fields read by callers have the types they expect."""
    if not isinstance(extra, dict):
        raise ValueError(f"extra must be a JSON object, got {type(extra).__name__} {_show(extra)}")
    for key, (ok, what) in EXTRA_FIELDS.items():
        if key in extra and not ok(extra[key]):
            raise ValueError(f"extra.{key} must be {what}, got {_show(extra[key])}")
