"""The SQLite registry: rules, atomic issuing, two processes at once, CSV export/import, bad files."""

import multiprocessing as mp
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from torch_utils.ops.hamming import pack_bits, unpack_bits
from training.registry import Registry, RegistryError, default_min_distance


def file_writer(folder: Path, user: str):
    def write(bits):
        path = folder / f"{user}.bin"
        path.write_bytes(np.packbits(bits).tobytes())
        return str(path), "0" * 64
    return write


def issue_many(path: str, folder: str, prefix: str, count: int, n_bits: int, min_distance: int) -> None:
    with Registry(path) as reg:
        for i in range(count):
            user = f"{prefix}{i:03d}"
            reg.issue(user, n_bits, file_writer(Path(folder), user), min_distance=min_distance)


def pairwise_min_distance(bits: np.ndarray) -> int:
    d = (bits[:, None, :] != bits[None, :, :]).sum(axis=2)
    np.fill_diagonal(d, 10**6)
    return int(d.min())


def test_issue_records_rules_and_keeps_distance(tmp_path):
    reg = Registry(tmp_path / "r.sqlite")
    assert len(reg) == 0 and reg.n_bits is None
    for i in range(20):
        reg.issue(f"u{i}", 16, file_writer(tmp_path, f"u{i}"), min_distance=5, source="snap", source_sha256="ab")
    assert reg.n_bits == 16 and reg.min_distance == 5 and len(reg) == 20
    entries = reg.entries()
    bits = np.array([[int(c) for c in e.bits] for e in entries])
    assert pairwise_min_distance(bits) >= 5
    assert all(Path(e.file).is_file() and e.source == "snap" and e.issued_at.endswith("+00:00") for e in entries)
    ids, packed = reg.packed()
    assert ids.tolist() == list(range(1, 21))
    np.testing.assert_array_equal(unpack_bits(packed, 16), bits)
    assert reg.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with pytest.raises(RegistryError, match="already holds"):
        reg.issue("u3", 16, file_writer(tmp_path, "x"))
    with pytest.raises(RegistryError, match="holds 16-bit fingerprints"):
        reg.issue("new", 32, file_writer(tmp_path, "new"))
    with pytest.raises(RegistryError, match="minimum distance 5"):
        reg.issue("new", 16, file_writer(tmp_path, "new"), min_distance=3)
    with pytest.raises(RegistryError, match="not allowed"):
        reg.issue("../evil", 16, file_writer(tmp_path, "evil"))
    assert len(reg) == 20 and not (tmp_path / "new.bin").exists()


def test_default_min_distance_is_a_quarter():
    assert default_min_distance(128) == 32 and default_min_distance(32) == 8 and default_min_distance(2) == 1


def test_a_failed_issue_leaves_no_row_and_no_file(tmp_path):
    reg = Registry(tmp_path / "r.sqlite")
    reg.issue("a", 32, file_writer(tmp_path, "a"))

    def write_then_fail(bits):
        raise OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        reg.issue("b", 32, write_then_fail)
    # The file is written but the insert fails (a fingerprint drawn twice: the UNIQUE constraint).
    same = bytes.fromhex(reg.packed()[1][0].tobytes().hex())
    with pytest.raises(Exception):  # noqa: B017 - distance rule or UNIQUE, either refuses
        reg.issue("c", 32, file_writer(tmp_path, "c"), random_bytes=lambda n: same, max_draws=3)
    assert [e.user for e in reg.entries()] == ["a"]
    assert not (tmp_path / "b.bin").exists() and not (tmp_path / "c.bin").exists()


def test_full_space_is_reported(tmp_path):
    reg = Registry(tmp_path / "r.sqlite")
    reg.issue("a", 4, file_writer(tmp_path, "a"), min_distance=4)
    reg.issue("b", 4, file_writer(tmp_path, "b"), random_bytes=lambda n: bytes([(~reg.packed()[1][0][0]) & 0xF0]))
    with pytest.raises(RegistryError, match="full at this distance"):
        reg.issue("c", 4, file_writer(tmp_path, "c"), max_draws=200)
    assert len(reg) == 2


def test_two_processes_issuing_at_once(tmp_path):
    """No duplicates, no lost rows, the distance held, every row with its file."""
    path = str(tmp_path / "r.sqlite")
    Registry(path).close()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=issue_many, args=(path, str(tmp_path), p, 25, 16, 4)) for p in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with Registry(path, readonly=True) as reg:
        entries = reg.entries()
        assert len(entries) == 50 and len({e.user for e in entries}) == 50 and len({e.bits for e in entries}) == 50
        bits = np.array([[int(c) for c in e.bits] for e in entries])
        assert pairwise_min_distance(bits) >= 4
        assert all(Path(e.file).is_file() for e in entries)
        assert sorted(p.name for p in tmp_path.glob("*.bin")) == sorted(f"{e.user}.bin" for e in entries)


def test_readonly_and_foreign_files(tmp_path):
    with pytest.raises(RegistryError, match="no such registry"):
        Registry(tmp_path / "missing.sqlite", readonly=True)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(RegistryError, match="not a readable registry"):
        Registry(junk)
    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    with pytest.raises(RegistryError, match="not a fingerprint registry"):
        Registry(other, readonly=True)
    reg = Registry(tmp_path / "r.sqlite")
    reg.issue("a", 8, file_writer(tmp_path, "a"))
    reg.close()
    ro = Registry(tmp_path / "r.sqlite", readonly=True)
    with pytest.raises(RegistryError, match="read-only"):
        ro.issue("b", 8, file_writer(tmp_path, "b"))
    with pytest.raises(RegistryError, match="empty"):
        Registry(tmp_path / "empty.sqlite").nearest(np.zeros((1, 8)))


def test_csv_round_trip_and_all_or_nothing_import(tmp_path):
    src = Registry(tmp_path / "a.sqlite")
    for i in range(5):
        src.issue(f"u{i}", 32, file_writer(tmp_path, f"u{i}"), source="snap")
    assert src.export_csv(tmp_path / "a.csv") == 5
    dst = Registry(tmp_path / "b.sqlite")
    assert dst.import_csv(tmp_path / "a.csv") == 5
    assert [(e.user, e.bits, e.file, e.source, e.issued_at) for e in dst.entries()] == \
           [(e.user, e.bits, e.file, e.source, e.issued_at) for e in src.entries()]
    # Importing the same again: refused as a whole (users and fingerprints exist).
    with pytest.raises(RegistryError):
        dst.import_csv(tmp_path / "a.csv")
    assert len(dst) == 5

    lines = (tmp_path / "a.csv").read_text().splitlines()
    bad_cases = {
        "line 3: a fingerprint must be 32": [lines[0], "x0," + "1" * 32, "x1," + "01" * 10],
        "missing column": ["user,file", "x1,f"],
        "not allowed": [lines[0], "bad name," + "0" * 32],
        "closer than": [lines[0], "x1," + "0" * 32, "x2," + "0" * 31 + "1"],       # 1 apart
        "no entries": [lines[0]],
    }
    for case, (message, rows) in enumerate(bad_cases.items()):
        path = tmp_path / "bad.csv"
        path.write_text("\n".join(rows) + "\n")
        fresh = Registry(tmp_path / f"fresh-{case}.sqlite")
        with pytest.raises(RegistryError, match=message):
            fresh.import_csv(path)
        assert len(fresh) == 0
    # Without the distance check, near fingerprints are accepted, exact duplicates still are not.
    path = tmp_path / "near.csv"
    path.write_text("user,bits\nx1," + "0" * 32 + "\nx2," + "0" * 31 + "1\n")
    assert Registry(tmp_path / "near.sqlite").import_csv(path, check_distance=False) == 2


def test_nearest_returns_registry_ids(tmp_path):
    reg = Registry(tmp_path / "r.sqlite")
    for i in range(10):
        reg.issue(f"u{i}", 64, file_writer(tmp_path, f"u{i}"))
    ids, packed = reg.packed()
    q = unpack_bits(packed[[7, 2]], 64).copy()
    q[0, :5] ^= 1
    dist, nearest = reg.nearest(q, k=2)
    assert nearest[:, 0].tolist() == [ids[7], ids[2]] and dist[:, 0].tolist() == [5, 0]
    with pytest.raises(RegistryError, match="64-bit"):
        reg.nearest(np.zeros((1, 32)))
    # add_many refuses a wrong shape.
    with pytest.raises(RegistryError, match="shape"):
        reg.add_many(["z"], pack_bits(np.zeros((1, 32))), n_bits=64)


def test_issue_records_absolute_paths_and_sources(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def relative_writer(bits):
        Path("u.bin").write_bytes(np.packbits(bits).tobytes())
        return "u.bin", "0" * 64
    with Registry("r.sqlite") as reg:
        entry = reg.issue("u", 16, relative_writer, min_distance=4, source="/s/a", source_sha256="aa")
        assert entry.file == str((tmp_path / "u.bin").resolve())
        reg.issue("v", 16, file_writer(tmp_path, "v"), min_distance=4, source="/s/b", source_sha256="bb")
        reg.issue("w", 16, file_writer(tmp_path, "w"), min_distance=4, source="/s/copy-of-b", source_sha256="bb")
        reg.issue("x", 16, file_writer(tmp_path, "x"), min_distance=4)
        assert reg.records_source("aa") and reg.records_source("bb") and not reg.records_source("cc")
        assert reg.source_digests() == [("bb", "/s/b", 2), (None, None, 1), ("aa", "/s/a", 1)]


def test_readme_states_the_schema():
    """The README's registry section lists every column of the schema, with its type."""
    import re

    from training import registry

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for table, body in re.findall(r"CREATE TABLE IF NOT EXISTS (\w+) \((.*?)\n\);", registry._SCHEMA, re.S):
        for line in body.strip().splitlines():
            column, kind = line.strip().rstrip(",").split(None, 1)
            assert f"`{table}.{column}`" in readme, (table, column)
            assert f"`{kind}`" in readme, (table, column, kind)
    assert "WAL" in readme
