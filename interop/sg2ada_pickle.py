"""Safe reader for network pickles of NVlabs' ``stylegan2-ada-pytorch`` (``network-snapshot-*.pkl``).

Such a file is a pickled dict (``G``, ``D``, ``G_ema``, ``augment_pipe``, ``training_set_kwargs``) whose
networks go through NVlabs' "persistence" mechanism: the pickle calls
``torch_utils.persistence._reconstruct_persistent_obj(meta)``, where ``meta`` carries the full Python
source of the module that defined the class (``module_src``). The ordinary loader executes that source.
Facts about the format: ``../shared/spec/SG2ADA_PICKLES.md`` (docs/method.md summarises them).

Code execution. This reader runs nothing from the file. Its unpickler resolves only these globals, each
mapped to an inert stand-in defined here (or in ``tf_pickle``):

* ``torch_utils.persistence._reconstruct_persistent_obj`` -> a pending record; after loading it becomes a
  ``PersistentObject`` (class name + the object's state as plain data). ``module_src`` is never executed
  and not kept: only its length is;
* ``torch.storage._load_from_bytes(b)`` -> ``torch.load(io.BytesIO(b), weights_only=True)``, after checking
  that ``b`` is a legacy ``torch.save`` archive of one storage whose declared size fits in ``b`` (torch would
  otherwise allocate whatever the archive declares before reading it);
* ``torch._utils._rebuild_tensor_v2`` / ``_rebuild_parameter`` -> a view of such a storage, after checking
  offset, sizes and strides against the storage (a parameter becomes a plain tensor; hooks are refused);
* ``collections.OrderedDict`` (no arguments), ``dnnlib.util.EasyDict`` (becomes a dict), ``numpy.dtype`` and
  numpy's ``scalar`` (the ``tf_pickle`` stand-ins: plain numeric dtypes only).

Any other global is refused with one error naming it; so are persistent ids, the extension registry,
BUILD on anything but a numpy dtype, frozensets, bytearrays and non-``str`` dict keys or set items.

Resource exhaustion. The file's size is checked before reading (at most ``MAX_FILE_BYTES``); the
unpickler is ``tf_pickle``'s bounded pure-Python one (lengths past the end of the file, long text lines
and long decimal numbers refused) with at most ``MAX_OPCODES`` opcodes; storages may hold at most the
file size + ``BYTES_ALLOWANCE`` bytes in all; the walk that converts the records visits at most 2 objects
per opcode + 10,000 (a shared reference counts each time), nests at most ``MAX_DEPTH`` deep, and a
persistent object may appear only once.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import pickletools
import stat
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch

from interop.tf_pickle import (
    TFPickleError,
    _Budget,
    _clip,
    _counted,
    _DType,
    _open_regular,
    _RestrictedUnpickler,
    _Scalar,
    clip_repr,
)

__all__ = ["SG2ADAPickleError", "PersistentObject", "load_sg2ada_pickle", "pickle_kind", "MAX_FILE_BYTES",
           "MAX_OPCODES"]

MAX_FILE_BYTES = 4 << 30      # NVlabs' 1024x1024 snapshots are 300-400 MB
MAX_OPCODES = 2_000_000       # the 32x32 test snapshot has 17,194; a 1024x1024 one a few ten thousands
BYTES_ALLOWANCE = 1 << 20     # storage bytes beyond the file size (torch's archive framing is in the file)
MAX_DEPTH = 64                # module nesting costs 3 levels (object, state, _modules)
MAX_TENSOR_DIMS = 8
PERSISTENCE_VERSION = 6
_META_KEYS = {"type", "version", "module_src", "class_name", "state"}
# A legacy torch.save archive starts with the pickled magic number and protocol version 1001.
_LEGACY_MAGIC = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19.\x80\x02M\xe9\x03."
_STORAGE_SIZES = {"FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2, "DoubleStorage": 8}
_MAX_ARCHIVE_OPCODES = 200    # the archive's small pickles (sys info, storage, keys) have about 50
_INT_OPS = {"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4"}


class SG2ADAPickleError(ValueError):
    """The file is not a stylegan2-ada-pytorch network pickle, or holds something this reader refuses."""


@dataclass
class PersistentObject:
    """Inert record of a persistent NVlabs object: its class name and its ``__dict__`` as plain data.

    ``state`` maps attribute names to None/bool/int/float/str, lists, tuples, dicts, sets of str,
    ``torch.Tensor`` (views of the file's float storages) and nested ``PersistentObject``. For an
    ``nn.Module``: ``state['_parameters']``, ``state['_buffers']`` and ``state['_modules']`` are dicts.
    ``source_chars`` is the length of the embedded module source, which is neither run nor kept.
    """

    class_name: str
    version: int
    source_chars: int
    state: dict[str, Any] = field(repr=False)

    def attr(self, name: str, default: Any = None) -> Any:
        return self.state.get(name, default)

    def children(self) -> dict[str, Any]:
        mods = self.state.get("_modules")
        return mods if isinstance(mods, dict) else {}

    def tensors(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Parameters and persistent buffers of this module and its children, named as ``state_dict`` does."""
        out: dict[str, torch.Tensor] = {}
        skip = self.state.get("_non_persistent_buffers_set", set())   # the reader checked these types
        for group in ("_parameters", "_buffers"):
            for key, value in self.state.get(group, {}).items():
                if value is not None and not (group == "_buffers" and key in skip):
                    out[prefix + key] = value
        for key, child in self.children().items():
            if isinstance(child, PersistentObject):
                out.update(child.tensors(f"{prefix}{key}."))
        return out


class _Pending:
    """What the file gets back from ``_reconstruct_persistent_obj(meta)``: ``meta``, checked after loading."""

    def __init__(self, meta: Any) -> None:
        self.meta = meta


def _reconstruct_persistent_obj(meta: Any, *rest: Any) -> _Pending:
    if rest:
        raise SG2ADAPickleError("refused _reconstruct_persistent_obj with more than one argument")
    return _Pending(meta)


def _ordered_dict(*args: Any, **kwargs: Any) -> OrderedDict:
    if args or kwargs:
        raise SG2ADAPickleError("refused collections.OrderedDict with arguments (network pickles fill it "
                                "item by item)")
    return OrderedDict()


class _EasyDict(dict):
    """``dnnlib.util.EasyDict``: built with NEWOBJ and filled with SETITEMS; becomes a plain dict."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if args or kwargs:
            raise SG2ADAPickleError("refused dnnlib.util.EasyDict with arguments (network pickles fill it item "
                                    "by item)")
        super().__init__()


class _Storage:
    """A storage read by ``torch.load(weights_only=True)`` from the bytes of a legacy archive."""

    def __init__(self, storage: torch.UntypedStorage, dtype: torch.dtype) -> None:
        self.storage, self.dtype = storage, dtype
        self.numel = storage.nbytes() // torch.empty(0, dtype=dtype).element_size()


def _check_archive(data: bytes) -> None:
    """``data`` is a legacy ``torch.save`` archive of one float storage no larger than ``data``.

    Read with ``pickletools`` (which executes nothing) before torch sees it: torch allocates the declared
    storage size before reading the bytes that should fill it.
    """
    if not data.startswith(_LEGACY_MAGIC):
        raise SG2ADAPickleError("refused storage bytes that are not a legacy torch.save archive")
    stream, pickles, ops = io.BytesIO(data), 0, 0
    stream.seek(len(_LEGACY_MAGIC))
    storage: list[Any] = []
    while pickles < 3:   # sys info, the storage, the list of storage keys
        in_storage = pickles == 1
        try:
            for op, arg, _ in pickletools.genops(stream):
                ops += 1
                if ops > _MAX_ARCHIVE_OPCODES:
                    raise SG2ADAPickleError("refused a storage archive with too many opcodes")
                if in_storage and (op.name in ("GLOBAL", "BINPERSID") or op.name in _INT_OPS):
                    storage.append((op.name, arg))
        except SG2ADAPickleError:
            raise
        except Exception as e:
            raise SG2ADAPickleError(f"refused malformed storage archive ({type(e).__name__})") from None
        pickles += 1
    names = [a for op, a in storage if op == "GLOBAL"]
    ints = [a for op, a in storage if op in _INT_OPS]
    if [op for op, _ in storage].count("BINPERSID") != 1 or len(names) != 1 or not ints:
        raise SG2ADAPickleError("refused a storage archive that does not hold exactly one storage")
    module, _, cls = names[0].partition(" ")
    if module != "torch" or cls not in _STORAGE_SIZES:
        raise SG2ADAPickleError(f"refused storage type {clip_repr(names[0])} (float storages only)")
    if any(type(n) is not int or n < 0 or n * _STORAGE_SIZES[cls] > len(data) for n in ints):
        raise SG2ADAPickleError("refused a storage archive declaring more elements than it holds")


def _tensor_view(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any, hooks: Any,
                 metadata: Any = None) -> torch.Tensor:
    """``torch._utils._rebuild_tensor_v2``: a view of ``storage`` (checked to lie inside it)."""
    if type(storage) is not _Storage:
        raise SG2ADAPickleError("refused a tensor whose storage is not one read from the file")
    if not (type(offset) is int and type(size) is tuple and type(stride) is tuple and len(size) == len(stride)
            and len(size) <= MAX_TENSOR_DIMS and all(type(v) is int and v >= 0 for v in size + stride)):
        raise SG2ADAPickleError("refused a tensor with malformed offset, size or stride")
    if type(requires_grad) is not bool or not (type(hooks) is OrderedDict and not hooks):
        raise SG2ADAPickleError("refused a tensor with hooks or a malformed requires_grad flag")
    if metadata is not None and not (type(metadata) in (dict, OrderedDict) and not metadata):
        raise SG2ADAPickleError("refused a tensor with metadata")
    count = math.prod(size)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))   # the last element the view reads
    if offset < 0 or count > storage.numel or (count > 0 and last >= storage.numel):
        raise SG2ADAPickleError(f"refused a tensor view {list(size)} at offset {offset} of a storage of "
                                f"{storage.numel:,} elements")
    return torch.empty(0, dtype=storage.dtype).set_(storage.storage, offset, size, stride)


def _parameter(data: Any, requires_grad: Any = False, hooks: Any = None) -> torch.Tensor:
    """``torch._utils._rebuild_parameter``: the tensor itself (a plain tensor, no hooks)."""
    if type(data) is not torch.Tensor or type(requires_grad) is not bool or not (
            hooks is None or (type(hooks) is OrderedDict and not hooks)):
        raise SG2ADAPickleError("refused a parameter that is not a plain tensor from the file")
    return data


class _FirstGlobal(Exception):
    def __init__(self, module: Any, name: Any) -> None:
        self.module, self.name = module, name


def _dispatch() -> dict[int, Any]:
    """``tf_pickle``'s bounded opcode table, with str-only sets and BUILD for numpy dtypes only."""
    code = {op.name: op.code.encode("latin-1")[0] for op in pickletools.opcodes}
    base, table = pickle._Unpickler.dispatch, dict(_RestrictedUnpickler.dispatch)

    def additems(self: Any) -> None:
        for item in self.stack:   # the items since the MARK are the whole current stack
            if type(item) is not str:
                raise SG2ADAPickleError(f"refused a set item of type {type(item).__name__} (module states hold "
                                        "sets of names)")
        base[code["ADDITEMS"]](self)

    def build(self: Any) -> None:
        state, inst = self.stack.pop(), self.stack[-1]
        if type(inst) is not _DType:
            raise SG2ADAPickleError(f"refused BUILD on a {type(inst).__name__} (only numpy dtypes take state)")
        inst.__setstate__(state)

    table[code["EMPTY_SET"]] = _counted(base[code["EMPTY_SET"]])
    table[code["ADDITEMS"]] = _counted(additems)
    table[code["BUILD"]] = _counted(build)
    return table


class _Unpickler(_RestrictedUnpickler):
    """The bounded unpickler of ``tf_pickle`` with this format's allowlist (see the module docstring)."""

    dispatch = _dispatch()
    opcodes_note = f"the limit of this reader for stylegan2-ada-pytorch pickles, {MAX_OPCODES:,}"

    def __init__(self, file: Any, size: int, sniff: bool = False) -> None:
        super().__init__(file, size, MAX_OPCODES)
        self.sniff = sniff
        self.storage_bytes = size + BYTES_ALLOWANCE
        self.allowed: dict[tuple[str, str], Any] = {
            ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
            ("torch.storage", "_load_from_bytes"): self._load_storage,
            ("torch._utils", "_rebuild_tensor_v2"): _tensor_view,
            ("torch._utils", "_rebuild_parameter"): _parameter,
            ("collections", "OrderedDict"): _ordered_dict,
            ("dnnlib.util", "EasyDict"): _EasyDict,
            ("numpy", "dtype"): _DType,
            ("numpy.core.multiarray", "scalar"): _Scalar,
            ("numpy._core.multiarray", "scalar"): _Scalar,
        }

    def find_class(self, module: str, name: str) -> Any:
        if self.sniff:
            raise _FirstGlobal(module, name)
        try:
            return self.allowed[(module, name)]
        except (KeyError, TypeError):
            raise SG2ADAPickleError(f"refused global {_clip(str(module))}.{_clip(str(name))} (a stylegan2-ada-pytorch "
                                    "network pickle holds only persistent objects, tensors and plain data)") from None

    def _load_storage(self, data: Any, *rest: Any) -> _Storage:
        if rest or type(data) is not bytes:
            raise SG2ADAPickleError("refused torch.storage._load_from_bytes of anything but one bytes object")
        self.storage_bytes -= len(data)
        if self.storage_bytes < 0:
            raise SG2ADAPickleError(f"the storages would hold more than the file size + {BYTES_ALLOWANCE:,} bytes "
                                    "(a storage counts each time it is loaded)")
        _check_archive(data)
        with warnings.catch_warnings():   # TypedStorage is deprecated
            warnings.simplefilter("ignore")
            try:
                storage = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            except Exception as e:
                raise SG2ADAPickleError(f"refused storage archive ({type(e).__name__}: "
                                        f"{clip_repr(str(e))})") from None
            if type(storage) is not torch.TypedStorage or storage.device.type != "cpu" or \
                    storage.dtype not in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
                raise SG2ADAPickleError("refused a storage that is not a float storage on the CPU")
            untyped, dtype = storage._untyped_storage, storage.dtype
        if untyped.nbytes() > len(data):
            raise SG2ADAPickleError("refused a storage larger than its archive")
        return _Storage(untyped, dtype)


Where = tuple  # (parent Where or None, key): the path to a value, formatted only for an error message


def _where(path: Where) -> str:
    keys = []
    while path is not None:
        path, key = path
        keys.append(f"[{key}]" if type(key) is int else f".{_clip(key, 40)}")
    return "pickle" + "".join(reversed(keys))


class _Walk:
    """Converts the loaded structure into plain data and ``PersistentObject`` records, within a budget."""

    def __init__(self, budget: _Budget) -> None:
        self.budget = budget

    def value(self, obj: Any, where: Where, depth: int = 0) -> Any:
        b = self.budget
        b.visit()
        if depth > MAX_DEPTH:
            raise SG2ADAPickleError(f"{_where(where)}: nested more than {MAX_DEPTH} deep (or cyclic)")
        t = type(obj)
        if obj is None or t in (bool, float, torch.Tensor):
            return obj
        if t is int:
            b.spend(obj.bit_length() // 8)
            return obj
        if t is str:
            b.spend(len(obj))
            return obj
        if t is _Scalar:
            return obj.to_numpy(b).item()
        if t in (list, tuple):
            return t(self.value(v, (where, i), depth + 1) for i, v in enumerate(obj))
        if t in (dict, OrderedDict, _EasyDict):   # keys are str: the unpickler refuses others
            return {k: self.value(v, (where, k), depth + 1) for k, v in obj.items()}
        if t is set:                               # items are str: the unpickler refuses others
            b.spend(sum(len(s) for s in obj))
            return set(obj)
        if t is _Pending:
            return self.persistent(obj, where, depth)
        raise SG2ADAPickleError(f"{_where(where)}: refused a value of type {t.__name__}")

    def persistent(self, obj: _Pending, where: Where, depth: int) -> PersistentObject:
        at = _where(where)   # once per persistent object: a few hundred in a network pickle
        if id(obj) in self.budget.networks:
            raise SG2ADAPickleError(f"{at}: a persistent object appears twice (shared or cyclic)")
        self.budget.networks.add(id(obj))
        meta = obj.meta
        if type(meta) is not dict or set(meta) != _META_KEYS:
            keys = sorted(map(clip_repr, meta)) if type(meta) is dict else type(meta).__name__
            raise SG2ADAPickleError(f"{at}: a persistent object's meta must be a dict with keys "
                                    f"{sorted(_META_KEYS)}, got {keys}")
        if meta["type"] != "class" or meta["version"] != PERSISTENCE_VERSION:
            raise SG2ADAPickleError(f"{at}: persistent object of type {clip_repr(meta['type'])} version "
                                    f"{clip_repr(meta['version'])}; this reader knows type 'class' version "
                                    f"{PERSISTENCE_VERSION}")
        name, src, state = meta["class_name"], meta["module_src"], meta["state"]
        if type(name) is not str or not name.isidentifier() or len(name) > 64:
            raise SG2ADAPickleError(f"{at}: bad persistent class name {clip_repr(name)}")
        if type(src) is not str or type(state) is not dict:
            raise SG2ADAPickleError(f"{at}: persistent {name} needs a module_src text and a state dict")
        converted = {k: self.value(v, (where, k), depth + 1) for k, v in state.items()}
        for group, kind in (("_parameters", torch.Tensor), ("_buffers", torch.Tensor), ("_modules", PersistentObject)):
            members = converted.get(group, {})
            if type(members) is not dict or not all(k.isidentifier() and (v is None or type(v) is kind)
                                                    for k, v in members.items()):
                raise SG2ADAPickleError(f"{at}.{group}: must map identifiers to {kind.__name__} or None")
        if type(converted.get("_non_persistent_buffers_set", set())) is not set:
            raise SG2ADAPickleError(f"{at}._non_persistent_buffers_set: must be a set")
        return PersistentObject(name, meta["version"], len(src), converted)


def pickle_kind(path: str | os.PathLike[str]) -> str | None:
    """Which network pickle ``path`` is, from its first global, without executing anything:
    ``'sg2ada'`` (stylegan2-ada-pytorch), ``'tf-release'`` (``dnnlib.tflib.network.Network``) or None
    (no global, an unreadable file, or a first global of neither). Raises ``SG2ADAPickleError`` for a
    regular file larger than ``MAX_FILE_BYTES`` (too large for either kind), before reading it."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if stat.S_ISREG(st.st_mode) and st.st_size > MAX_FILE_BYTES:
        raise SG2ADAPickleError(f"{os.fspath(path)}: {st.st_size:,} bytes is more than the {MAX_FILE_BYTES:,} a "
                                "network pickle may have")
    try:
        f, size = _open_regular(os.fspath(path), MAX_FILE_BYTES, "a stylegan2-ada-pytorch pickle")
        with f:
            _Unpickler(f, size, sniff=True).load()
    except _FirstGlobal as g:
        if (g.module, g.name) == ("dnnlib.tflib.network", "Network"):
            return "tf-release"
        if g.module in ("torch_utils.persistence", "torch._utils", "torch.storage", "dnnlib.util", "collections"):
            return "sg2ada"
        return None
    except Exception:
        return None
    return None


NETWORK_KEYS = ("G", "D", "G_ema")


def load_sg2ada_pickle(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a stylegan2-ada-pytorch network pickle without executing anything, in bounded time and memory.

    Returns the pickled dict converted to plain data: ``G``, ``D``, ``G_ema`` (those present) are
    ``PersistentObject``; ``augment_pipe`` and ``training_set_kwargs`` are kept as read (records / dicts).
    Raises ``SG2ADAPickleError`` (the message starts with the path) for a missing, non-regular, too large,
    truncated or non-pickle file, a refused global or opcode, or a structure that is not such a pickle.
    """
    path = os.fspath(path)
    try:
        f, size = _open_regular(path, MAX_FILE_BYTES, "a stylegan2-ada-pytorch pickle")
        with f:
            unpickler = _Unpickler(f, size)
            obj = unpickler.load()
        if type(obj) is not dict:
            raise SG2ADAPickleError(f"expected a dict with keys {list(NETWORK_KEYS)}, got {type(obj).__name__}")
        nets = [k for k in NETWORK_KEYS if k in obj]
        if not nets or any(type(obj[k]) is not _Pending for k in nets):
            raise SG2ADAPickleError(f"expected networks {list(NETWORK_KEYS)} as persistent objects, got keys "
                                    f"{[clip_repr(k) for k in list(obj)[:8]]}")
        return _Walk(_Budget(size, unpickler.opcodes)).value(obj, None)
    except FileNotFoundError:
        raise SG2ADAPickleError(f"{path}: no such file") from None
    except (SG2ADAPickleError, TFPickleError) as e:
        raise SG2ADAPickleError(f"{path}: {e}") from None
    except OSError as e:
        raise SG2ADAPickleError(f"{path}: cannot read ({e})") from None
    except Exception as e:  # anything else the unpickler raises means "not a valid pickle"
        raise SG2ADAPickleError(f"{path}: not a valid or complete pickle ({type(e).__name__}: "
                                f"{clip_repr(str(e))})") from None

