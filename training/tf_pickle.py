"""Safe reader for the reference release's TensorFlow network pickles.

Threat model: a pickle is a small program. ``pickle.load`` imports any module and calls any
callable the file names (``os.system``, ``builtins.eval``, ...), so loading an untrusted
``network-snapshot-*.pkl`` the ordinary way runs arbitrary code. The release's pickles hold a
tuple of ``dnnlib.tflib.network.Network`` states, each carrying Python source
(``build_module_src``) that the original loader executes.

This reader cannot run anything from the file. Its unpickler resolves only the Network class
and numpy's ndarray/dtype/_reconstruct/scalar (numpy 1 and numpy 2 spellings), each mapped to an
inert stand-in defined here, so the file can only create ``TFNetwork`` / ``_DType`` / ``_Array``
/ ``_Scalar`` records holding plain data. Persistent ids are refused. numpy's own C
reconstruction code never sees the file's data either: after loading, every record is validated
(types, key sets, dtype codes, byte counts) and arrays are rebuilt with ``np.frombuffer`` from a
whitelist of numeric dtype codes. ``build_module_src`` is kept as text and never executed.
Resource exhaustion (a huge file) is not addressed.
"""

from __future__ import annotations

import math
import os
import pickle
from collections import OrderedDict
from typing import Any

import numpy as np

__all__ = ["TFPickleError", "TFNetwork", "load_tf_pickle"]

_NET_KEYS = {"version", "name", "static_kwargs", "components", "build_module_src", "build_func_name",
             "variables"}
_DTYPE_CODES = {"b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8"}
_MAX_DEPTH = 32


class TFPickleError(ValueError):
    """The file is not a release network pickle, or it contains something this reader refuses."""


class _Record:
    """Base of the inert stand-ins: accepts exactly one BUILD (``__setstate__``) and stores it."""

    _state: Any = None
    _has_state = False

    def __setstate__(self, state: Any) -> None:
        if self._has_state:
            raise TFPickleError(f"{type(self).__name__} state set twice")
        self._state, self._has_state = state, True


class _DType(_Record):
    """Stand-in for ``numpy.dtype(code, align, copy)``; only plain numeric codes are accepted."""

    code: Any = None  # stays None when the file builds the object with NEWOBJ instead of a call

    def __init__(self, code: Any, align: Any = False, copy: Any = True) -> None:
        if type(code) is not str or code not in _DTYPE_CODES:
            raise TFPickleError(f"refused numpy dtype {code!r} (only plain numeric dtypes are allowed)")
        self.code = code

    def to_numpy(self) -> np.dtype:
        if self.code not in _DTYPE_CODES:
            raise TFPickleError("refused numpy dtype built without a code")
        order = "|"
        if self._has_state:  # (version, byteorder, subarray, names, fields, elsize, alignment, flags)
            st = self._state
            if not (isinstance(st, tuple) and len(st) >= 5 and st[2:5] == (None, None, None)
                    and st[1] in ("<", ">", "|", "=")):
                raise TFPickleError(f"refused numpy dtype state {st!r}")
            order = st[1]
        return np.dtype(self.code if order in "|=" else order + self.code)


class _Array(_Record):
    """Stand-in for ``numpy.core.multiarray._reconstruct(ndarray, ...)`` + ``ndarray.__setstate__``."""

    def to_numpy(self) -> np.ndarray:
        st = self._state  # (version, shape, dtype, is_fortran, raw bytes)
        if not (isinstance(st, tuple) and len(st) == 5 and st[0] == 1 and type(st[2]) is _DType
                and isinstance(st[3], bool) and isinstance(st[4], bytes) and isinstance(st[1], tuple)
                and len(st[1]) <= _MAX_DEPTH
                and all(type(n) is int and n >= 0 for n in st[1])):
            raise TFPickleError("malformed numpy array state")
        shape, dtype = st[1], st[2].to_numpy()
        if len(st[4]) != math.prod(shape) * dtype.itemsize:
            raise TFPickleError(f"numpy array data size does not match shape {shape} {dtype}")
        flat = np.frombuffer(st[4], dtype=dtype, count=math.prod(shape))
        return flat.reshape(shape, order="F" if st[3] else "C")


class _Scalar:
    """Stand-in for ``numpy.core.multiarray.scalar(dtype, raw bytes)``; takes no BUILD state."""

    dtype: Any = None  # class defaults: NEWOBJ creates instances without calling __init__
    data: Any = None

    def __init__(self, dtype: Any, data: Any = None) -> None:
        self.dtype, self.data = dtype, data

    def __setstate__(self, state: Any) -> None:
        raise TFPickleError("refused state for a numpy scalar")

    def to_numpy(self) -> np.ndarray:
        if type(self.dtype) is not _DType or type(self.data) is not bytes:
            raise TFPickleError("refused numpy scalar (expected a numeric dtype and raw bytes)")
        dtype = self.dtype.to_numpy()
        if len(self.data) != dtype.itemsize:
            raise TFPickleError(f"numpy scalar data size does not match {dtype}")
        return np.frombuffer(self.data, dtype=dtype, count=1).reshape(())


_NDARRAY = object()  # what the file gets for `numpy.ndarray`: a token, neither callable nor a class


def _reconstruct(subtype: Any, shape: Any = None, typecode: Any = None) -> _Array:
    if subtype is not _NDARRAY:
        raise TFPickleError("refused numpy _reconstruct of anything but numpy.ndarray")
    return _Array()


def _plain(obj: Any, depth: int = 0) -> Any:
    """Return ``obj`` if it is plain data (None/bool/int/float/str, lists, tuples, str-keyed dicts)."""
    if depth > _MAX_DEPTH:
        raise TFPickleError("static_kwargs nested too deeply (or cyclic)")
    if obj is None or type(obj) in (bool, int, float, str):
        return obj
    if type(obj) is _Scalar:
        return obj.to_numpy().item()
    if type(obj) in (list, tuple):
        return type(obj)(_plain(v, depth + 1) for v in obj)
    if type(obj) is dict and all(type(k) is str for k in obj):
        return {k: _plain(v, depth + 1) for k, v in obj.items()}
    raise TFPickleError(f"static_kwargs holds a non-plain value of type {type(obj).__name__}")


class TFNetwork(_Record):
    """Passive stand-in for ``dnnlib.tflib.network.Network``: names, kwargs and numpy variables.

    Attributes are filled after loading (by ``load_tf_pickle``): ``name``, ``version``,
    ``static_kwargs``, ``components`` (dict key -> TFNetwork, e.g. ``synthesis``/``mapping``),
    ``build_module_src`` (text, never executed), ``build_func_name`` and ``variables``
    (OrderedDict name -> float32 ndarray, names relative to this network's scope).
    """

    name: str
    version: int
    static_kwargs: dict[str, Any]
    components: dict[str, TFNetwork]
    build_module_src: str
    build_func_name: str
    variables: OrderedDict[str, np.ndarray]
    _finalized = False  # class default: the file creates instances with NEWOBJ, bypassing __init__

    def __setstate__(self, state: Any) -> None:
        if type(state) is not dict:
            raise TFPickleError(f"Network state must be a dict, got {type(state).__name__}")
        missing = _NET_KEYS - {"components"} - set(state)  # components is absent in old versions
        unexpected = [repr(k) for k in state if k not in _NET_KEYS]
        if missing or unexpected:
            raise TFPickleError(f"Network state lacks keys {sorted(missing)} / has unknown keys {unexpected}")
        super().__setstate__(state)

    def _finalize(self, stack: tuple[int, ...] = ()) -> None:
        """Validate the stored state and convert it (recursively) into plain attributes."""
        if self._finalized:
            return
        if id(self) in stack or len(stack) > _MAX_DEPTH:
            raise TFPickleError("Network components are cyclic or nested too deeply")
        if not self._has_state:
            raise TFPickleError("a Network was created without state")
        st = self._state
        for key in ("name", "build_module_src", "build_func_name"):
            if type(st[key]) is not str:
                raise TFPickleError(f"Network {key} must be a str, got {type(st[key]).__name__}")
        if type(st["version"]) is not int or type(st["static_kwargs"]) is not dict:
            raise TFPickleError(f"Network {st['name']!r}: bad version or static_kwargs")
        comps, variables = st.get("components", {}), st["variables"]
        if type(comps) is not dict or any(type(k) is not str or type(c) is not TFNetwork
                                          for k, c in comps.items()):
            raise TFPickleError(f"Network {st['name']!r}: components must map str to Network")
        if type(variables) not in (list, tuple):
            raise TFPickleError(f"Network {st['name']!r}: variables must be a list of (name, array) pairs")
        converted: OrderedDict[str, np.ndarray] = OrderedDict()
        for item in variables:
            if not (type(item) in (list, tuple) and len(item) == 2 and type(item[0]) is str
                    and type(item[1]) in (_Array, _Scalar) and item[0] not in converted):
                raise TFPickleError(f"Network {st['name']!r}: bad or duplicate variable entry")
            converted[item[0]] = item[1].to_numpy().astype(np.float32)  # copies: writable, native order
        for comp in comps.values():
            comp._finalize(stack + (id(self),))
        self.name, self.version, self.build_module_src = st["name"], st["version"], st["build_module_src"]
        self.build_func_name, self.components = st["build_func_name"], dict(comps)
        self.static_kwargs = _plain(st["static_kwargs"])
        self.variables, self._finalized = converted, True
        self._state = None  # the raw records are no longer needed; do not hold the data twice

    def all_variables(self, prefix: str = "") -> OrderedDict[str, np.ndarray]:
        """Every variable of this network and its components, named as the release prints them.

        Component variables are prefixed with the component's network name (its TF scope), e.g.
        ``G_synthesis/4x4/Conv/weight``; pass ``prefix="G/"`` to get the fully scoped names.
        """
        out: OrderedDict[str, np.ndarray] = OrderedDict((prefix + k, v) for k, v in self.variables.items())
        for comp in self.components.values():
            out.update(comp.all_variables(f"{prefix}{comp.name}/"))
        return out

    def __repr__(self) -> str:
        if not self._finalized:
            return "TFNetwork(<not loaded>)"
        return (f"TFNetwork(name={self.name!r}, build_func_name={self.build_func_name!r}, "
                f"components={list(self.components)})")


_ALLOWED: dict[tuple[str, str], Any] = {
    ("dnnlib.tflib.network", "Network"): TFNetwork,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _DType,
}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_mod, "_reconstruct")] = _reconstruct
    _ALLOWED[(_mod, "scalar")] = _Scalar


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the names in ``_ALLOWED`` and refuses persistent ids."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except (KeyError, TypeError):
            raise TFPickleError(
                f"refused global {module}.{name} (only dnnlib.tflib.network.Network and numpy array "
                "reconstruction may appear in a network pickle)") from None

    def persistent_load(self, pid: Any) -> Any:
        raise TFPickleError(f"refused persistent id {pid!r} (network pickles use none)")


def load_tf_pickle(path: str | os.PathLike[str]) -> tuple[TFNetwork, ...] | TFNetwork:
    """Read a release network pickle without executing anything from it.

    Returns the tuple ``(E, G, D, Gs)`` (or ``(G, D, Gs)``) of ``TFNetwork`` or a lone network.
    Raises ``TFPickleError`` for a missing, truncated or non-pickle file, a refused global, a
    persistent id, or a structure that is not a network pickle.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            obj = _RestrictedUnpickler(f, fix_imports=False).load()
    except FileNotFoundError:
        raise TFPickleError(f"{path}: no such file") from None
    except TFPickleError as e:
        raise TFPickleError(f"{path}: {e}") from None
    except OSError as e:
        raise TFPickleError(f"{path}: cannot read ({e})") from None
    except Exception as e:  # anything else the unpickler raises means "not a valid pickle"
        raise TFPickleError(f"{path}: not a valid or complete pickle ({type(e).__name__}: {e})") from None
    if type(obj) is tuple and len(obj) in (3, 4) and all(type(n) is TFNetwork for n in obj):
        nets: tuple[TFNetwork, ...] = obj
    elif type(obj) is TFNetwork:
        nets = (obj,)
    else:
        raise TFPickleError(f"{path}: expected a Network or a tuple (E, G, D, Gs) / (G, D, Gs) of Networks, "
                            f"got {type(obj).__name__}")
    try:
        for net in nets:
            net._finalize()
    except Exception as e:  # TFPickleError from validation; anything else would be a malformed record
        raise TFPickleError(f"{path}: {e}" if isinstance(e, TFPickleError) else
                            f"{path}: malformed network state ({type(e).__name__}: {e})") from None
    return obj
