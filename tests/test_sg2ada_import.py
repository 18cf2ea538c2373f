"""Tests for importing NVlabs stylegan2-ada-pytorch pickles (interop.sg2ada_pickle, interop.sg2ada_import and
``legacy.py``): the test network ``sg2ada_A`` reproduces NVlabs' outputs through the command line and a reload
of the written file; crafted pickles run nothing and fail with one error line; absurd files are refused early.

Crafted pickles are written here from the oracle's records with a stand-in ``torch_utils.persistence`` module
(installed only while pickling), so they use exactly the globals NVlabs' files use, plus a payload.
"""

from __future__ import annotations

import builtins
import contextlib
import io as iolib
import os
import pickle
import struct
import subprocess
import sys
import types
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn

import legacy
from interop.sg2ada_import import SG2ADAImportError, convert_network, convert_sg2ada
from interop.sg2ada_pickle import MAX_FILE_BYTES, PersistentObject, SG2ADAPickleError, load_sg2ada_pickle, pickle_kind
from networks.checkpoint import load_network, read_header
from networks.stylegan2_ada import SG2Discriminator, SG2Generator
from tests.crafted_pickles import BOMBS
from tests.release_fakes import Reduce
from tests.shared_paths import ORACLE, SHARED
from tests.test_legacy_cli import assert_one_error_line

REPO = Path(__file__).resolve().parents[1]
SNAPSHOT = SHARED / "oracle" / "sg2ada_A" / "network-snapshot.pkl"
IO = SNAPSHOT.parent / "io.npz"
TOL = 1e-4
SENTINEL = "PWNED"

needs_oracle = pytest.mark.skipif(not (SNAPSHOT.is_file() and IO.is_file()),
                                  reason=f"oracle sg2ada_A not found at {SNAPSHOT.parent}")


@pytest.fixture(autouse=True)
def _chdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)   # a payload writing a relative SENTINEL would land in tmp_path


@pytest.fixture(scope="module")
def io() -> dict[str, np.ndarray]:
    with np.load(IO) as f:
        return {k: f[k] for k in f.files}


def invoke(*args: str | os.PathLike) -> Any:
    return CliRunner().invoke(legacy.main, [str(a) for a in args])


def outputs(G: nn.Module, D: nn.Module, io: dict, fused: bool = True) -> dict[str, np.ndarray]:
    """What io.npz records, computed by our networks."""
    z, c = torch.from_numpy(io["z"]), torch.from_numpy(io["c"])
    with torch.no_grad():
        return {"ws": G.mapping(z).numpy(), "ws_trunc07": G.mapping(z, truncation_psi=0.7).numpy(),
                "img_const": G.synthesis(torch.from_numpy(io["ws"]), noise_mode="const", fused=fused).numpy(),
                "img_trunc07_const": G(z, c, truncation_psi=0.7, noise_mode="const", fused=fused).numpy(),
                "d_logits": D(torch.from_numpy(io["img_const"]), c).numpy()}


def assert_reproduces(G: nn.Module, D: nn.Module, io: dict, fused: bool = True) -> None:
    for key, value in outputs(G, D, io, fused).items():
        assert value.shape == io[key].shape, key
        np.testing.assert_allclose(value, io[key], rtol=0, atol=TOL, err_msg=key)


# --- writing NVlabs-like pickles -----------------------------------------------------------------------------

@contextlib.contextmanager
def fake_persistence() -> Iterator[Callable]:
    """A function that pickles as ``torch_utils.persistence._reconstruct_persistent_obj`` (never called here)."""
    def _reconstruct_persistent_obj(meta: Any) -> Any:
        raise AssertionError("the stand-in persistence function is for pickling only")

    name = "torch_utils.persistence"
    _reconstruct_persistent_obj.__module__ = name
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    module = types.ModuleType(name)
    module._reconstruct_persistent_obj = _reconstruct_persistent_obj
    saved = sys.modules.get(name)
    sys.modules[name] = module
    try:
        yield _reconstruct_persistent_obj
    finally:
        if saved is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = saved


def _to_pickle(value: Any, fn: Callable, src: str, key: str = "") -> Any:
    """A loaded record (or value) as NVlabs pickles it: persistent objects, Parameters, OrderedDicts."""
    if isinstance(value, PersistentObject):
        state = {k: _to_pickle(v, fn, src, k) for k, v in value.state.items()}
        meta = {"type": "class", "version": 6, "module_src": src, "class_name": value.class_name, "state": state}
        return Reduce(fn, (meta,))
    if key == "_parameters":
        return OrderedDict((k, nn.Parameter(v.clone(), requires_grad=False)) for k, v in value.items())
    if isinstance(value, dict):
        items = ((k, _to_pickle(v, fn, src)) for k, v in value.items())
        return OrderedDict(items) if key.startswith("_") else dict(items)
    if isinstance(value, list | tuple):
        return type(value)(_to_pickle(v, fn, src) for v in value)
    return value


def nvlabs_bytes(records: dict[str, Any], src: str = "# source\n", edit: Callable | None = None) -> bytes:
    """Pickle ``records`` (``load_sg2ada_pickle``'s result) back into NVlabs' layout; ``edit(top)`` may change it."""
    with fake_persistence() as fn:
        top = {k: _to_pickle(v, fn, src) for k, v in records.items()}
        if edit is not None:
            edit(top)
        return pickle.dumps(top, protocol=4)


@pytest.fixture()
def records() -> dict[str, Any]:
    return load_sg2ada_pickle(SNAPSHOT)


def payloads(tmp: Path) -> dict[str, Reduce]:
    s = str(tmp / SENTINEL)
    return {"os.system": Reduce(os.system, (f"touch {s}",)),
            "builtins.exec": Reduce(builtins.exec, (f"open({s!r}, 'w').close()",)),
            "builtins.eval": Reduce(builtins.eval, (f"open({s!r}, 'w').close()",)),
            "torch.load": Reduce(torch.load, (s,))}


# --- the oracle ----------------------------------------------------------------------------------------------

@needs_oracle
def test_oracle_through_cli_and_reload(tmp_path: Path, io: dict) -> None:
    dest = tmp_path / "sg2.safetensors"
    proc = subprocess.run([sys.executable, "legacy.py", "--source", str(SNAPSHOT), "--dest", str(dest)], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "SG2Generator" in proc.stdout and "SG2Discriminator" in proc.stdout
    header = read_header(dest)
    assert {k: v["class"] for k, v in header["networks"].items()} == {
        "G": "SG2Generator", "G_ema": "SG2Generator", "D": "SG2Discriminator"}
    extra = header["extra"]
    assert extra["converted_from"] == "sg2ada-pytorch-pickle" and extra["source"] == SNAPSHOT.name
    assert extra["source_sha256"] == legacy.sha256_file(SNAPSHOT)
    nets = load_network(dest)
    assert_reproduces(nets["G_ema"], nets["D"], io)
    # generate.py images on the imported network (a user's check by eye): seed s draws z with RandomState(s);
    # --trunc is its truncation psi, refused for a network without a mapping.
    out = tmp_path / "images"
    proc = subprocess.run([sys.executable, "generate.py", "images", "--network", str(dest), "--seeds", "0-1",
                           "--trunc", "0.7", "--outdir", str(out), "--device", "cpu"], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    G = nets["G_ema"]
    for s in range(2):
        z = torch.from_numpy(np.random.RandomState(s).randn(1, G.z_dim)).float()
        with torch.no_grad():
            img = G(z, truncation_psi=0.7, noise_mode="const")[0].permute(1, 2, 0).numpy()
        png = np.asarray(Image.open(out / f"seed{s:04d}.png"), dtype=np.float64)
        assert np.abs(png - np.clip(np.rint((img + 1) * 127.5), 0, 255)).max() <= 1.0
    assert (out / "images.csv").read_text().splitlines()[1:] == ["0,seed0000.png,", "1,seed0001.png,"]


@needs_oracle
def test_oracle_in_memory_keeps_nvlabs_names(records: dict, io: dict) -> None:
    assert pickle_kind(SNAPSHOT) == "sg2ada"
    assert records["G"].source_chars > 0 and "module_src" not in records["G"].state
    nets, notes = convert_sg2ada(records)
    assert notes == {"fp16_resolutions": {"G": [], "G_ema": [], "D": []}}
    assert_reproduces(nets["G_ema"], nets["D"], io, fused=False)
    for role in ("G", "G_ema", "D"):   # NVlabs' state_dict keys, shapes and values
        theirs = records[role].tensors()
        ours = nets[role].state_dict()
        assert list(ours) == list(theirs) and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert nets["G_ema"].init_kwargs["channel_base"] == 4096 and nets["G_ema"].init_kwargs["mapping_layers"] == 2
    with torch.no_grad():   # truncation of the first 2 ws only
        cut = nets["G_ema"].mapping(torch.from_numpy(io["z"]), truncation_psi=0.7, truncation_cutoff=2).numpy()
    np.testing.assert_allclose(cut[:, :2], io["ws_trunc07"][:, :2], rtol=0, atol=TOL)
    np.testing.assert_allclose(cut[:, 2:], io["ws"][:, 2:], rtol=0, atol=TOL)


def test_fresh_network_clamps_and_noise_modes() -> None:
    torch.manual_seed(0)
    G = SG2Generator(z_dim=8, w_dim=8, img_resolution=8, mapping_layers=2, channel_base=64, channel_max=16,
                     conv_clamp=0.05)
    assert torch.equal(G.synthesis.b8.conv0.affine.bias, torch.ones(16))   # styles start at 1
    z = torch.randn(2, 8)
    with torch.no_grad():
        for name, param in G.named_parameters():
            if name.endswith("noise_strength"):   # 0 at initialisation
                param.fill_(0.5)
        ws = G.mapping(z)
        x = G.synthesis.b4.conv1(G.synthesis.b4.const[None].repeat(2, 1, 1, 1), ws[:, 0], noise_mode="random")
        assert x.abs().max() <= 0.05 and x.abs().max() > 0.04
        imgs = {mode: G(z, noise_mode=mode) for mode in ("const", "none", "random")}
    assert all(img.shape == (2, 3, 8, 8) for img in imgs.values())
    assert not torch.equal(imgs["const"], imgs["none"]) and not torch.equal(imgs["const"], imgs["random"])
    assert SG2Discriminator(img_resolution=8, channel_base=64, channel_max=16)(imgs["const"]).shape == (2, 1)


def test_pickle_kind_decides_by_the_first_global(tmp_path: Path) -> None:
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps({"a": [1, 2]}))
    assert pickle_kind(path) is None
    path.write_bytes(pickle.dumps(OrderedDict(a=1), protocol=4))
    assert pickle_kind(path) == "sg2ada"
    tf_snapshot = ORACLE / "network-snapshot.pkl"
    if tf_snapshot.is_file():
        assert pickle_kind(tf_snapshot) == "tf-release"


# --- code execution ------------------------------------------------------------------------------------------

@needs_oracle
def test_embedded_source_never_runs(tmp_path: Path, records: dict, io: dict) -> None:
    sentinel = tmp_path / SENTINEL
    src = f"import os\nos.system('touch {sentinel}')\n"
    exec(compile(src, "control", "exec"))   # control: the payload does write the sentinel when executed
    assert sentinel.exists()
    sentinel.unlink()
    source, dest = tmp_path / "net.pkl", tmp_path / "out.safetensors"
    source.write_bytes(nvlabs_bytes(records, src))
    result = invoke("--source", source, "--dest", dest)
    assert result.exit_code == 0, result.output
    assert not sentinel.exists(), "the embedded module source ran"
    nets = load_network(dest)
    assert_reproduces(nets["G_ema"], nets["D"], io)


@needs_oracle
@pytest.mark.parametrize("payload", ["os.system", "builtins.exec", "builtins.eval", "torch.load"])
@pytest.mark.parametrize("where", ["inside G's state", "first in the file"])
def test_hostile_globals_are_refused(tmp_path: Path, records: dict, payload: str, where: str) -> None:
    evil = payloads(tmp_path)[payload]

    def edit(top: dict) -> None:
        top["G"].args[0]["state"]["_init_kwargs"] = evil

    data = nvlabs_bytes(records, edit=edit) if where == "inside G's state" else pickle.dumps(
        {"x": evil, **{k: None for k in records}}, protocol=4)
    source, dest = tmp_path / "evil.pkl", tmp_path / "out.safetensors"
    source.write_bytes(data)
    name = {"os.system": "system", "torch.load": "torch.serialization.load"}.get(payload, payload)
    assert_one_error_line(invoke("--source", source, "--dest", dest), "refused global", name)
    assert not (tmp_path / SENTINEL).exists(), "the pickle's payload ran"
    assert not dest.exists()


@needs_oracle
def test_unknown_globals_and_bad_records_are_refused(tmp_path: Path, records: dict) -> None:
    def edit(top: dict) -> None:
        top["D"].args[0]["state"]["extra"] = Reduce(OrderedDict, ())   # allowed: an empty OrderedDict
        top["G"].args[0]["state"]["_init_args"] = Reduce(torch.nn.Module, ())

    source = tmp_path / "evil.pkl"
    source.write_bytes(nvlabs_bytes(records, edit=edit))
    with pytest.raises(SG2ADAPickleError, match=r"refused global torch\.nn\.modules\.module\.Module"):
        load_sg2ada_pickle(source)

    def wrong_version(top: dict) -> None:
        top["G"].args[0]["version"] = 5

    source.write_bytes(nvlabs_bytes(records, edit=wrong_version))
    with pytest.raises(SG2ADAPickleError, match="version 5"):
        load_sg2ada_pickle(source)


# --- crafted storages and tensors ----------------------------------------------------------------------------

def legacy_archive(values: np.ndarray, declared: int | None = None) -> bytes:
    """The bytes ``torch.storage._load_from_bytes`` gets: a legacy torch.save archive of one float storage,
    declaring ``declared`` elements (default: the true count)."""
    class Pickler(pickle.Pickler):
        def persistent_id(self, obj: Any) -> Any:
            if obj is values:
                return ("storage", torch.FloatStorage, "0", "cpu", len(values) if declared is None else declared, None)
            return None

    buf = iolib.BytesIO()
    for obj in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True,
                                                "type_sizes": {"short": 2, "int": 4, "long": 4}}):
        pickle.dump(obj, buf, protocol=2)
    Pickler(buf, protocol=2).dump(values)
    pickle.dump(["0"], buf, protocol=2)
    buf.write(struct.pack("<q", len(values)) + values.astype(np.float32).tobytes())
    return buf.getvalue()


def tensor_pickle(archive: bytes, size: tuple = (4,), stride: tuple = (1,), offset: int = 0, copies: int = 1) -> bytes:
    storage = Reduce(torch.storage._load_from_bytes, (archive,))
    tensors = [Reduce(torch._utils._rebuild_tensor_v2, (Reduce(torch.storage._load_from_bytes, (archive,))
                                                         if i else storage, offset, size, stride, False,
                                                         OrderedDict())) for i in range(copies)]
    return pickle.dumps({"G": tensors}, protocol=4)


def test_a_true_archive_loads(tmp_path: Path) -> None:
    # control for the cases below: a well-formed storage and view load (the file is refused later, as no network)
    path = tmp_path / "t.pkl"
    path.write_bytes(tensor_pickle(legacy_archive(np.arange(4, dtype=np.float32))))
    with pytest.raises(SG2ADAPickleError, match="expected networks"):
        load_sg2ada_pickle(path)


@pytest.mark.parametrize("case, match", [
    ("declares 2**40 elements", "declaring more elements than it holds"),
    ("zip archive", "not a legacy torch.save archive"),
    ("view past the end", "refused a tensor view"),
    ("one archive loaded 5000 times", "storages would hold more than the file size"),
])
def test_crafted_storages_are_refused(tmp_path: Path, case: str, match: str) -> None:
    values = np.arange(4, dtype=np.float32)
    if case == "declares 2**40 elements":
        data = tensor_pickle(legacy_archive(values, declared=1 << 40))
    elif case == "zip archive":
        buf = iolib.BytesIO()
        torch.save(torch.zeros(4).untyped_storage(), buf)
        data = tensor_pickle(buf.getvalue())
    elif case == "view past the end":
        data = tensor_pickle(legacy_archive(values), size=(4,), stride=(1,), offset=1)
    else:
        data = tensor_pickle(legacy_archive(np.zeros(1 << 16, np.float32)), copies=5000)
    path = tmp_path / "t.pkl"
    path.write_bytes(data)
    with pytest.raises(SG2ADAPickleError, match=match):
        load_sg2ada_pickle(path)


# --- unreadable, absurd or unconvertible files ---------------------------------------------------------------

@needs_oracle
@pytest.mark.parametrize("fraction", [0.001, 0.5, 0.999])
def test_truncated_file(tmp_path: Path, fraction: float) -> None:
    data = SNAPSHOT.read_bytes()
    source, dest = tmp_path / "cut.pkl", tmp_path / "out.safetensors"
    source.write_bytes(data[: int(len(data) * fraction)])
    assert_one_error_line(invoke("--source", source, "--dest", dest), "not a valid or complete pickle")
    assert not dest.exists()


@needs_oracle
def test_dest_must_not_be_the_source(tmp_path: Path) -> None:
    source = tmp_path / "net.pkl"
    source.write_bytes(SNAPSHOT.read_bytes())
    assert_one_error_line(invoke("--source", source, "--dest", source), "--dest", "--source")
    assert source.read_bytes() == SNAPSHOT.read_bytes()


def test_file_over_the_cap_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.pkl"
    with open(path, "wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)   # sparse: costs no disk; reading it would take seconds
    says = f"{MAX_FILE_BYTES + 1:,} bytes is more than the {MAX_FILE_BYTES:,}"
    with pytest.raises(SG2ADAPickleError, match=says):
        load_sg2ada_pickle(path)
    assert_one_error_line(invoke("--source", path, "--dest", tmp_path / "out.safetensors"), says)


@needs_oracle
@pytest.mark.parametrize("edit, says", [
    (lambda r: r["G"].state.update(c_dim=10), "class-conditional generator"),
    (lambda r: r["D"].state.update(c_dim=10), "class-conditional discriminator"),
    (lambda r: r["G"].state.update(img_resolution=1 << 20), "out of range"),
    (lambda r: r["G"].state.update(z_dim=10**6), "configuration outside what this port builds: z_dim"),
    (lambda r: r["G"].children()["mapping"].state.update(num_layers=10**6), "out of range"),
    (lambda r: r["G"].children()["synthesis"].children()["b8"].children()["conv0"].state.update(activation="relu"),
     "G.synthesis.b8.conv0: activation='relu' is not supported"),
    (lambda r: r["D"].children()["b16"].state.update(architecture="skip"), "architecture='skip'"),
    (lambda r: r["G"].children()["synthesis"].children()["b32"].children()["conv1"].state.update(conv_clamp=256),
     "conv_clamp differs between layers"),
    (lambda r: r["G"].children()["mapping"].state["_buffers"].pop("w_avg"), "missing ['mapping.w_avg']"),
    (lambda r: r["D"].children()["b4"].state["_parameters"].update(extra=torch.zeros(1)), "not used ['b4.extra']"),
    (lambda r: r["G"].children()["mapping"].children()["fc1"].state["_parameters"]["bias"].fill_(float("nan")),
     "G: mapping.fc1.bias holds NaN or infinite values"),
])
def test_unsupported_or_inconsistent_networks_are_refused(records: dict, edit: Callable, says: str) -> None:
    edit(records)
    for role in ("G", "D"):
        try:
            convert_network(role, records[role])
        except SG2ADAImportError as e:
            assert says in str(e), str(e)
            return
    pytest.fail(f"nothing refused; expected {says!r}")


# --- resource bombs: refused quickly, naming the limit --------------------------------------------------------

@pytest.mark.parametrize("case", ["dict keyed by a shared tuple", "BINBYTES8 of 1 TiB", "text line of 1 MiB",
                                  "INT of 4,000 digits", "memo index 2**24 (LONG_BINPUT)",
                                  "frozenset of a shared tuple"])
def test_generic_bombs_are_refused(tmp_path: Path, case: str) -> None:
    build, match = BOMBS[case]   # the same bounded unpickler as the release pickles' reader
    path = tmp_path / "bomb.pkl"
    path.write_bytes(build())
    with pytest.raises(SG2ADAPickleError, match=match):
        load_sg2ada_pickle(path)


@needs_oracle
def test_shared_structures_are_refused(tmp_path: Path, records: dict) -> None:
    level: list = []
    for _ in range(31):
        level = [level, level]   # 2**31 leaves in a few hundred bytes

    def bomb(top: dict) -> None:
        top["G"].args[0]["state"]["bomb"] = level

    def shared(top: dict) -> None:
        top["G_ema"] = top["G"]

    path = tmp_path / "bomb.pkl"
    for edit, match in ((bomb, r"expands to more than [\d,]+ objects"), (shared, "appears twice")):
        path.write_bytes(nvlabs_bytes(records, edit=edit))
        with pytest.raises(SG2ADAPickleError, match=match):
            load_sg2ada_pickle(path)
