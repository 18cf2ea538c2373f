"""Safe reader for the reference release's TensorFlow network pickles.

Threat model: a pickle is a small program. ``pickle.load`` imports any module and calls any
callable the file names (``os.system``, ``builtins.eval``, ...), so loading an untrusted
``network-snapshot-*.pkl`` the ordinary way runs arbitrary code. The release's pickles hold a
tuple of ``dnnlib.tflib.network.Network`` states, each carrying Python source
(``build_module_src``) that the original loader executes.

Code execution. This reader cannot run anything from the file. Its unpickler resolves only the
Network class and numpy's ndarray/dtype/_reconstruct/scalar (numpy 1 and numpy 2 spellings), each
mapped to an inert stand-in defined here, so the file can only create ``TFNetwork`` / ``_DType`` /
``_Array`` / ``_Scalar`` records holding plain data. Persistent ids and the extension registry
(whose process-wide cache could hand out a callable without asking ``find_class``) are refused,
and BUILD may only set the state of those records. numpy's own C reconstruction code never sees
the file's data either: after loading, every record is validated (types, key sets, dtype codes,
byte counts) and arrays are rebuilt with ``np.frombuffer`` from a whitelist of numeric dtype codes.
``build_module_src`` is kept as text and never executed.

Resource exhaustion. A small file can still ask for a lot of work, so every stage is bounded:

* the file: only regular files (a pipe or device would block or never end), at most
  ``MAX_FILE_BYTES``;
* the unpickler: the pure-Python one, whose memo is a dict (the C unpickler grows its memo array
  to twice the largest index a PUT names: a 12-byte file costs gigabytes), at most
  ``MAX_OPCODES`` opcodes (release pickles have a few thousand), lengths that run past the end of
  the file refused before anything is allocated, text lines of at most ``MAX_LINE_BYTES`` and
  decimal numbers of at most 19 digits (parsing digits takes quadratic time; big memo indices can
  collide in the memo's hash table), no sets or bytearrays, and only ``str`` dictionary keys
  (hashing a deeply shared tuple takes exponential time);
* the walk that validates and converts the records: shared references count every time they are
  reached, so a structure that references itself exponentially often (a list holding the previous
  level twice, 31 levels deep) runs out of budget, not memory. It may visit at most 2 objects per
  opcode + 10,000, and materialise (arrays as float32, scalars, kwargs strings, scoped variable
  names) at most the file size + ``BYTES_ALLOWANCE``; a Network may appear only once (no shared or
  cyclic components), and nesting is at most ``_MAX_DEPTH`` deep.

So memory stays within a small multiple of the file size (plus tens of MB), and time grows with the
size of the file, not with what the file asks for (bench/bench_crafted_files.py measures both).
"""

from __future__ import annotations

import math
import os
import pickle
import pickletools
import stat
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["TFPickleError", "TFNetwork", "load_tf_pickle", "MAX_FILE_BYTES", "MAX_OPCODES"]

MAX_FILE_BYTES = 1 << 30      # StyleGAN2's 1024x1024 FFHQ pickle (G, D, Gs) is about 360 MB
MAX_OPCODES = 250_000         # the 128x128 release snapshot (E, G, D, Gs; 23 MB) has 5,901
MAX_LINE_BYTES = 1 << 16      # text opcodes (protocol 0 globals, ints, strings) hold short lines
BYTES_ALLOWANCE = 1 << 20     # materialised bytes beyond the file size (scoped names, small arrays widened)

_NET_KEYS = {"version", "name", "static_kwargs", "components", "build_module_src", "build_func_name",
             "variables"}
_DTYPE_CODES = {"b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8"}
_MAX_DEPTH = 32
_MAX_DECIMAL = 20             # bytes in the text line of an INT, LONG, PUT or GET opcode (newline included)


class TFPickleError(ValueError):
    """The file is not a release network pickle, or it contains something this reader refuses."""


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def clip_repr(value: Any, limit: int = 80) -> str:
    """A short description of a value from the file for an error message: a clipped repr of a str,
    bytes or number, otherwise only the type name (a crafted structure can be huge to repr)."""
    if type(value) is int and value.bit_length() > 256:
        return f"<int of {value.bit_length():,} bits>"
    if value is None or type(value) in (bool, int, float, str, bytes):
        return _clip(repr(value), limit)
    return f"<{type(value).__name__}>"


class _Budget:
    """What the walk over the loaded records may still visit and materialise.

    Shared references are charged every time they are reached, so the cost of converting the file
    is bounded by the file, however often it reuses an object through the pickle memo.
    """

    def __init__(self, file_bytes: int, opcodes: int) -> None:
        self.max_objects, self.max_bytes = 2 * opcodes + 10_000, file_bytes + BYTES_ALLOWANCE
        self.objects, self.nbytes = self.max_objects, self.max_bytes
        self.networks: set[int] = set()

    def visit(self) -> None:
        self.objects -= 1
        if self.objects < 0:
            raise TFPickleError(f"the pickle expands to more than {self.max_objects:,} objects (limit: 2 per "
                                "opcode + 10,000; a shared reference counts each time it is used)")

    def spend(self, nbytes: int) -> None:
        self.nbytes -= nbytes
        if self.nbytes < 0:
            raise TFPickleError(f"the pickle would materialise more than {self.max_bytes:,} bytes (limit: the "
                                f"file size + {BYTES_ALLOWANCE:,}; a shared reference counts each time it is used)")


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
            raise TFPickleError(f"refused numpy dtype {clip_repr(code)} (only plain numeric dtypes are allowed)")
        self.code = code

    def to_numpy(self) -> np.dtype:
        if self.code not in _DTYPE_CODES:
            raise TFPickleError("refused numpy dtype built without a code")
        order = "|"
        if self._has_state:  # (version, byteorder, subarray, names, fields, elsize, alignment, flags)
            st = self._state
            if not (isinstance(st, tuple) and len(st) >= 5 and st[2:5] == (None, None, None)
                    and st[1] in ("<", ">", "|", "=")):
                raise TFPickleError(f"refused numpy dtype state {clip_repr(st)}")
            order = st[1]
        return np.dtype(self.code if order in "|=" else order + self.code)


class _Array(_Record):
    """Stand-in for ``numpy.core.multiarray._reconstruct(ndarray, ...)`` + ``ndarray.__setstate__``."""

    def to_numpy(self, budget: _Budget | None = None) -> np.ndarray:
        """The array (a view of the file's bytes); its float32 copy is charged to ``budget`` first."""
        st = self._state  # (version, shape, dtype, is_fortran, raw bytes)
        if not (isinstance(st, tuple) and len(st) == 5 and st[0] == 1 and type(st[2]) is _DType
                and isinstance(st[3], bool) and isinstance(st[4], bytes) and isinstance(st[1], tuple)
                and len(st[1]) <= _MAX_DEPTH
                and all(type(n) is int and n >= 0 for n in st[1])):
            raise TFPickleError("malformed numpy array state")
        shape, dtype = st[1], st[2].to_numpy()
        count = math.prod(shape)
        if len(st[4]) != count * dtype.itemsize:
            raise TFPickleError(f"numpy array data size does not match shape {shape} {dtype}")
        if budget is not None:
            budget.spend(max(len(st[4]), 4 * count))
        flat = np.frombuffer(st[4], dtype=dtype, count=count)
        return flat.reshape(shape, order="F" if st[3] else "C")


class _Scalar:
    """Stand-in for ``numpy.core.multiarray.scalar(dtype, raw bytes)``; takes no BUILD state."""

    dtype: Any = None  # class defaults: NEWOBJ creates instances without calling __init__
    data: Any = None

    def __init__(self, dtype: Any, data: Any = None) -> None:
        self.dtype, self.data = dtype, data

    def __setstate__(self, state: Any) -> None:
        raise TFPickleError("refused state for a numpy scalar")

    def to_numpy(self, budget: _Budget | None = None) -> np.ndarray:
        if type(self.dtype) is not _DType or type(self.data) is not bytes:
            raise TFPickleError("refused numpy scalar (expected a numeric dtype and raw bytes)")
        dtype = self.dtype.to_numpy()
        if len(self.data) != dtype.itemsize:
            raise TFPickleError(f"numpy scalar data size does not match {dtype}")
        if budget is not None:
            budget.spend(8)
        return np.frombuffer(self.data, dtype=dtype, count=1).reshape(())


_NDARRAY = object()  # what the file gets for `numpy.ndarray`: a token, neither callable nor a class


def _reconstruct(subtype: Any, shape: Any = None, typecode: Any = None) -> _Array:
    if subtype is not _NDARRAY:
        raise TFPickleError("refused numpy _reconstruct of anything but numpy.ndarray")
    return _Array()


def _plain(obj: Any, budget: _Budget, depth: int = 0) -> Any:
    """A copy of ``obj`` if it is plain data (None/bool/int/float/str, lists, tuples, str-keyed dicts).

    Every value is charged to ``budget`` each time it is reached, so the copy is a tree no larger than
    the budget even when the file shares one list many times over.
    """
    budget.visit()
    if depth > _MAX_DEPTH:
        raise TFPickleError("static_kwargs nested too deeply (or cyclic)")
    if obj is None or type(obj) in (bool, float):
        return obj
    if type(obj) is int:
        budget.spend(obj.bit_length() // 8)
        return obj
    if type(obj) is str:
        budget.spend(len(obj))
        return obj
    if type(obj) is _Scalar:
        return obj.to_numpy(budget).item()
    if type(obj) in (list, tuple):
        return type(obj)(_plain(v, budget, depth + 1) for v in obj)
    if type(obj) is dict and all(type(k) is str for k in obj):
        return {k: _plain(v, budget, depth + 1) for k, v in obj.items()}
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
        unexpected = [clip_repr(k) for k in state if k not in _NET_KEYS]
        if missing or unexpected:
            raise TFPickleError(f"Network state lacks keys {sorted(missing)} / has unknown keys {unexpected}")
        super().__setstate__(state)

    def _finalize(self, budget: _Budget, scope: int | None = None, depth: int = 0) -> None:
        """Validate the stored state and convert it (recursively) into plain attributes.

        ``scope`` is the length of the name prefix ``all_variables`` gives this network's variables
        (None at the top); the scoped names are charged to ``budget`` along with the arrays.
        """
        if id(self) in budget.networks:
            raise TFPickleError("a Network appears twice (components are shared or cyclic)")
        if depth > _MAX_DEPTH:
            raise TFPickleError(f"Network components nested more than {_MAX_DEPTH} deep")
        budget.networks.add(id(self))
        budget.visit()
        if not self._has_state:
            raise TFPickleError("a Network was created without state")
        st = self._state
        for key in ("name", "build_module_src", "build_func_name"):
            if type(st[key]) is not str:
                raise TFPickleError(f"Network {key} must be a str, got {type(st[key]).__name__}")
        name = clip_repr(st["name"])
        if type(st["version"]) is not int or type(st["static_kwargs"]) is not dict:
            raise TFPickleError(f"Network {name}: bad version or static_kwargs")
        comps, variables = st.get("components", {}), st["variables"]
        if type(comps) is not dict or any(type(k) is not str or type(c) is not TFNetwork
                                          for k, c in comps.items()):
            raise TFPickleError(f"Network {name}: components must map str to Network")
        if type(variables) not in (list, tuple):
            raise TFPickleError(f"Network {name}: variables must be a list of (name, array) pairs")
        scope = 0 if scope is None else scope + len(st["name"]) + 1
        converted: OrderedDict[str, np.ndarray] = OrderedDict()
        for item in variables:
            budget.visit()
            if not (type(item) in (list, tuple) and len(item) == 2 and type(item[0]) is str
                    and type(item[1]) in (_Array, _Scalar) and item[0] not in converted):
                raise TFPickleError(f"Network {name}: bad or duplicate variable entry")
            budget.spend(scope + len(item[0]))
            converted[item[0]] = item[1].to_numpy(budget).astype(np.float32)  # copies: writable, native order
        for comp in comps.values():
            comp._finalize(budget, scope, depth + 1)
        self.name, self.version, self.build_module_src = st["name"], st["version"], st["build_module_src"]
        self.build_func_name, self.components = st["build_func_name"], dict(comps)
        self.static_kwargs = _plain(st["static_kwargs"], budget)
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


class _BoundedReader:
    """The file as the unpickler sees it: a read that would run past the end of the file is refused before
    anything is allocated (a crafted length), and a text line may not exceed ``MAX_LINE_BYTES``."""

    def __init__(self, file: Any, size: int) -> None:
        self._file, self._left = file, size

    def read(self, n: int) -> bytes:
        if n > self._left:
            raise pickle.UnpicklingError(f"an opcode needs {n:,} more bytes but only {self._left:,} remain "
                                         "(the file is truncated, or declares a length it does not have)")
        data = self._file.read(n)
        self._left -= len(data)
        return data

    def readline(self) -> bytes:
        line = self._file.readline(MAX_LINE_BYTES + 1)
        self._left -= len(line)
        if len(line) > MAX_LINE_BYTES:
            raise TFPickleError(f"a text line longer than {MAX_LINE_BYTES:,} bytes")
        if not line.endswith(b"\n"):
            raise pickle.UnpicklingError("a text line runs to the end of the file (truncated)")
        return line


def _refuse(name: str, why: str) -> Callable[[Any], None]:
    def load(self: Any) -> None:
        raise TFPickleError(f"refused opcode {name} ({why})")
    return load


def _str_keys_then(load: Callable[[Any], None], keys: Callable[[list], list]) -> Callable[[Any], None]:
    """``load`` after checking that the dictionary keys it is about to insert (``keys(stack)``) are str."""
    def checked(self: Any) -> None:
        for key in keys(self.stack):
            if type(key) is not str:
                raise TFPickleError(f"refused a dict key of type {type(key).__name__} (network pickles use str keys)")
        load(self)
    return checked


def _short_number(load: Callable[[Any], None]) -> Callable[[Any], None]:
    """``load`` (INT, LONG, PUT, GET: a decimal number on a text line) with the line at most ``_MAX_DECIMAL``
    bytes: parsing decimal digits takes quadratic time, and memo indices >= 2**61 - 1 can share a hash."""
    def checked(self: Any) -> None:
        readline = self.readline

        def short_line() -> bytes:
            line = readline()
            if len(line) > _MAX_DECIMAL:
                raise TFPickleError(f"refused a {len(line) - 1:,}-character number (network pickles hold small ones)")
            return line
        self.readline = short_line
        try:
            load(self)
        finally:
            self.readline = readline
    return checked


def _build(self: Any) -> None:
    """BUILD: only the stand-in records take state (no writing into a function's or class's __dict__)."""
    state, inst = self.stack.pop(), self.stack[-1]
    if type(inst) not in (TFNetwork, _DType, _Array, _Scalar):
        raise TFPickleError(f"refused BUILD on a {type(inst).__name__} (only networks and numpy records take state)")
    inst.__setstate__(state)


def _counted(load: Callable[[Any], None]) -> Callable[[Any], None]:
    def step(self: Any) -> None:
        self.opcodes += 1
        if self.opcodes > self.max_opcodes:
            raise TFPickleError(f"more than {self.max_opcodes:,} pickle opcodes ({self.opcodes_note})")
        load(self)
    return step


def _dispatch() -> dict[int, Callable[[Any], None]]:
    """The pure-Python unpickler's opcode table, restricted and counted."""
    base, code = pickle._Unpickler.dispatch, {op.name: op.code.encode("latin-1")[0] for op in pickletools.opcodes}
    table = dict(base)
    for name in ("EMPTY_SET", "ADDITEMS", "FROZENSET"):
        table[code[name]] = _refuse(name, "sets never appear in a network pickle")
    for name in ("EXT1", "EXT2", "EXT4"):
        table[code[name]] = _refuse(name, "the extension registry is never used by network pickles")
    for name in ("BYTEARRAY8", "NEXT_BUFFER", "READONLY_BUFFER"):
        table[code[name]] = _refuse(name, "network pickles store arrays as bytes")
    table[code["SETITEM"]] = _str_keys_then(base[code["SETITEM"]], lambda stack: stack[-2:-1])
    for name in ("SETITEMS", "DICT"):   # the items since the MARK are the whole current stack
        table[code[name]] = _str_keys_then(base[code[name]], lambda stack: stack[0::2])
    for name in ("INT", "LONG", "PUT", "GET"):
        table[code[name]] = _short_number(base[code[name]])
    table[code["BUILD"]] = _build
    return {k: _counted(v) for k, v in table.items()}


class _RestrictedUnpickler(pickle._Unpickler):
    """Pure-Python unpickler that resolves only the names in ``_ALLOWED``, refuses persistent ids, and
    bounds its work (see the module docstring); ``opcodes`` counts the opcodes it has run."""

    dispatch = _dispatch()
    opcodes_note = "a release network pickle has a few thousand"

    def __init__(self, file: Any, size: int | None = None, max_opcodes: int = MAX_OPCODES) -> None:
        size = os.fstat(file.fileno()).st_size if size is None else size
        super().__init__(_BoundedReader(file, size), fix_imports=False)
        self.opcodes, self.max_opcodes = 0, max_opcodes

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except (KeyError, TypeError):
            raise TFPickleError(
                f"refused global {_clip(str(module))}.{_clip(str(name))} (only dnnlib.tflib.network.Network and "
                "numpy array reconstruction may appear in a network pickle)") from None

    def persistent_load(self, pid: Any) -> Any:
        raise TFPickleError(f"refused persistent id {clip_repr(pid)} (network pickles use none)")


def _open_regular(path: str, max_bytes: int | None = None, what: str = "a release network pickle"
                  ) -> tuple[Any, int]:
    """Open ``path`` for reading if it is a regular file no larger than ``max_bytes`` (default
    ``MAX_FILE_BYTES``; ``what`` names such files in the message); returns (file, size).

    Opened without blocking, so a named pipe is refused instead of waiting for a writer. The size is
    checked before anything is read.
    """
    max_bytes = MAX_FILE_BYTES if max_bytes is None else max_bytes
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file (a device or pipe?)"
            raise TFPickleError(f"cannot read: {kind}")
        if st.st_size > max_bytes:
            raise TFPickleError(f"{st.st_size:,} bytes is more than the {max_bytes:,} {what} may have")
        return os.fdopen(fd, "rb"), st.st_size
    except BaseException:
        os.close(fd)
        raise


def load_tf_pickle(path: str | os.PathLike[str]) -> tuple[TFNetwork, ...] | TFNetwork:
    """Read a release network pickle without executing anything from it, in bounded time and memory.

    Returns the tuple ``(E, G, D, Gs)`` (or ``(G, D, Gs)``) of ``TFNetwork`` or a lone network.
    Raises ``TFPickleError`` for a missing, truncated, non-regular, too large or non-pickle file, a
    refused global or opcode, a persistent id, a structure that is not a network pickle, or one that
    exceeds the limits in the module docstring (the message names the limit).
    """
    path = os.fspath(path)
    try:
        f, size = _open_regular(path)
        with f:
            unpickler = _RestrictedUnpickler(f, size)
            obj = unpickler.load()
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
    budget = _Budget(size, unpickler.opcodes)
    try:
        for net in nets:
            net._finalize(budget)
    except Exception as e:  # TFPickleError from validation; anything else would be a malformed record
        raise TFPickleError(f"{path}: {e}" if isinstance(e, TFPickleError) else
                            f"{path}: malformed network state ({type(e).__name__}: {e})") from None
    return obj
