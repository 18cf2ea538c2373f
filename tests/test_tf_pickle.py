"""Tests for interop.tf_pickle: hostile pickles are refused without running anything, and the
release's network pickles (the oracle snapshot and hand-made ones) load into TFNetwork objects."""

from __future__ import annotations

import builtins
import copyreg
import json
import os
import pickle
import subprocess
import tracemalloc
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from interop import tf_pickle
from interop.tf_pickle import TFNetwork, TFPickleError, load_tf_pickle
from tests.crafted_pickles import BOMBS, SENTINEL, fake_bytes, state
from tests.release_fakes import Reduce
from tests.shared_paths import ORACLE

SNAPSHOT = ORACLE / "network-snapshot.pkl"

# numpy's own reconstruction callables, taken from their pickles (no numpy.core import needed).
RECONSTRUCT = np.zeros(1).__reduce__()[0]
SCALAR = np.float32(1).__reduce__()[0]


def write_fake(tmp_path: Path, build: Any, protocol: int = 4) -> Path:
    """Write ``fake_bytes(build)`` (the fake dnnlib is uninstalled again before any loading) to a file."""
    path = tmp_path / "net.pkl"
    path.write_bytes(fake_bytes(build, protocol))
    return path


def assert_refused(tmp_path: Path, data: bytes, match: str | None = None) -> TFPickleError:
    path = tmp_path / "evil.pkl"
    path.write_bytes(data)
    with pytest.raises(TFPickleError, match=match) as info:
        load_tf_pickle(path)
    assert not (tmp_path / SENTINEL).exists(), "the pickle's payload ran"
    return info.value


@pytest.fixture(autouse=True)
def _chdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # payloads writing a relative SENTINEL would land in tmp_path


# --- malicious pickles -------------------------------------------------------------------------

def _payloads(tmp: Path) -> dict[str, Reduce]:
    s = str(tmp / SENTINEL)
    return {
        "os.system": Reduce(os.system, (f"touch {s}",)),
        "builtins.eval": Reduce(builtins.eval, (f"open({s!r}, 'w').close()",)),
        "builtins.exec": Reduce(builtins.exec, (f"open({s!r}, 'w').close()",)),
        "subprocess.Popen": Reduce(subprocess.Popen, (["touch", s],)),
        "builtins.getattr": Reduce(getattr, (s, "upper")),
        "copyreg._reconstructor": Reduce(copyreg._reconstructor, (object, object, None)),
        "numpy.load": Reduce(np.load, (s,)),
    }


@pytest.mark.parametrize("protocol", [0, 2, 3, 4, 5])
@pytest.mark.parametrize("kind", list(_payloads(Path("."))))
def test_reduce_payloads_are_refused(tmp_path: Path, kind: str, protocol: int) -> None:
    payload = _payloads(tmp_path)[kind]
    err = assert_refused(tmp_path, pickle.dumps(payload, protocol=protocol), "refused global")
    assert payload.func.__name__ in str(err)  # the message names what was refused


@pytest.mark.parametrize("protocol", [2, 4])
def test_payload_inside_network_variables_is_refused(tmp_path: Path, protocol: int) -> None:
    evil = _payloads(tmp_path)["os.system"]
    path = write_fake(tmp_path, lambda net: net(state("G", [("w", evil)])), protocol)
    assert_refused(tmp_path, path.read_bytes(), r"refused global (posix|os|nt)\.system")


@pytest.mark.parametrize(("data", "match"), [
    (b"cbuiltins\ngetattr\n(cbuiltins\n__import__\n(Vos\ntRVsystem\ntR(Vtouch PWNED\ntR.",
     "builtins.getattr"),
    (b"c__builtin__\neval\n(Vopen('PWNED','w')\ntR.", "__builtin__.eval"),
    (b"cposix\nsystem\n(Vtouch PWNED\ntR.", "posix.system"),
    (b"(Vtouch PWNED\nios\nsystem\n.", "os.system"),  # INST
    (b"(cos\nsystem\nVtouch PWNED\no.", "os.system"),  # OBJ
    (b"\x80\x04\x8c\x02os\x8c\x06system\x93\x8c\x0btouch PWNED\x85R.",
     "os.system"),  # STACK_GLOBAL
    (b"ccopyreg\n_reconstructor\n(cbuiltins\nobject\ncbuiltins\nobject\nNtR.", "copyreg._reconstructor"),
    (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n.", "torch._utils._rebuild_tensor_v2"),
    (b"\x80\x02cdnnlib.tflib.network\nSomethingElse\n.", "dnnlib.tflib.network.SomethingElse"),
    (b"\x80\x02cdnnlib.tflib\nnetwork\n.", "dnnlib.tflib.network"),
    (b"\x80\x02cnumpy.core.multiarray\nfromstring\n.", "numpy.core.multiarray.fromstring"),
    (b"\x80\x02c_codecs\nencode\n.", "_codecs.encode"),
    (b"\x80\x05cnumpy._core.numeric\n_frombuffer\n.", "numpy._core.numeric._frombuffer"),
])
def test_raw_opcode_globals_are_refused(tmp_path: Path, data: bytes, match: str) -> None:
    assert_refused(tmp_path, data, f"refused global {match}")


@pytest.mark.parametrize("registry", ["unregistered", "registered", "registered and cached"])
def test_extension_registry_is_refused(tmp_path: Path, registry: str) -> None:
    # EXT1 240 -> os.system, then call it. Once a trusted load in the same process has resolved code 240,
    # copyreg's cache hands out os.system without asking find_class: the opcodes themselves must be refused.
    data = b"\x80\x02\x82\xf0\x8c\x0btouch PWNED\x85R."
    if registry != "unregistered":
        copyreg.add_extension("posix", "system", 240)
    try:
        if registry == "registered and cached":
            assert pickle.loads(b"\x80\x02\x82\xf0.") is os.system
        assert_refused(tmp_path, data, "refused opcode EXT1")
    finally:
        if registry != "unregistered":
            copyreg.remove_extension("posix", "system", 240)


class PersistentPickler(pickle.Pickler):
    def persistent_id(self, obj: Any) -> Any:
        return "weights.bin" if isinstance(obj, np.ndarray) else None


@pytest.mark.parametrize("protocol", [0, 4])
def test_persistent_ids_are_refused(tmp_path: Path, protocol: int) -> None:
    path = tmp_path / "p.pkl"
    with open(path, "wb") as f:
        PersistentPickler(f, protocol=protocol).dump([np.zeros(2)])
    assert_refused(tmp_path, path.read_bytes(), "refused persistent id 'weights.bin'")


@pytest.mark.parametrize(("value", "match"), [
    (np.array([1, 2], dtype=object), "refused numpy dtype 'O8'"),
    (np.zeros(2, dtype=[("a", "<f4")]), "refused numpy dtype 'V4'"),
    (np.array(["ab"]), "refused numpy dtype 'U2'"),
    (Reduce(RECONSTRUCT, (np.dtype, (0,), b"b")), "_reconstruct of anything but numpy.ndarray"),
    (Reduce(RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, (3,), np.dtype("f4"), False, b"\0" * 8)),
     "data size does not match"),
    (Reduce(RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, (-1,), np.dtype("f4"), False, b"")), "malformed"),
    (Reduce(RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, (2,), np.dtype("f4"), False, [1.0, 2.0])),
     "malformed"),
    (Reduce(RECONSTRUCT, (np.ndarray, (0,), b"b"),
            (1, (2,), Reduce(np.dtype, ("f4", False, True), (3, "|", None, ("a",), {}, 4, 1, 63)), False,
             b"\0" * 8)), "refused numpy dtype state"),
    (Reduce(SCALAR, (np.dtype("f4"), b"\0" * 3)), "scalar data size"),
    (Reduce(np.ndarray, ((10**12,), "f4")), "not a valid"),  # ndarray itself is not callable here
    ("not an array", "bad or duplicate variable"),
    (3.5, "bad or duplicate variable"),
])
def test_bad_variables_are_refused(tmp_path: Path, value: Any, match: str) -> None:
    path = write_fake(tmp_path, lambda net: net(state("G", [("w", value)])))
    assert_refused(tmp_path, path.read_bytes(), match)


def _bad_states(net: type) -> dict[str, Any]:
    ok = state("G", [])
    return {
        "missing key": {k: v for k, v in ok.items() if k != "variables"},
        "extra key": {**ok, "__reduce__": "x"},
        "not a dict": [("name", "G")],
        "name not str": {**ok, "name": 3},
        "variables dict": {**ok, "variables": {"w": np.zeros(1)}},
        "duplicate variable": {**ok, "variables": [("w", np.zeros(1)), ("w", np.zeros(1))]},
        "component not Network": {**ok, "components": {"synthesis": "x"}},
        "static_kwargs set": {**ok, "static_kwargs": {"k": {1, 2}}},
        "static_kwargs array": {**ok, "static_kwargs": {"k": np.zeros(2)}},
        "static_kwargs class": {**ok, "static_kwargs": {"k": net}},
        "no state": None,
    }


@pytest.mark.parametrize("case", list(_bad_states(object)))
def test_bad_network_states_are_refused(tmp_path: Path, case: str) -> None:
    path = write_fake(tmp_path, lambda net: net(_bad_states(net)[case]))
    assert_refused(tmp_path, path.read_bytes())


def test_cyclic_components_are_refused(tmp_path: Path) -> None:
    def build(net: type) -> Any:
        st = state("G", [])
        g = net(st)
        st["components"]["self"] = g
        return g

    assert_refused(tmp_path, write_fake(tmp_path, build).read_bytes(), "cyclic")


def test_stand_ins_created_without_init_or_built_twice_are_refused() -> None:
    # NEWOBJ / NEWOBJ_EX create instances without calling __init__; BUILD may be repeated in a crafted file.
    for cls in (tf_pickle._DType, tf_pickle._Scalar, tf_pickle._Array):
        with pytest.raises(TFPickleError):
            cls.__new__(cls).to_numpy()
    net = TFNetwork()
    net.__setstate__(state("G", []))
    with pytest.raises(TFPickleError, match="state set twice"):
        net.__setstate__(state("G", []))
    with pytest.raises(TFPickleError, match="refused state"):
        tf_pickle._Scalar(None).__setstate__({"dtype": "x"})


@pytest.mark.parametrize("obj", [[1, 2], {"G": 1}, None, 7, (1, 2, 3, 4), ()])
def test_wrong_top_level_structure(tmp_path: Path, obj: Any) -> None:
    assert_refused(tmp_path, pickle.dumps(obj, protocol=4), "expected a Network or a tuple")


def test_wrong_tuple_length(tmp_path: Path) -> None:
    path = write_fake(tmp_path, lambda net: (net(state("G", [])), net(state("D", []))))
    assert_refused(tmp_path, path.read_bytes(), "expected a Network or a tuple")


def test_protocol_2_arrays_are_refused(tmp_path: Path) -> None:
    # Python 3 writes array bytes through _codecs.encode below protocol 3; the release used protocol 4.
    path = write_fake(tmp_path, lambda net: net(state("G", [("w", np.zeros(2, np.float32))])), protocol=2)
    assert_refused(tmp_path, path.read_bytes(), "refused global _codecs.encode")


# --- unreadable files --------------------------------------------------------------------------

def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TFPickleError, match="no such file"):
        load_tf_pickle(tmp_path / "nope.pkl")


@pytest.mark.parametrize("data", [b"", b"hello world\n", b"PK\x03\x04" + bytes(100), b"\x80\x04garbage"])
def test_not_a_pickle(tmp_path: Path, data: bytes) -> None:
    assert_refused(tmp_path, data, "evil.pkl: not a valid or complete pickle")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(TFPickleError, match="cannot read"):
        load_tf_pickle(tmp_path)


# --- resource bombs (tests/crafted_pickles.py): refused quickly, naming the limit, in little memory ---

@pytest.mark.parametrize("case", list(BOMBS))
def test_resource_bombs_are_refused(tmp_path: Path, case: str) -> None:
    build, match = BOMBS[case]
    data = build()
    tracemalloc.start()
    try:
        err = assert_refused(tmp_path, data, match)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < max(4 * len(data), 16 << 20), f"{peak:,} bytes traced for a {len(data):,}-byte file"
    assert len(str(err)) < 400   # the message stays short whatever the file holds


def test_moderate_sharing_still_loads(tmp_path: Path) -> None:
    kernel, dt = [1, 3, 3, 1], np.ones(3, np.float32)
    def build(net: type) -> Any:
        syn = net(state("G_synthesis", [("w", dt)], resample_kernel=kernel))
        return net(state("G", [("w", dt)], {"synthesis": syn}, resample_kernel=kernel, again=kernel))
    g = load_tf_pickle(write_fake(tmp_path, build))
    assert g.static_kwargs == {"resample_kernel": kernel, "again": kernel}
    assert g.components["synthesis"].static_kwargs == {"resample_kernel": kernel}
    np.testing.assert_array_equal(g.all_variables()["G_synthesis/w"], dt)


def test_file_larger_than_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "huge.pkl"
    with open(path, "wb") as f:
        f.truncate(tf_pickle.MAX_FILE_BYTES + 1)   # sparse: costs no disk
    with pytest.raises(TFPickleError, match=r"1,073,741,825 bytes is more than the 1,073,741,824"):
        load_tf_pickle(path)


def test_named_pipe_is_refused_without_reading(tmp_path: Path) -> None:
    # A pipe would block until a writer comes; here one has already written a valid pickle into it.
    fifo = tmp_path / "net.pkl"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    try:
        os.write(fd, pickle.dumps(None, protocol=4))
        with pytest.raises(TFPickleError, match="not a regular file"):
            load_tf_pickle(fifo)
        assert os.read(fd, 100) == pickle.dumps(None, protocol=4)   # nothing was read from the pipe
    finally:
        os.close(fd)


# --- hand-made pickles with the fake dnnlib (numpy 2 global names) ------------------------------

VALUES = {
    "w": np.arange(24, dtype=np.float32).reshape(2, 3, 4),
    "f64": np.linspace(-1, 1, 5),
    "big_endian": np.arange(6, dtype=">f4").reshape(2, 3),
    "fortran": np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)),
    "ints": np.arange(4, dtype=np.int64),
    "bools": np.array([True, False]),
    "empty": np.zeros((0, 3), np.float32),
    "scalar32": np.float32(0.25),
    "scalar64": np.float64(-2.5),
}


def _generator(net: type, name: str = "Gs") -> Any:
    syn = net(state("G_synthesis", [(k, v) for k, v in VALUES.items()], func="G_synthesis_stylegan2",
                    resolution=32, resample_kernel=[1, 3, 3, 1], nested={"a": (1, 2.5, None, True)}))
    mapping = net(state("G_mapping", [("Dense0/weight", np.ones((32, 4), np.float32))],
                        func="G_mapping_watermark"))
    return net(state(name, [("lod", np.float32(0)), ("dlatent_avg", np.zeros(4, np.float32))],
                     {"synthesis": syn, "mapping": mapping}, scalar_kwarg=np.float32(1.5)))


@pytest.mark.parametrize("protocol", [3, 4])
def test_fake_network_round_trip(tmp_path: Path, protocol: int) -> None:
    path = write_fake(tmp_path, _generator, protocol)
    data = path.read_bytes()
    assert b"numpy._core.multiarray" in data and b"numpy.core.multiarray" not in data
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gs = load_tf_pickle(path)
    assert isinstance(gs, TFNetwork) and gs.name == "Gs" and gs.version == 4
    assert gs.static_kwargs == {"scalar_kwarg": 1.5} and type(gs.static_kwargs["scalar_kwarg"]) is float
    assert list(gs.components) == ["synthesis", "mapping"]
    syn = gs.components["synthesis"]
    assert syn.static_kwargs == {"resolution": 32, "resample_kernel": [1, 3, 3, 1],
                                 "nested": {"a": (1, 2.5, None, True)}}
    assert syn.build_func_name == "G_synthesis_stylegan2" and "os.system" in syn.build_module_src
    for k, v in VALUES.items():
        got = syn.variables[k]
        assert got.dtype == np.float32 and got.shape == np.shape(v) and got.flags.writeable
        np.testing.assert_array_equal(got, np.asarray(v, dtype=np.float32))
    assert list(gs.all_variables()) == ["lod", "dlatent_avg", *(f"G_synthesis/{k}" for k in VALUES),
                                        "G_mapping/Dense0/weight"]
    assert list(gs.all_variables("Gs/"))[-1] == "Gs/G_mapping/Dense0/weight"
    assert not (tmp_path / SENTINEL).exists()
    assert repr(gs).startswith("TFNetwork(name='Gs'")


@pytest.mark.parametrize("n", [3, 4])
def test_fake_tuples(tmp_path: Path, n: int) -> None:
    names = ["E", "G", "D", "Gs"][4 - n:]
    path = write_fake(tmp_path, lambda net: tuple(_generator(net, name) for name in names))
    nets = load_tf_pickle(path)
    assert isinstance(nets, tuple) and [x.name for x in nets] == names


def test_accepts_str_path(tmp_path: Path) -> None:
    assert load_tf_pickle(str(write_fake(tmp_path, _generator))).name == "Gs"


# --- the oracle snapshot written by the reference code -----------------------------------------

@pytest.fixture(scope="module")
def oracle() -> tuple:
    if not SNAPSHOT.is_file():
        pytest.skip(f"oracle snapshot not found at {SNAPSHOT}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. no numpy.core DeprecationWarning
        return load_tf_pickle(SNAPSHOT)


def test_oracle_structure(oracle: tuple) -> None:
    meta = json.loads((ORACLE / "meta.json").read_text())
    assert len(oracle) == 4 and all(type(n) is TFNetwork for n in oracle)
    assert [n.name for n in oracle] == ["E", "G", "D", "Gs"]
    assert [n.build_func_name for n in oracle] == ["E_stylegan2_watermark", "G_main_watermark", "D_stylegan2",
                                                    "G_main_watermark"]
    for net in oracle:
        assert net.version == 4 and net.build_module_src == "<removed>"
        assert net.static_kwargs == meta["static_kwargs"][net.name]
        comps = meta["component_static_kwargs"][net.name]
        assert list(net.components) == list(comps)
        for key, comp in net.components.items():
            assert comp.build_module_src == "<removed>" and comp.components == {}
            assert comp.static_kwargs == comps[key]
    for g in oracle[1], oracle[3]:
        assert {k: (c.name, c.build_func_name) for k, c in g.components.items()} == {
            "synthesis": ("G_synthesis", "G_synthesis_stylegan2"),
            "mapping": ("G_mapping", "G_mapping_watermark")}
        assert "noise0" in g.components["synthesis"].variables  # stored names are relative to the component


def test_oracle_variables_match_listing(oracle: tuple) -> None:
    expected = []
    for line in (ORACLE / "variables.txt").read_text().splitlines():
        name, shape = line.split("\t")
        expected.append((name, tuple(json.loads(shape))))
    got = [(f"{net.name}/{k}", v.shape) for net in oracle for k, v in net.all_variables().items()]
    assert got == expected
    got_scoped = [(k, v.shape) for net in oracle for k, v in net.all_variables(net.name + "/").items()]
    assert got_scoped == expected
    for net in oracle:
        assert all(v.dtype == np.float32 and v.flags.writeable for v in net.all_variables().values())
    g, gs = oracle[1].all_variables(), oracle[3].all_variables()
    assert g["G_synthesis/4x4/Conv/noise_strength"].shape == ()
    assert not np.array_equal(g["G_synthesis/4x4/Conv/bias"], gs["G_synthesis/4x4/Conv/bias"])
    assert np.isfinite(g["G_mapping/Dense0/weight"]).all()


@pytest.mark.parametrize("fraction", [0.0001, 0.5, 0.999])
def test_truncated_oracle(tmp_path: Path, fraction: float) -> None:
    if not SNAPSHOT.is_file():
        pytest.skip(f"oracle snapshot not found at {SNAPSHOT}")
    data = SNAPSHOT.read_bytes()
    assert_refused(tmp_path, data[: int(len(data) * fraction)], "evil.pkl: not a valid or complete pickle")


def test_oracle_uses_only_allowed_globals() -> None:
    if not SNAPSHOT.is_file():
        pytest.skip(f"oracle snapshot not found at {SNAPSHOT}")
    seen: set[tuple[str, str]] = set()

    class Recorder(tf_pickle._RestrictedUnpickler):
        def find_class(self, module: str, name: str) -> Any:
            seen.add((module, name))
            return super().find_class(module, name)

    with open(SNAPSHOT, "rb") as f:
        Recorder(f).load()
    assert seen == {("dnnlib.tflib.network", "Network"), ("numpy.core.multiarray", "_reconstruct"),
                    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar")}


def test_sentinel_detects_execution(tmp_path: Path) -> None:
    # Control: the os.system payload does run under plain pickle, so the sentinel checks mean something.
    pickle.loads(pickle.dumps(_payloads(tmp_path)["os.system"]))
    assert (tmp_path / SENTINEL).exists()
