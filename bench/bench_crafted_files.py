"""Benchmark: crafted input files are refused quickly and in little memory (issue 14: each within 2 s and
200 MB of extra peak memory).

Usage: python bench/bench_crafted_files.py [--only TEXT] [--timeout 60] [--cap-mb 4096]

Each case writes a crafted file into a temporary folder, then loads it in a fresh child process (multiprocessing
spawn). The child imports what the loader needs, notes its resident memory, loads the file and reports the wall
time of the load, the rise of its peak resident memory (so importing torch is not counted) and the exception that
refused the file. The peak is the child's ``VmHWM``, reset after the imports through ``/proc/self/clear_refs``
(else: the peak after the imports is the baseline). ``ru_maxrss`` is not used: on Linux a spawned child inherits
the parent's peak in it across fork and exec, which hides anything below the parent's size.

A case passes when the expected exception refused it (or, for a control, the file loaded) within both bars. The
child's address space is capped ``--cap-mb`` above its size after the imports and it is killed after ``--timeout``
seconds, so a case that regresses fails instead of taking the machine down. Prints a Markdown table; exits with
status 1 if any case fails. Linux only (/proc).

To add a family of crafted files, append ``Case`` entries to ``CASES``: ``make(tmpdir)`` writes the file and
returns its path (run here), ``load(path)`` reads it the way the tool does (run in the child, so a module-level
function), ``expected`` is the class name of the exception that must refuse it (None: the file must load), and
``imports`` the modules to import before the baseline is taken.
"""

from __future__ import annotations

import argparse
import importlib
import multiprocessing as mp
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests import crafted_pickles as crafted  # noqa: E402
from tests.shared_paths import ORACLE  # noqa: E402

TIME_BAR_S = 2.0
MEMORY_BAR_MB = 200.0


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[Path], Path]          # writes the crafted file into a folder, returns its path
    load: Callable[[Path], Any]           # reads it the way the tool does (in the child process)
    expected: str | None                  # class name of the exception that must refuse it; None: must load
    imports: tuple[str, ...] = ("torch", "interop.tf_pickle", "interop.tf_import")   # before the baseline


# --- loaders (module level: the child process receives them by name) ----------------------------------------

def convert_release_pickle(path: Path) -> Any:
    """What ``legacy.py`` does before writing: read the pickle, then build our networks from it."""
    from interop.tf_import import convert_release
    from interop.tf_pickle import load_tf_pickle
    return convert_release(load_tf_pickle(path))


def read_release_pickle(path: Path) -> Any:
    from interop.tf_pickle import load_tf_pickle
    return load_tf_pickle(path)


# --- makers -----------------------------------------------------------------------------------------------

def _bytes(build: Callable[[], bytes], name: str = "crafted.pkl") -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(build())
        return path
    return make


def _tiny_gs(**kwargs: Any) -> Callable[[Path], Path]:
    """A Gs with no variables whose static_kwargs hold ``kwargs`` (checked before anything is built)."""
    return _bytes(lambda: crafted.fake_bytes(lambda net: net(crafted.state(
        "Gs", [], func="G_main_watermark", resolution=32, **kwargs))))


def _sparse(size: int) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / "huge.pkl"
        with open(path, "wb") as f:
            f.truncate(size)
        return path
    return make


def _fifo(folder: Path) -> Path:
    path = folder / "pipe.pkl"
    os.mkfifo(path)
    return path


def _oracle(folder: Path) -> Path:
    return ORACLE / "network-snapshot.pkl"


def _pickle_cases() -> list[Case]:
    bombs = {name: build for name, (build, _) in crafted.BOMBS.items()}
    bombs["dict keyed by a shared tuple"] = lambda: crafted.shared_tuple_dict_key(40)   # the tests use 24 levels
    bombs["frozenset of a shared tuple"] = lambda: crafted.shared_tuple_frozenset(40)
    bombs["memo index 2**28 (LONG_BINPUT)"] = lambda: crafted.memo_index(1 << 28)       # 4 GiB for the C unpickler
    bombs["1,000,000 memo gets"] = lambda: crafted.memo_gets(1_000_000)
    bombs["5,000 INTs of 4,000 digits"] = lambda: crafted.decimal_ints(5000)
    cases = [Case(name, _bytes(build), convert_release_pickle, "TFPickleError") for name, build in bombs.items()]
    cases += [
        Case("file over 1 GiB (sparse)", _sparse((1 << 30) + 1), convert_release_pickle, "TFPickleError"),
        Case("named pipe, no writer", _fifo, convert_release_pickle, "TFPickleError"),
        Case("kwargs: 10**8 mapping layers", _tiny_gs(mapping_layers=10**8), convert_release_pickle, "TFImportError"),
        Case("kwargs: 20,000-tap resample kernel", _tiny_gs(resample_kernel=[1] * 20_000), convert_release_pickle,
             "TFImportError"),
        Case("kwargs: 2**(10**12) modulated resolution", _tiny_gs(res_modulated_max_log2=10**12),
             convert_release_pickle, "TFImportError"),
    ]
    under_limit = _bytes(lambda: crafted.fake_bytes(lambda net: net(crafted.state("G", [], k=list(range(240_000))))))
    cases.append(Case("control: 240,000 opcodes, just under the limit, loads", under_limit, read_release_pickle, None))
    if (ORACLE / "network-snapshot.pkl").is_file():
        cases.append(Case("control: the oracle snapshot (23 MB) loads", _oracle, read_release_pickle, None))
    return cases


# --- network files (safetensors + JSON header) ------------------------------------------------------------------

NETWORK_IMPORTS = ("torch", "networks.checkpoint", "tests.crafted_networks")


def load_network_file(path: Path) -> Any:
    """What generate.py / calc_metrics.py do: read the header, build the networks, load the tensors."""
    from networks.checkpoint import load_network
    return load_network(path)


def load_decoder_file(path: Path) -> Any:
    """What detect_attribute.py does: find the decoder (for a baked generator, its issuing snapshot's F)."""
    from networks.checkpoint import load_decoder
    return load_decoder(path)


def _crafted_network(case: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        from tests.crafted_networks import crafted_network
        return crafted_network(folder / f"{case}.safetensors", case)
    return make


def _nan_snapshot(folder: Path) -> Path:
    from tests.crafted_networks import network_file
    return network_file(folder / "nan.safetensors", names=("G", "G_ema", "D", "F"), nan_in="F.out.bias")


def _self_baked(folder: Path) -> Path:
    from tests.crafted_networks import baked_file
    path = folder / "self.safetensors"
    return baked_file(path, source=path)


def _network_cases() -> list[Case]:
    from tests.crafted_networks import CASES as HEADERS
    cases = [Case(f"network header: {name}", _crafted_network(name), load_network_file, "CheckpointError",
                  NETWORK_IMPORTS) for name in HEADERS]
    cases += [Case("network: NaN in F", _nan_snapshot, load_decoder_file, "CheckpointError", NETWORK_IMPORTS),
              Case("network: baked generator issued from itself", _self_baked, load_decoder_file, "CheckpointError",
                   NETWORK_IMPORTS)]
    return cases


# --- registries (SQLite) --------------------------------------------------------------------------------------

REGISTRY_IMPORTS = ("attribution.registry",)
REGISTRY_ENTRIES = 100_000


def open_registry(path: Path) -> Any:
    """What detect does: open read-only (every open runs the cheap checks), count the entries."""
    from attribution.registry import Registry
    with Registry(path, readonly=True) as reg:
        return len(reg)


def read_registry(path: Path) -> Any:
    """What export-registry does: open read-only and read every entry (text columns are checked as read)."""
    from attribution.registry import Registry
    with Registry(path, readonly=True) as reg:
        return len(reg.entries())


def _registry(statements: list[str]) -> Callable[[Path], Path]:
    """A 128-bit registry of REGISTRY_ENTRIES random entries, then ``statements`` run on it as raw SQL."""
    def make(folder: Path) -> Path:
        import sqlite3

        import numpy as np

        from attribution.registry import Registry
        from torch_utils.ops.hamming import pack_bits
        path = folder / "registry.sqlite"
        bits = np.random.default_rng(0).integers(0, 2, (REGISTRY_ENTRIES, 128), dtype=np.uint8)
        with Registry(path) as reg:
            reg.add_many([f"user{i:06d}" for i in range(REGISTRY_ENTRIES)], pack_bits(bits), n_bits=128,
                         min_distance=0)
        con = sqlite3.connect(path, isolation_level=None)
        for stmt in statements:
            con.execute(stmt)
        con.close()
        return path
    return make


_REBUILD = ["ALTER TABLE fingerprints RENAME TO old",
            "CREATE TABLE fingerprints (id INTEGER PRIMARY KEY, user, bits, file, file_sha256, source, source_sha256, "
            "issued_at)", "INSERT INTO fingerprints SELECT * FROM old", "DROP TABLE old"]


def _registry_cases() -> list[Case]:
    last = f"id = {REGISTRY_ENTRIES}"
    tampered = {
        "bits of the last row too short": [f"UPDATE fingerprints SET bits = x'00' WHERE {last}"],
        "bits as TEXT": [f"UPDATE fingerprints SET bits = 'ab' WHERE {last}"],
        "two lengths that add up": ["UPDATE fingerprints SET bits = zeroblob(15) WHERE id = 1",
                                    "UPDATE fingerprints SET bits = zeroblob(17) WHERE id = 2"],
        "n_bits = 'abc'": ["UPDATE meta SET value = 'abc' WHERE key = 'n_bits'"],
        "fingerprints table dropped": ["DROP TABLE fingerprints"],
        "rows lost": [f"DELETE FROM fingerprints WHERE id > {REGISTRY_ENTRIES // 2}"],
        "duplicate user (UNIQUE dropped)": _REBUILD + [f"UPDATE fingerprints SET user = 'user000000' WHERE {last}"],
        "a view that allocates 1 GB": ["DROP TABLE fingerprints",
                                       "CREATE VIEW fingerprints AS SELECT randomblob(1000000000) AS bits"],
    }
    cases = [Case(f"registry ({REGISTRY_ENTRIES:,} entries): {name}", _registry(sql), open_registry, "RegistryError",
                  REGISTRY_IMPORTS) for name, sql in tampered.items()]
    cases.append(Case(f"registry ({REGISTRY_ENTRIES:,} entries): a 100 MB value, every entry read",
                      _registry([f"UPDATE fingerprints SET source = zeroblob(100000000) WHERE {last}"]), read_registry,
                      "RegistryError", REGISTRY_IMPORTS))
    cases.append(Case(f"control: registry of {REGISTRY_ENTRIES:,} entries opens", _registry([]), open_registry, None,
                      REGISTRY_IMPORTS))
    return cases


CASES: list[Case] = _pickle_cases() + _network_cases() + _registry_cases()


# --- measuring ----------------------------------------------------------------------------------------------

def _status_mb(field: str) -> float:
    """``VmRSS`` / ``VmHWM`` (peak) / ``VmSize`` of this process from /proc/self/status, in MB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024


def _reset_peak() -> bool:
    """Reset this process's peak resident memory to its current one (Linux >= 4.0); False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _cap_address_space(extra_mb: int) -> None:
    """Let the process grow by at most ``extra_mb`` of address space from now on (MemoryError beyond)."""
    limit = int((_status_mb("VmSize") + extra_mb) * (1 << 20))
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))


def _child(index: int, path: str, cap_mb: int, conn: Any) -> None:
    case = CASES[index]
    for module in case.imports:
        importlib.import_module(module)
    base = _status_mb("VmRSS") if _reset_peak() else _status_mb("VmHWM")
    _cap_address_space(cap_mb)
    start = time.perf_counter()
    refused, message = None, ""
    try:
        case.load(Path(path))
    except (Exception, MemoryError) as e:
        refused, message = type(e).__name__, " ".join(str(e).split())[:160]
    seconds = time.perf_counter() - start
    conn.send({"time": seconds, "extra_mb": _status_mb("VmHWM") - base, "refused": refused, "message": message})
    conn.close()


def run_case(index: int, path: Path, timeout: float, cap_mb: int) -> dict:
    ctx = mp.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(index, str(path), cap_mb, send), daemon=True)
    proc.start()
    send.close()
    result = None
    if receive.poll(timeout):
        try:
            result = receive.recv()
        except EOFError:
            pass
    if proc.is_alive():
        proc.kill()
    proc.join()
    if result is None:
        why = f"timeout after {timeout:.0f} s" if proc.exitcode == -9 else f"child died (exit {proc.exitcode})"
        result = {"time": float("nan"), "extra_mb": float("nan"), "refused": why, "message": ""}
    return result


def _size(path: Path) -> str:
    if not path.is_file():
        return "pipe" if path.is_fifo() else "?"
    n = path.stat().st_size
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="run only the cases whose name contains this text")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds before a child is killed")
    parser.add_argument("--cap-mb", type=int, default=4096, help="address space a child may add after its imports")
    args = parser.parse_args()

    import torch

    print(f"CPU: {torch.backends.cpu.get_cpu_capability()} ({platform.machine()}, {os.cpu_count()} cores); "
          f"Python {platform.python_version()}, torch {torch.__version__}. Bars: <= {TIME_BAR_S:g} s and "
          f"<= {MEMORY_BAR_MB:g} MB of extra peak memory per file. Other processes may be loading the CPU.\n")
    print("| case | file size | time (s) | extra peak MB | refused with | pass |")
    print("|---|---:|---:|---:|---|---|")
    failures, notes = 0, []
    with tempfile.TemporaryDirectory() as tmp:
        for index, case in enumerate(CASES):
            if args.only not in case.name:
                continue
            folder = Path(tmp) / f"case{index}"
            folder.mkdir()
            path = case.make(folder)
            r = run_case(index, path, args.timeout, args.cap_mb)
            ok = (r["refused"] == case.expected and r["time"] <= TIME_BAR_S and r["extra_mb"] <= MEMORY_BAR_MB)
            failures += not ok
            refused = r["refused"] or "(loaded)"
            if case.expected != r["refused"]:
                refused += f" (expected {case.expected or 'a load'})"
            print(f"| {case.name} | {_size(path)} | {r['time']:.3f} | {r['extra_mb']:.1f} | {refused} | "
                  f"{'pass' if ok else 'FAIL'} |", flush=True)
            if r["message"]:
                notes.append(f"- {case.name}: {r['message']}")
    print("\nMessages:\n" + "\n".join(notes))
    print(f"\n{failures} case(s) failed." if failures else "\nAll cases passed.")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
