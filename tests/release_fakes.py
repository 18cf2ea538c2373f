"""Test helpers that write pickles the way the release (or an attacker) would."""

from __future__ import annotations

import contextlib
import sys
import types
from collections.abc import Iterator
from typing import Any


class Reduce:
    """Pickles as ``func(*args)`` (optionally followed by BUILD ``state``): the classic exploit shape."""

    def __init__(self, func: Any, args: tuple, state: Any = None) -> None:
        self.func, self.args, self.state = func, args, state

    def __reduce__(self) -> tuple:
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


@contextlib.contextmanager
def fake_network_class() -> Iterator[type]:
    """A class pickled as ``dnnlib.tflib.network.Network`` (its state from ``__getstate__``).

    Only the two submodules are installed, for the duration of the block; the project's real
    ``dnnlib`` package stays in place, and the fake modules are removed afterwards so that
    loading cannot fall back on them.
    """

    class Network:
        def __init__(self, state: Any) -> None:
            self._state = state

        def __getstate__(self) -> Any:
            return self._state

    Network.__module__, Network.__qualname__ = "dnnlib.tflib.network", "Network"
    names = ("dnnlib.tflib", "dnnlib.tflib.network")
    mods = {n: types.ModuleType(n) for n in names}
    mods["dnnlib.tflib.network"].Network = Network
    saved = {n: sys.modules.get(n) for n in names}
    sys.modules.update(mods)
    try:
        yield Network
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m
