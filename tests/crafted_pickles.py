"""Crafted release pickles, for the tests of ``interop.tf_pickle``, the ``legacy.py`` tests and the benchmark.

``state`` is a Network state as the release pickles it (its ``build_module_src`` is a payload that must never
run); ``fake_bytes(build)`` pickles ``build(Network)`` with a stand-in ``dnnlib.tflib.network`` installed only
for the duration. The other builders return the bytes of one resource bomb each; ``BOMBS`` maps a case name
to ``(builder, pattern the TFPickleError message must match)``, and bench/bench_crafted_files.py loads the
same files in fresh processes to time them.
"""

from __future__ import annotations

import pickle
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from tests.release_fakes import fake_network_class

SENTINEL = "PWNED"


def state(name: str, variables: Any, comps: Any = None, func: str = "G_main_watermark", **kw: Any) -> dict:
    return {"version": 4, "name": name, "static_kwargs": kw, "components": {} if comps is None else comps,
            "build_module_src": f"import os\nos.system('touch {SENTINEL}')\n", "build_func_name": func,
            "variables": variables}


def fake_bytes(build: Any, protocol: int = 4) -> bytes:
    """Pickle ``build(Network)`` with the fake dnnlib installed (uninstalled again before returning)."""
    with fake_network_class() as network:
        data = pickle.dumps(build(network), protocol=protocol)
    assert getattr(sys.modules.get("dnnlib.tflib.network"), "Network", None) is not network
    return data


def shared_list_kwargs(levels: int = 31) -> bytes:
    """static_kwargs holding a list of the previous level twice, ``levels`` deep: 2**levels leaves in ~430 bytes."""
    level: list = []
    for _ in range(levels):
        level = [level, level]
    return fake_bytes(lambda net: net(state("G", [], k=level)))


def shared_array_variables(refs: int = 3000, nbytes: int = 1 << 20) -> bytes:
    """One ``nbytes`` array stored once and referenced by ``refs`` variables (a 1 MB file naming 3 GB)."""
    arr = np.zeros(nbytes // 4, np.float32)
    return fake_bytes(lambda net: net(state("G", [(f"w{i}", arr) for i in range(refs)])))


def shared_components(levels: int = 30) -> bytes:
    """Components sharing the previous level twice: all_variables would walk 2**levels networks."""
    def build(net: type) -> Any:
        level = net(state("leaf", [("w", np.zeros(1, np.float32))]))
        for i in range(levels):
            level = net(state(f"n{i}", [], {"a": level, "b": level}))
        return level
    return fake_bytes(build)


def long_scope_names(depth: int = 20, name_len: int = 1000, variables: int = 2000) -> bytes:
    """Nested components with long names: every variable of the innermost one gets a ~20 KB scoped name."""
    def build(net: type) -> Any:
        scalar = np.float32(0)
        level = net(state("x" * name_len, [(f"v{i}", scalar) for i in range(variables)]))
        for i in range(depth):
            level = net(state(f"{i}" + "x" * name_len, [], {"c": level}))
        return level
    return fake_bytes(build)


def _shared_tuple(levels: int) -> bytes:
    """Pickle opcodes pushing a tuple that holds the previous level twice, ``levels`` deep (levels < 255)."""
    out = b")\x940"                                                       # memo[0] = ()
    for i in range(levels):
        out += b"h" + bytes([i]) + b"h" + bytes([i]) + b"\x86\x940"      # memo[i + 1] = (memo[i], memo[i])
    return out + b"h" + bytes([levels])


def shared_tuple_dict_key(levels: int = 40) -> bytes:
    """A dict keyed by a deeply shared tuple: hashing it takes 2**levels steps."""
    return b"\x80\x04}" + _shared_tuple(levels) + b"Ns."


def shared_tuple_frozenset(levels: int = 40) -> bytes:
    return b"\x80\x04(" + _shared_tuple(levels) + b"\x91."


def memo_index(index: int = 1 << 24, text: bool = False) -> bytes:
    """One PUT with a large memo index: the C unpickler grows its memo array to 2 * index slots."""
    return b"N" + (b"p%d\n" % index if text else b"r" + index.to_bytes(4, "little")) + b"."


def declared_length(opcode: bytes, length: int) -> bytes:
    """An opcode declaring ``length`` bytes (8-byte length field) followed by three."""
    return b"\x80\x04" + opcode + length.to_bytes(8, "little") + b"abc"


def memo_gets(n: int = 300_000) -> bytes:
    """A list of ``n`` references to one memoised object (2 bytes each)."""
    return b"\x80\x04]\x94(" + b"h\x00" * n + b"e."


def decimal_ints(n: int, digits: int = 4000) -> bytes:
    """``n`` protocol-0 INT opcodes of ``digits`` digits each (parsing decimal digits takes quadratic time)."""
    return b"(" + (b"I" + b"9" * digits + b"\n") * n + b"t."


BOMBS: dict[str, tuple[Callable[[], bytes], str]] = {
    "shared list in static_kwargs": (shared_list_kwargs, r"expands to more than [\d,]+ objects"),
    "one array referenced 3000 times": (shared_array_variables, r"materialise more than [\d,]+ bytes"),
    "shared components": (shared_components, "a Network appears twice"),
    "long scoped variable names": (long_scope_names, r"materialise more than [\d,]+ bytes"),
    "dict keyed by a shared tuple": (lambda: shared_tuple_dict_key(24), "refused a dict key of type tuple"),
    "frozenset of a shared tuple": (lambda: shared_tuple_frozenset(24), "refused opcode FROZENSET"),
    "memo index 2**24 (LONG_BINPUT)": (memo_index, "got NoneType"),
    "memo index 2**24 (text PUT)": (lambda: memo_index(text=True), "got NoneType"),
    "BINBYTES8 of 1 TiB": (lambda: declared_length(b"\x8e", 1 << 40), r"needs 1,099,511,627,776 more bytes"),
    "BINUNICODE8 of 256 MiB": (lambda: declared_length(b"\x8d", 1 << 28), r"needs 268,435,456 more bytes"),
    "FRAME of 256 MiB": (lambda: declared_length(b"\x95", 1 << 28), r"needs 268,435,456 more bytes"),
    "BYTEARRAY8 of 256 MiB": (lambda: declared_length(b"\x96", 1 << 28), "refused opcode BYTEARRAY8"),
    "300,000 memo gets": (memo_gets, r"more than 250,000 pickle opcodes"),
    "text line of 1 MiB": (lambda: b"c" + b"x" * (1 << 20), r"text line longer than 65,536 bytes"),
    "INT of 4,000 digits": (lambda: decimal_ints(1), "refused a 4,000-character number"),
    "PUT index of 2**64": (lambda: b"Np%d\n." % 2**64, "refused a 20-character number"),
}
