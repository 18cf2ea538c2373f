"""Tests for the ``legacy.py`` command line: release pickles convert into network files that load and
reproduce the reference outputs; hostile, truncated or unconvertible pickles fail cleanly without
running anything, creating the destination or clobbering an existing one."""

from __future__ import annotations

import errno
import hashlib
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import dnnlib.util
import legacy
import networks.checkpoint
from interop.tf_pickle import TFNetwork, load_tf_pickle
from networks.checkpoint import load_network, read_header, save_network
from networks.stylegan2_ada import SG2Discriminator
from tests.crafted_pickles import memo_gets
from tests.release_fakes import Reduce, fake_network_class
from tests.shared_paths import ORACLE

REPO = Path(__file__).resolve().parents[1]

SNAPSHOT = ORACLE / "network-snapshot.pkl"
IO = ORACLE / "io.npz"
TOL = 1e-4
SENTINEL = "PWNED"

needs_oracle = pytest.mark.skipif(not (SNAPSHOT.is_file() and IO.is_file()), reason=f"oracle A not found at {ORACLE}")


def run_cli(*args: str | os.PathLike, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run ``python legacy.py ARGS`` in a fresh interpreter, from the repository root."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "legacy.py", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def invoke(*args: str | os.PathLike) -> Any:
    """Run ``legacy.main`` in-process; stdout and stderr are kept apart."""
    return CliRunner().invoke(legacy.main, [str(a) for a in args])


@pytest.fixture(scope="module")
def io() -> dict[str, np.ndarray]:
    with np.load(IO) as f:
        return {k: f[k] for k in f.files}


def gs_images(G: torch.nn.Module, io: dict) -> np.ndarray:
    with torch.no_grad():
        return G(torch.from_numpy(io["z"]), torch.from_numpy(io["c"]), noise_mode="const").numpy()


# --- writing pickles like the release's, with a stand-in dnnlib ------------------------------------



def release_state(net: TFNetwork, network: type, src: str, edit: Any = None) -> Any:
    """Rebuild the release's pickled state of a loaded network (scalars as numpy.float32, as TF wrote them)."""
    variables = [(k, np.float32(v) if v.ndim == 0 else v) for k, v in net.variables.items()]
    state = {"version": net.version, "name": net.name, "static_kwargs": dict(net.static_kwargs),
             "components": {k: release_state(c, network, src, edit) for k, c in net.components.items()},
             "build_module_src": src, "build_func_name": net.build_func_name, "variables": variables}
    if edit is not None:
        edit(state)
    return network(state)


def write_release_pickle(path: Path, nets: TFNetwork | tuple[TFNetwork, ...], edit: Any = None) -> Path:
    # The embedded module source is a payload: the converter must never execute it.
    src = f"import os\nos.system('touch {path.parent / SENTINEL}')\n"
    with fake_network_class() as network:
        obj = (tuple(release_state(n, network, src, edit) for n in nets) if isinstance(nets, tuple)
               else release_state(nets, network, src, edit))
        data = pickle.dumps(obj, protocol=4)
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def oracle_gs() -> TFNetwork:
    if not SNAPSHOT.is_file():
        pytest.skip(f"oracle snapshot not found at {SNAPSHOT}")
    return load_tf_pickle(SNAPSHOT)[3]




# --- successful conversions -------------------------------------------------------------------------

@needs_oracle
def test_convert_oracle_snapshot(tmp_path: Path, io: dict) -> None:
    dest = tmp_path / "out" / "oracle.safetensors"
    proc = run_cli("--source", SNAPSHOT, "--dest", dest)
    assert proc.returncode == 0, proc.stderr
    assert dest.is_file() and dest.stat().st_size > 0
    for role in ("G", "G_ema", "D", "F"):
        assert any(line.split()[:1] == [role] for line in proc.stdout.splitlines()), proc.stdout
    assert str(dest) in proc.stdout

    header = read_header(dest)
    assert header["kind"] == "snapshot"
    sha = hashlib.sha256(SNAPSHOT.read_bytes()).hexdigest()
    assert header["extra"]["source_sha256"] == sha
    assert header["extra"]["source"] == SNAPSHOT.name

    nets = load_network(dest)
    assert set(nets) == {"G", "G_ema", "D", "F"}
    assert np.abs(gs_images(nets["G_ema"], io) - io["Gs_images"]).max() <= TOL
    assert np.abs(gs_images(nets["G"], io) - io["G_images"]).max() <= TOL
    with torch.no_grad():
        x = torch.from_numpy(io["x_rand"])
        assert np.abs(nets["D"](x).numpy() - io["D_scores_x_rand"]).max() <= TOL
        latents, logits = nets["F"](x)
    assert np.abs(latents.numpy() - io["E_latents_x_rand"]).max() <= TOL
    assert np.abs(logits.numpy() - io["E_watermark_logits_x_rand"]).max() <= TOL
    assert not list(dest.parent.glob(".*.tmp"))   # no temporary file left beside the result


@needs_oracle
def test_convert_bare_gs(tmp_path: Path, oracle_gs: TFNetwork, io: dict) -> None:
    source = write_release_pickle(tmp_path / "Gs.pkl", oracle_gs)
    assert load_tf_pickle(source).name == "Gs"   # the hand-made pickle reads back as a lone network
    dest = tmp_path / "gs.safetensors"
    result = invoke("--source", source, "--dest", dest)
    assert result.exit_code == 0, (result.output, result.exception)
    assert not (tmp_path / SENTINEL).exists(), "the embedded module source was executed"
    header = read_header(dest)
    assert list(header["networks"]) == ["G_ema"] and header["kind"] == "generator"
    assert header["extra"]["source_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    nets = load_network(dest)
    assert list(nets) == ["G_ema"]
    assert np.abs(gs_images(nets["G_ema"], io) - io["Gs_images"]).max() <= TOL


@needs_oracle
def test_dest_permissions_follow_umask(tmp_path: Path, oracle_gs: TFNetwork) -> None:
    source = write_release_pickle(tmp_path / "Gs.pkl", oracle_gs)
    dest = tmp_path / "gs.safetensors"
    mask = os.umask(0o022)
    try:
        assert invoke("--source", source, "--dest", dest).exit_code == 0
    finally:
        os.umask(mask)
    assert dest.stat().st_mode & 0o777 == 0o644


# --- failures: nothing runs, nothing is written ---------------------------------------------------------

def test_malicious_pickle(tmp_path: Path) -> None:
    sentinel = tmp_path / SENTINEL
    source = tmp_path / "evil.pkl"
    source.write_bytes(pickle.dumps(Reduce(os.system, (f"touch {sentinel}",)), protocol=4))
    dest = tmp_path / "out.safetensors"
    proc = run_cli("--source", source, "--dest", dest)
    assert proc.returncode != 0
    assert "error:" in proc.stderr and "refused global" in proc.stderr and "system" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not sentinel.exists(), "the pickle's payload ran"
    assert not dest.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.pkl"]


@needs_oracle
def test_truncated_pickle(tmp_path: Path) -> None:
    source = tmp_path / "truncated.pkl"
    data = SNAPSHOT.read_bytes()
    source.write_bytes(data[: len(data) // 2])
    dest = tmp_path / "out.safetensors"
    result = invoke("--source", source, "--dest", dest)
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit)
    assert "not a valid or complete pickle" in result.stderr
    assert not dest.exists()


def _failing_sources(tmp_path: Path, oracle_gs: TFNetwork | None) -> dict[str, Path]:
    sentinel = tmp_path / SENTINEL
    out = {"malicious": tmp_path / "evil.pkl", "truncated": tmp_path / "truncated.pkl",
           "not a pickle": tmp_path / "text.pkl"}
    out["malicious"].write_bytes(pickle.dumps(Reduce(os.system, (f"touch {sentinel}",)), protocol=4))
    out["truncated"].write_bytes(pickle.dumps(list(range(1000)), protocol=4)[:100])
    out["not a pickle"].write_text("hello\n")
    if oracle_gs is not None:   # loads fine, but the converter refuses it (an unknown variable)
        def add_variable(state: dict) -> None:
            if state["name"] == "G_synthesis":
                state["variables"].append(("64x64/ToRGB/weight", np.zeros((1, 1, 128, 3), np.float32)))

        out["unconvertible"] = write_release_pickle(tmp_path / "odd.pkl", oracle_gs, add_variable)
    return out


@pytest.mark.parametrize("case", ["malicious", "truncated", "not a pickle", "unconvertible"])
def test_existing_dest_is_not_clobbered(tmp_path: Path, request: pytest.FixtureRequest, case: str) -> None:
    oracle_gs = request.getfixturevalue("oracle_gs") if case == "unconvertible" else None
    source = _failing_sources(tmp_path, oracle_gs)[case]
    dest = _network_file(tmp_path / "keep.safetensors")     # a file of the kind written may be replaced, atomically
    kept = dest.read_bytes()
    result = invoke("--source", source, "--dest", dest)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
    assert result.stderr.startswith("error: ")
    assert dest.read_bytes() == kept
    assert not (tmp_path / SENTINEL).exists()
    assert not list(tmp_path.glob(".*.tmp"))
    if case == "unconvertible":
        assert "G_synthesis/64x64/ToRGB/weight" in result.stderr
    else:
        assert source.name in result.stderr


@needs_oracle
def test_unbuildable_kwargs_give_a_clean_error(tmp_path: Path, oracle_gs: TFNetwork) -> None:
    def bad_resolution(state: dict) -> None:
        if "resolution" in state["static_kwargs"]:
            state["static_kwargs"]["resolution"] = 48

    source = write_release_pickle(tmp_path / "odd.pkl", oracle_gs, bad_resolution)
    dest = tmp_path / "out.safetensors"
    result = invoke("--source", source, "--dest", dest)
    assert not dest.exists()
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1, repr(result.exception)
    assert result.stderr.startswith("error: ")


def test_missing_source(tmp_path: Path) -> None:
    dest = tmp_path / "out.safetensors"
    result = invoke("--source", tmp_path / "nope.pkl", "--dest", dest)
    assert result.exit_code == 2 and "nope.pkl" in result.stderr
    assert not dest.exists()


def test_help() -> None:
    result = invoke("--help")
    assert result.exit_code == 0, result.output
    assert "--source" in result.stdout and "--dest" in result.stdout


def assert_one_error_line(result: Any, *fragments: str) -> str:
    """The command failed cleanly: exit status 1, one ``error:`` line on stderr naming ``fragments``."""
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def _link_to_source(kind: str, source: Path) -> Path:
    dest = source.parent / f"{kind}.pkl"
    if kind == "same path":
        return source
    if kind == "symlink":
        dest.symlink_to(source)
    elif kind == "hard link":
        os.link(source, dest)
    elif kind == "relative path":
        return Path(os.path.relpath(source))
    return dest


@needs_oracle
@pytest.mark.parametrize("kind", ["same path", "symlink", "hard link", "relative path"])
def test_dest_must_not_be_the_source(tmp_path: Path, oracle_gs: TFNetwork, kind: str) -> None:
    source = write_release_pickle(tmp_path / "Gs.pkl", oracle_gs)
    before = source.read_bytes()
    dest = _link_to_source(kind, source)
    assert_one_error_line(invoke("--source", source, "--dest", dest), "--dest", "--source")
    assert source.read_bytes() == before
    assert not list(tmp_path.glob(".*.tmp"))


def _no_space(tensors: dict, filename: str, metadata: dict | None = None) -> None:
    with open(filename, "wb") as f:   # half a file, then the disk is full
        f.write(b"\0" * 1000)
    raise OSError(errno.ENOSPC, "No space left on device", filename)


def _read_only(*args: Any, **kwargs: Any) -> Any:
    raise PermissionError(errno.EACCES, "Permission denied", kwargs.get("dir"))


def _unreadable(path: Any, *args: Any) -> str:
    raise PermissionError(errno.EACCES, "Permission denied", str(path))


# (case, patch target, replacement, what the error line says). Tests run as root here, where a read-only
# folder can still be written: the failures are simulated where the OS would report them.
WRITE_FAILURES = {
    "disk full": (networks.checkpoint, "save_file", _no_space, "No space left on device"),
    "read-only folder": (dnnlib.util.tempfile, "mkstemp", _read_only, "Permission denied"),
    "source unreadable when hashed": (legacy, "sha256_file", _unreadable, "cannot read"),
    "folder is a file": (None, None, None, "cannot write"),
}


@needs_oracle
@pytest.mark.parametrize(("case", "existing"), [("disk full", False), ("disk full", True), ("read-only folder", True),
                                                ("source unreadable when hashed", False), ("folder is a file", False)])
def test_write_failures_leave_nothing_behind(tmp_path: Path, oracle_gs: TFNetwork, monkeypatch: pytest.MonkeyPatch,
                                             case: str, existing: bool) -> None:
    source = write_release_pickle(tmp_path / "Gs.pkl", oracle_gs)
    module, name, replacement, says = WRITE_FAILURES[case]
    out = tmp_path / "out"
    if module is None:
        out.write_bytes(b"a file where the folder should be")
        dest = out / "gs.safetensors"
    else:
        out.mkdir()
        dest = out / "gs.safetensors"
        if existing:
            _network_file(dest)
        monkeypatch.setattr(module, name, replacement)
    before = sorted(tmp_path.rglob("*"))
    kept = dest.read_bytes() if existing else None
    line = assert_one_error_line(invoke("--source", source, "--dest", dest), says)
    assert str(dest) in line or str(source) in line
    assert sorted(tmp_path.rglob("*")) == before   # no temporary file, no new folder
    if existing:
        assert dest.read_bytes() == kept


def _network_file(path: Path) -> Path:
    """A small network file of this project at ``path`` (what legacy.py may replace)."""
    save_network(path, D=SG2Discriminator(img_resolution=8, channel_base=64, channel_max=8))
    return path


@pytest.mark.parametrize("name", ["keep.safetensors", "keep.pt"])
def test_a_foreign_dest_is_refused_before_anything_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           name: str) -> None:
    source = _network_file(tmp_path / "net.safetensors") if name.endswith(".pt") else tmp_path / "G.pkl"
    if not source.exists():
        source.write_bytes(b"never read")
    dest = tmp_path / name
    dest.write_bytes(b"precious bytes")
    monkeypatch.setattr(legacy, "load_network", lambda *a, **k: pytest.fail("read the source"))
    monkeypatch.setattr(legacy, "pickle_kind", lambda *a, **k: pytest.fail("read the source"))
    assert_one_error_line(invoke("--source", source, "--dest", dest), str(dest), "refusing to overwrite")
    assert dest.read_bytes() == b"precious bytes"


def _tiny_gs(tmp_path: Path, **kwargs: Any) -> Path:
    """A Gs pickle with no variables: kwargs are checked before anything is built from them."""
    state = {"version": 4, "name": "Gs", "static_kwargs": {"resolution": 32, **kwargs}, "components": {},
             "build_module_src": "", "build_func_name": "G_main_watermark", "variables": []}
    with fake_network_class() as network:
        data = pickle.dumps(network(state), protocol=4)
    path = tmp_path / "tiny.pkl"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(("kwargs", "says"), [
    ({"mapping_layers": 1000}, "mapping_layers=1000 must be an integer between 1 and 64"),
    ({"resample_kernel": [1] * 100}, "resample_kernel must be 1 to 16 finite numbers"),
    ({"resample_kernel": [1, float("inf")]}, "resample_kernel must be 1 to 16 finite numbers"),
    ({"resolution": 2**60}, "resolution=1152921504606846976 must be an integer between 4 and 4096"),
    ({"res_modulated_max_log2": 10**6}, "res_modulated_max_log2=1000000 must be an integer between 0 and 16"),
    ({"latent_size": 512.5}, "latent_size=512.5 must be an integer"),
    ({"mapping_lrmul": float("nan")}, "mapping_lrmul=nan must be a positive number"),
])
def test_absurd_kwargs_are_refused_before_building(tmp_path: Path, kwargs: dict, says: str) -> None:
    dest = tmp_path / "out.safetensors"
    assert_one_error_line(invoke("--source", _tiny_gs(tmp_path, **kwargs), "--dest", dest), "tiny.pkl", says)
    assert not dest.exists()


def test_crafted_pickle_gives_one_line(tmp_path: Path) -> None:
    source = tmp_path / "gets.pkl"
    source.write_bytes(memo_gets())
    dest = tmp_path / "out.safetensors"
    assert_one_error_line(invoke("--source", source, "--dest", dest), "gets.pkl", "more than 250,000 pickle opcodes",
                          "--source must be a network pickle")
    assert not dest.exists()
