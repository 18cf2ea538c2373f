"""The SQLite registry: rules, atomic issuing, two processes at once, CSV export/import, bad files."""

import multiprocessing as mp
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from attribution.registry import Registry, RegistryError, default_min_distance
from torch_utils.ops.hamming import pack_bits, unpack_bits


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

    from attribution import registry

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for table, body in re.findall(r"CREATE TABLE IF NOT EXISTS (\w+) \((.*?)\n\);", registry._SCHEMA, re.S):
        for line in body.strip().splitlines():
            column, kind = line.strip().rstrip(",").split(None, 1)
            assert f"`{table}.{column}`" in readme, (table, column)
            assert f"`{kind}`" in readme, (table, column, kind)
    assert "WAL" in readme


# -- tampered registries, lost rows, read-only opens, the full check, default names (issue 14) --------------

BITS12 = np.array([[1 if j == i else 0 for j in range(12)] for i in range(4)], dtype=np.uint8)  # 2 bits apart
REBUILD = ["ALTER TABLE fingerprints RENAME TO old",  # the table without its constraints, as a tamperer might
           "CREATE TABLE fingerprints (id INTEGER PRIMARY KEY, user, bits, file, file_sha256, source, source_sha256, "
           "issued_at)", "INSERT INTO fingerprints SELECT * FROM old", "DROP TABLE old"]
REBUILD_META = ["ALTER TABLE meta RENAME TO old", "CREATE TABLE meta (key, value)",
                "INSERT INTO meta SELECT * FROM old", "DROP TABLE old"]


def good_registry(path: Path) -> Path:
    """Four 12-bit entries u0..u3 (2 bytes each, 4 padding bits), minimum distance 1."""
    with Registry(path) as reg:
        reg.add_many([f"u{i}" for i in range(4)], pack_bits(BITS12), n_bits=12, min_distance=1)
    return path


def run_sql(path: Path, statements: list[str]) -> None:
    con = sqlite3.connect(path, isolation_level=None)
    for stmt in statements:
        con.execute(stmt)
    con.close()


def folder_state(path: Path) -> tuple[list[str], bytes]:
    return sorted(p.name for p in path.parent.iterdir()), path.read_bytes()


def assert_refused(path: Path, message: str, readonly_too: bool = True) -> None:
    """Opening refuses the file with one line naming it, and leaves the folder and the file as they were."""
    before = folder_state(path)
    for readonly in (False, True) if readonly_too else (False,):
        with pytest.raises(RegistryError, match=message) as info:
            Registry(path, readonly=readonly)
        text = str(info.value)
        assert "\n" not in text and str(path) in text, text
        assert folder_state(path) == before, readonly


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:1500])


TAMPERED = {
    "bits too short": (["UPDATE fingerprints SET bits = x'00' WHERE id = 2"], "first id 2: its bits are not 2 bytes"),
    "bits as TEXT": (["UPDATE fingerprints SET bits = 'ab' WHERE id = 2"], "its bits are not a BLOB"),
    "bits as INTEGER": (["UPDATE fingerprints SET bits = 7 WHERE id = 3"], "first id 3: its bits are not a BLOB"),
    "bits NULL": (REBUILD + ["UPDATE fingerprints SET bits = NULL WHERE id = 1"], "its bits are not a BLOB"),
    "lengths add up": (["UPDATE fingerprints SET bits = x'01' WHERE id = 1",
                        "UPDATE fingerprints SET bits = x'000000' WHERE id = 2"], "2 malformed entries"),
    "padding bits set": (["UPDATE fingerprints SET bits = x'000f' WHERE id = 4"], "padding bits are not 0"),
    "renamed column": (["ALTER TABLE fingerprints RENAME COLUMN bits TO bitz"], "table fingerprints has columns"),
    "extra column": (["ALTER TABLE fingerprints ADD COLUMN note TEXT"], "table fingerprints has columns"),
    "id not the key": (["ALTER TABLE fingerprints RENAME TO old",
                        "CREATE TABLE fingerprints (id TEXT, user, bits, file, file_sha256, source, source_sha256, "
                        "issued_at)", "INSERT INTO fingerprints SELECT * FROM old", "DROP TABLE old"],
                       "INTEGER PRIMARY KEY"),
    "n_bits not a number": (["UPDATE meta SET value = 'abc' WHERE key = 'n_bits'"], "meta n_bits is 'abc'"),
    "n_bits negative": (["UPDATE meta SET value = '-8' WHERE key = 'n_bits'"], "meta n_bits is '-8'"),
    "n_bits huge": (["UPDATE meta SET value = '99999999999999999999' WHERE key = 'n_bits'"], "from 1 to 4096"),
    "n_bits very long": (["UPDATE meta SET value = printf('%.100c', '1') WHERE key = 'n_bits'"], "over 40 characters"),
    "n_bits other length": (["UPDATE meta SET value = '24' WHERE key = 'n_bits'"], "not 3 bytes long"),
    "n_bits missing": (["DELETE FROM meta WHERE key = 'n_bits'"], "records min_distance but not n_bits"),
    "n_bits, min_distance missing": (["DELETE FROM meta WHERE key IN ('n_bits', 'min_distance')"], "no n_bits"),
    "min_distance bad": (["UPDATE meta SET value = '1.5' WHERE key = 'min_distance'"], "min_distance is '1.5'"),
    "min_distance over n_bits": (["UPDATE meta SET value = '13' WHERE key = 'min_distance'"], "from 0 to 12"),
    "meta key twice": (REBUILD_META + ["INSERT INTO meta VALUES ('n_bits', '12')"], "records n_bits twice"),
    "newer schema": (["UPDATE meta SET value = '2' WHERE key = 'schema_version'"], "schema version 2 is newer"),
    "schema_version bad": (["UPDATE meta SET value = 'one' WHERE key = 'schema_version'"], "schema_version is"),
    "schema_version missing": (["DELETE FROM meta WHERE key = 'schema_version'"], "not a fingerprint registry"),
    "duplicate fingerprint": (REBUILD + ["UPDATE fingerprints SET bits = (SELECT bits FROM fingerprints WHERE id = 1) "
                                         "WHERE id = 3"], "entries 1 and 3 hold the same fingerprint"),
    "duplicate user": (REBUILD + ["UPDATE fingerprints SET user = 'u1' WHERE id = 4"],
                       "entries 2 and 4 hold the same user"),
    "row added outside": (["INSERT INTO fingerprints (user, bits, issued_at) VALUES ('z', x'fff0', 'now')"],
                          "holds 5 entries but recorded 4"),
    "a trigger": (["CREATE TRIGGER t AFTER INSERT ON fingerprints BEGIN DELETE FROM meta; END"], "trigger 't'"),
    "a trigger named like a table": (["CREATE TRIGGER meta AFTER INSERT ON fingerprints BEGIN DELETE FROM meta; END"],
                                     "trigger 'meta'"),
    "another table": (["CREATE TABLE extra (x)"], "table 'extra'"),
    "a view instead": (["DROP TABLE fingerprints", "CREATE VIEW fingerprints AS SELECT randomblob(1000000000) AS bits"],
                       "fingerprints table is missing"),
    "another SQLite file": (lambda p: (p.unlink(), run_sql(p, ["CREATE TABLE t (x)"])), "not a fingerprint registry"),
    "not SQLite": (lambda p: p.write_bytes(b"this is not a database at all" * 100), "not an SQLite file"),
    "truncated": (truncate, "not a readable registry"),
    "a folder": (lambda p: (p.unlink(), p.mkdir()), "not a regular file"),
}


@pytest.mark.parametrize("case", TAMPERED)
def test_tampered_registries_are_refused_unchanged(tmp_path, case):
    change, message = TAMPERED[case]
    path = good_registry(tmp_path / "r.sqlite")
    change(path) if callable(change) else run_sql(path, change)
    if path.is_dir():
        with pytest.raises(RegistryError, match=message):
            Registry(path)
        return
    assert_refused(path, message)


MALFORMED_TEXT = {  # (change, what the full check says, what reading the entries says: None if it reads fine)
    "bad user name": (["UPDATE fingerprints SET user = '../evil' WHERE id = 2"],
                      "1 malformed entry, first id 2: its user is not an allowed name", "entry 2: its user"),
    "user as BLOB": (["UPDATE fingerprints SET user = x'41' WHERE id = 2"], "its user is not an allowed name",
                     "entry 2: its user"),
    "file as BLOB": (["UPDATE fingerprints SET file = x'00' WHERE id = 2"], "its file, source or SHA-256 is not text",
                     "entry 2: its file"),
    "a long path": (["UPDATE fingerprints SET file = printf('%.*c', 5000, 'x') WHERE id = 3"], "over 4096", None),
    "a huge value": (["UPDATE fingerprints SET source = zeroblob(2000000) WHERE id = 3"], "value over 1048576 bytes",
                     "string or blob too big"),
}


@pytest.mark.parametrize("case", MALFORMED_TEXT)
def test_malformed_columns_are_found_by_the_full_check_and_when_read(tmp_path, case):
    """The cheap checks at open leave the text columns to the full check and to each row as it is read."""
    statements, reported, on_reading = MALFORMED_TEXT[case]
    path = good_registry(tmp_path / "r.sqlite")
    run_sql(path, statements)
    before = folder_state(path)
    with Registry(path, readonly=True) as reg:
        report = reg.check()
        assert not report.ok and reported in report.problems[0], report.problems
        if on_reading is None:
            assert len(reg.entries()) == 4
        else:
            with pytest.raises(RegistryError, match=on_reading) as info:
                reg.entries()
            assert "\n" not in str(info.value) and str(path) in str(info.value)
    assert folder_state(path) == before


LOST = {
    "fingerprints table dropped": (["DROP TABLE fingerprints"], "fingerprints table is missing"),
    "all rows deleted": (["DELETE FROM fingerprints"], "holds 0 entries but recorded 4"),
    "one row deleted": (["DELETE FROM fingerprints WHERE id = 2"], "holds 3 entries but recorded 4"),
    "rows and their count deleted": (["DELETE FROM fingerprints", "UPDATE meta SET value = '0' WHERE key = 'entries'"],
                                     "no entry is left"),
    "both tables dropped": (["DROP TABLE fingerprints", "DROP TABLE meta"], "no tables"),
}


@pytest.mark.parametrize("case", LOST)
def test_a_registry_that_lost_rows_is_not_recreated(tmp_path, case):
    """`issue` opens with Registry(path): it must refuse, not start again at registry id 1."""
    statements, message = LOST[case]
    path = good_registry(tmp_path / "r.sqlite")
    run_sql(path, statements)
    assert_refused(path, message)


@pytest.mark.parametrize("make", ["missing", "empty file", "blank SQLite in WAL mode", "registry without a count"])
def test_new_and_older_registries_are_opened(tmp_path, make):
    """Only a missing, empty or never-used file is created fresh; a registry from before the entry count works."""
    path = tmp_path / "sub" / "r.sqlite"
    if make == "empty file":
        path.parent.mkdir()
        path.touch()
    elif make == "blank SQLite in WAL mode":
        path.parent.mkdir()
        run_sql(path, ["PRAGMA journal_mode=WAL"])
    elif make == "registry without a count":
        path.parent.mkdir()
        good_registry(path)
        run_sql(path, ["DELETE FROM meta WHERE key = 'entries'"])
    with Registry(path) as reg:
        before = len(reg)
        reg.issue("new", 12, file_writer(tmp_path, "new"), min_distance=1)
    with Registry(path, readonly=True) as reg:
        assert len(reg) == before + 1 and reg.check().ok
        assert reg.conn.execute("SELECT value FROM meta WHERE key = 'entries'").fetchone()[0] == str(before + 1)


def test_readonly_open_leaves_the_folder_as_it_was(tmp_path):
    path = good_registry(tmp_path / "reg" / "r.sqlite")
    files = tmp_path / "files"
    files.mkdir()
    quiet = folder_state(path)
    assert quiet[0] == ["r.sqlite"]

    def read_everything(reg):
        assert len(reg.entries()) == len(reg) == len(reg.packed()[0]) and reg.source_digests()
        assert reg.nearest(BITS12[:1])[1][0, 0] == 1

    with Registry(path, readonly=True) as ro:
        read_everything(ro)
    assert folder_state(path) == quiet
    # While a writer holds the registry open, its last commit still in the WAL: the side files stay as they are.
    writer = Registry(path)
    writer.issue("w1", 12, file_writer(files, "w1"))
    busy = folder_state(path)
    assert "r.sqlite-wal" in busy[0]
    with Registry(path, readonly=True) as ro:
        read_everything(ro)
        assert ro.entry("w1") is not None
    assert folder_state(path) == busy
    writer.close()
    assert folder_state(path)[0] == ["r.sqlite"]
    # A writer comes, issues and leaves while the reader is open; the reader sees its entry and cleans up last.
    ro = Registry(path, readonly=True)
    assert len(ro) == 5
    with Registry(path) as writer:
        writer.issue("w2", 12, file_writer(files, "w2"))
    assert len(ro) == 6 and ro.entry("w2") is not None and len(ro.packed()[0]) == 6
    assert ro.check().ok
    ro.close()
    assert folder_state(path)[0] == ["r.sqlite"]


@pytest.mark.parametrize("min_distance, bad_pairs", [(5, [("a", "b", 1), ("c", "d", 3)]), (3, [("a", "b", 1)]),
                                                     (1, [])])
def test_full_check_finds_fingerprints_too_close(tmp_path, min_distance, bad_pairs):
    rng = np.random.default_rng(1)
    far = rng.integers(0, 2, (3, 64), dtype=np.uint8)
    far[1], far[2] = 1 - far[0], far[0]
    far[2, :32] ^= 1                              # 32 from far[0] and from far[1]
    bits = np.stack([far[0], far[0], far[1], far[1], far[2]])
    bits[1, 0] ^= 1                               # a-b: 1 apart
    bits[3, :3] ^= 1                              # c-d: 3 apart
    path = tmp_path / "r.sqlite"
    with Registry(path) as reg:
        reg.add_many(list("abcde"), pack_bits(bits), n_bits=64, min_distance=min_distance, check_distance=False)
    with Registry(path, readonly=True) as reg:  # the cheap checks at open do not search
        assert reg.check(full=False).ok
        report = reg.check()
    assert report.full and report.entries == 5 and report.ok == (not bad_pairs)
    assert "full check passed" in report.summary() if not bad_pairs else "problem(s)" in report.summary()
    if bad_pairs:
        assert report.problems[0].startswith(f"{2 * len(bad_pairs)} fingerprints lie closer than the minimum "
                                             f"distance {min_distance}")
        for (u, v, d), line in zip(bad_pairs, report.problems):
            assert f"users {u!r} and {v!r}" in line and f"{d} bits apart" in line
        error = str(report.error())
        assert "\n" not in error and str(path) in error and "backup" in error


def test_next_user_names_skip_taken_ones(tmp_path):
    from attribution.registry import MAX_ISSUE

    reg = Registry(tmp_path / "r.sqlite")
    users = ["user000002", "user000004", "alice", "user999999", "user1000001", "user00005"]
    reg.add_many(users, pack_bits(np.eye(len(users), 8, dtype=np.uint8)), n_bits=8, min_distance=1)
    assert reg.next_user_names(3) == ["user000007", "user000008", "user000009"]    # after the 6 entries
    assert reg.next_user_names(4, start=1) == ["user000001", "user000003", "user000005", "user000006"]
    assert reg.next_user_names(3, start=999_998) == ["user999998", "user1000000", "user1000002"]
    assert len(reg.next_user_names(MAX_ISSUE)) == MAX_ISSUE
    for count in (0, MAX_ISSUE + 1, 10**9):
        with pytest.raises(RegistryError, match=f"from 1 to {MAX_ISSUE}"):
            reg.next_user_names(count)
    with pytest.raises(RegistryError, match="not allowed"):
        reg.issue("alice\n", 8, file_writer(tmp_path, "x"))
