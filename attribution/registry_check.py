"""Opening a registry file safely, and checking its integrity: the cheap checks of every open, and the full one.

A registry may have been damaged, edited by hand, or crafted to break the tools that read it. Every open
runs the cheap checks below inside one read transaction (a consistent snapshot, even while another
process issues) and refuses the file with a ``RegistryError`` naming it, what is wrong and what to do;
a refused file is never changed. They cost a few queries and one scan of the rows, with no fingerprint
loaded into memory (``bench/bench_registry.py`` times them):

* the file is a regular file that starts with SQLite's header (or is empty: a new registry);
* the schema: the tables ``meta`` and ``fingerprints`` and their indexes, nothing else (no view, trigger,
  virtual or other table); each table has exactly the expected columns, none generated; ``fingerprints.id``
  is the ``INTEGER PRIMARY KEY``;
* ``meta``: every key at most once; ``schema_version`` present and not newer than this code;
  ``n_bits`` (1 to ``MAX_BITS``) and ``min_distance`` (0 to ``n_bits``) both present or both absent,
  ``entries`` a count; integers written in decimal digits, nothing else;
* the rows: as many as ``meta.entries`` records (every issue updates it in its own transaction, so rows
  that were deleted or added outside this code show), none at all if ``n_bits`` is still unset and some
  if it is set (it is set with the first entry); in one scan, every ``id`` an integer and every ``bits``
  a BLOB of exactly ceil(n_bits / 8) bytes with its padding bits 0;
* no user and no fingerprint on two rows (skipped when the UNIQUE indexes are there, as they forbid it;
  a table rebuilt without them is searched with ``GROUP BY``).

Every connection also sets ``PRAGMA trusted_schema=OFF`` (no function with side effects runs from the
file's schema) and SQLite's length limit to ``MAX_VALUE`` (a crafted huge value fails at once instead of
being loaded).

The other columns are checked for each row as it is read (``entry_problem``) and by the full check
(``Registry.check(full=True)``), which adds a scan of them (every ``user`` an allowed name, the others text,
paths at most 4096 characters, SHA-256 and times 64), SQLite's ``PRAGMA integrity_check`` (pages and indexes
against the rows) and the minimum-distance rule: every fingerprint's nearest other one, by an exhaustive
Hamming search of the registry against itself (``hamming_search``, faiss when installed; quadratic, so
minutes at a million entries: see ``bench/bench_registry.py``).
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from torch_utils.ops.hamming import hamming_search, packed_bytes

SCHEMA_VERSION = 1
MAX_BITS = 4096                 # longest fingerprint a registry may declare (the paper uses 128)
SQLITE_HEADER = b"SQLite format 3\x00"
META_KEYS = ("schema_version", "n_bits", "min_distance", "entries")
USER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}")
MAX_LISTED = 10                 # problems of one kind listed by the full check
MAX_VALUE = 1 << 20             # longest string or BLOB SQLite reads or writes for a registry (paths, names: far less)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS fingerprints (
    id            INTEGER PRIMARY KEY,
    user          TEXT NOT NULL UNIQUE,
    bits          BLOB NOT NULL UNIQUE,
    file          TEXT,
    file_sha256   TEXT,
    source        TEXT,
    source_sha256 TEXT,
    issued_at     TEXT NOT NULL
);
"""
COLUMNS = {table: tuple(line.split()[0] for line in body.strip().splitlines())
           for table, body in re.findall(r"CREATE TABLE IF NOT EXISTS (\w+) \((.*?)\n\);", SCHEMA, re.S)}

RESTORE = "nothing was changed; restore the file from a backup (it was damaged, or edited outside this code)"


class RegistryError(ValueError):
    """A registry that cannot be opened or used as asked, or an entry that breaks its rules."""


def damaged(path: Path, what: str) -> RegistryError:
    """The error for a registry file whose content breaks the rules: the file, what is wrong, what to do."""
    return RegistryError(f"{path}: {what}; {RESTORE}")


@dataclass(frozen=True)
class RegistryState:
    """What the cheap checks found: the rules in ``meta`` and the number of entries."""
    schema_version: int
    n_bits: int | None
    min_distance: int | None
    recorded: int | None        # meta.entries (None in a registry written before it was recorded)
    entries: int                # rows in the fingerprints table


@dataclass(frozen=True)
class RegistryReport:
    """The result of ``Registry.check``: the registry's size and rules, and what the full check found."""
    path: Path
    entries: int
    n_bits: int | None
    min_distance: int | None
    full: bool
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        rules = "no entries yet" if self.n_bits is None else (
            f"{self.entries} entries of {self.n_bits} bits, minimum distance {self.min_distance}")
        if not self.full:
            return f"{self.path}: {rules}; cheap checks passed (the full check was not run)"
        return f"{self.path}: {rules}; " + ("full check passed" if self.ok else f"{len(self.problems)} problem(s)")

    def error(self) -> RegistryError:
        """One-line error for a failed full check (the first problem; check-registry lists them all)."""
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        return RegistryError(f"{self.path}: {self.problems[0]}{more}; nothing was changed; restore the file from a "
                             "backup (generate.py check-registry lists every problem)")


# -- opening --------------------------------------------------------------------------------------------

def connect(path: Path, mode: str, timeout: float, *, query_only: bool = False) -> sqlite3.Connection:
    """An SQLite connection to ``path`` (URI ``mode`` ro, rw or rwc), in autocommit mode, hardened against the file."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode={mode}", uri=True, timeout=timeout, isolation_level=None)
    conn.execute("PRAGMA trusted_schema=OFF")  # no function with side effects runs from the file's schema
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE)  # a crafted huge value fails instead of loading
    if query_only:
        conn.execute("PRAGMA query_only=ON")
    return conn


def connect_readonly(path: Path, timeout: float) -> sqlite3.Connection:
    """A connection that changes neither the registry nor its folder (what ``Registry(readonly=True)`` uses).

    A WAL database needs ``-wal`` and ``-shm`` files beside it while anyone reads it; SQLite deletes them
    when the last connection closes, but only if that connection may write (it checkpoints first), so a
    ``mode=ro`` connection that created them leaves them behind. Hence:

    * when none of ``-wal``, ``-shm``, ``-journal`` exists (nobody has the registry open), ``mode=rw``
      (which never creates the file) with ``PRAGMA query_only``: no statement can change the registry, and
      its close removes what its open created, as every last connection's does (if a writer came meanwhile,
      whichever closes last removes them);
    * when one exists (a writer is at work, or one crashed), ``mode=ro``: it uses the files there and
      cannot remove them;
    * when this user may not write the file or its folder, ``mode=ro`` too (SQLite creates side files only
      where it may, and could not remove them anyway).

    ``immutable=1`` (no locks, no ``-shm``) was rejected: it is correct only if nobody writes the file while
    it is open, and an issue may start at any time (its checkpoint rewrites pages under the reader). In
    every case the connection is an ordinary WAL reader: it sees each committed issue, and each read
    transaction is a consistent snapshot.
    """
    real = path.resolve()
    busy = any(Path(f"{real}{suffix}").exists() for suffix in ("-wal", "-shm", "-journal"))
    writable = os.access(real, os.W_OK) and os.access(real.parent, os.W_OK)
    return connect(path, "ro", timeout) if busy or not writable else connect(path, "rw", timeout, query_only=True)


def open_registry(path: Path, *, readonly: bool, timeout: float) -> sqlite3.Connection:
    """A checked connection to the registry at ``path``, or a ``RegistryError`` (with nothing left open or changed).

    Read-only: the file must exist and pass the cheap checks (``connect_readonly``). Otherwise the registry is
    created only in a missing or empty file, or an SQLite database that never held a table (two processes
    may do it at once); any other file must pass the cheap checks before anything is written.
    """
    if readonly and not path.exists() and not path.is_symlink():
        raise RegistryError(f"{path}: no such registry (issue generators with generate.py issue first)")
    content = has_content(path)
    empty = RegistryError(f"{path}: empty, not a registry yet (issue generators with generate.py issue first)")
    if readonly and not content:
        raise empty
    conn = None
    try:
        if readonly:
            conn = connect_readonly(path, timeout)
            with snapshot(conn):
                if is_blank(conn):
                    raise empty
                inspect(conn, path)
        else:
            if not content:
                path.parent.mkdir(parents=True, exist_ok=True)
            conn = connect(path, "rwc", timeout)
            _prepare_for_writing(conn, path, timeout)
        return conn
    except BaseException as e:
        if conn is not None:
            conn.close()
        if isinstance(e, sqlite3.Error):
            raise sql_error(path, e, timeout) from e
        raise


def _prepare_for_writing(conn: sqlite3.Connection, path: Path, timeout: float) -> None:
    with snapshot(conn):
        blank = is_blank(conn)
        if not blank:
            inspect(conn, path)
    if blank:
        _set_wal(conn, timeout)
        conn.execute("BEGIN IMMEDIATE")
        try:
            if is_blank(conn):  # Another process may have created it since.
                for stmt in SCHEMA.split(";"):
                    if stmt.strip():
                        conn.execute(stmt)
                conn.executemany("INSERT INTO meta VALUES (?, ?)",
                                 [("schema_version", str(SCHEMA_VERSION)), ("entries", "0")])
            conn.execute("COMMIT")
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        with snapshot(conn):
            inspect(conn, path)
    elif conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        _set_wal(conn, timeout)
    conn.execute("PRAGMA synchronous=FULL")


def _set_wal(conn: sqlite3.Connection, timeout: float) -> None:
    # Switching a new file to WAL takes an exclusive lock that SQLite's busy timeout does not wait for:
    # two processes creating one registry at once see "database is locked". Retry until ``timeout``.
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextmanager
def snapshot(conn: sqlite3.Connection) -> Iterator[None]:
    """One read transaction: the queries inside see one committed state (nested: the outer one's)."""
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN")
    try:
        yield
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")  # It only read.


def sql_error(path: Path, e: sqlite3.Error, timeout: float) -> RegistryError:
    """One line for an SQLite error: the file, what failed, what to do (its transaction rolled back)."""
    if "locked" in str(e):
        return RegistryError(f"{path}: another process kept the registry locked for over {timeout:g} s ({e}); "
                             "try again when it is done")
    if "readonly" in str(e):
        return RegistryError(f"{path}: cannot write the registry ({e}); nothing was changed; check the permissions "
                             "of the file and its folder")
    return RegistryError(f"{path}: not a readable registry, or SQLite failed on it ({e}); nothing was changed; if "
                         "the file was damaged, restore it from a backup")


# -- the file and its schema -------------------------------------------------------------------------

def has_content(path: Path) -> bool:
    """False for a missing or empty file (a new registry); True for an SQLite file; refuse anything else."""
    if not path.exists() and not path.is_symlink():
        return False
    if not path.is_file():
        raise RegistryError(f"{path}: not a regular file (a folder, a dangling link or a device); pass the "
                            "registry's .sqlite file")
    try:
        with open(path, "rb") as f:
            head = f.read(len(SQLITE_HEADER))
    except OSError as e:
        raise RegistryError(f"{path}: cannot read the registry ({e.strerror}); check its permissions") from e
    if not head:
        return False
    if head != SQLITE_HEADER:
        raise RegistryError(f"{path}: not an SQLite file, so not a readable registry; pass the registry file "
                            "(generate.py issue creates one); nothing was changed")
    return True


def is_blank(conn: sqlite3.Connection) -> bool:
    """An SQLite database that never held a table (empty, or only switched to WAL): safe to create a registry in.

    A database whose tables were dropped is not blank: its schema cookie counts every change."""
    if conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone():
        return False
    return conn.execute("PRAGMA schema_version").fetchone()[0] == 0


def _check_columns(conn: sqlite3.Connection, path: Path, table: str) -> None:
    sql = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()[0]
    if re.match(r"\s*CREATE\s+VIRTUAL", sql or "", re.I):
        raise damaged(path, f"its {table} table is a virtual table")
    info = conn.execute(f"PRAGMA table_xinfo({table})").fetchall()  # cid, name, type, notnull, default, pk, hidden
    names = [row[1] for row in info]
    missing = [c for c in COLUMNS[table] if c not in names]
    extra = [n for n in names if n not in COLUMNS[table]]
    if missing or extra:
        found = ", ".join(names)
        raise damaged(path, f"table {table} has columns ({found}); expected ({', '.join(COLUMNS[table])})")
    generated = [row[1] for row in info if row[6]]
    if generated:
        raise damaged(path, f"column(s) {', '.join(generated)} of table {table} are generated")
    if table == "fingerprints":
        id_row = info[names.index("id")]
        if id_row[2].upper() != "INTEGER" or id_row[5] != 1 or sum(row[5] > 0 for row in info) != 1:
            raise damaged(path, "fingerprints.id is not the table's INTEGER PRIMARY KEY")


def _meta(conn: sqlite3.Connection, path: Path) -> dict[str, object]:
    """The known meta keys (each at most once; values over 40 characters read as None)."""
    rows = conn.execute("SELECT key, CASE WHEN length(CAST(value AS BLOB)) <= 40 THEN value END FROM meta "
                        f"WHERE key IN ({','.join('?' * len(META_KEYS))})", META_KEYS).fetchall()
    meta: dict[str, object] = {}
    for key, value in rows:
        if key in meta:
            raise damaged(path, f"its meta table records {key} twice")
        meta[key] = value
    return meta


def _meta_int(meta: dict, key: str, path: Path, lo: int, hi: int) -> int | None:
    if key not in meta:
        return None
    raw = meta[key]
    text = raw if isinstance(raw, str) else str(raw) if type(raw) is int else None
    if text is None or not re.fullmatch(r"[0-9]{1,18}", text) or not lo <= int(text) <= hi:
        shown = "NULL or over 40 characters" if raw is None else repr(raw)[:42]
        raise damaged(path, f"meta {key} is {shown}, not a whole number from {lo} to {hi}")
    return int(text)


def read_rules(conn: sqlite3.Connection, path: Path) -> tuple[int | None, int | None, int | None]:
    """(n_bits, min_distance, recorded entries) from ``meta``, each checked; None where not recorded."""
    meta = _meta(conn, path)
    n_bits = _meta_int(meta, "n_bits", path, 1, MAX_BITS)
    min_distance = _meta_int(meta, "min_distance", path, 0, n_bits or MAX_BITS)
    if (n_bits is None) != (min_distance is None):
        have, lack = ("n_bits", "min_distance") if n_bits is not None else ("min_distance", "n_bits")
        raise damaged(path, f"its meta table records {have} but not {lack}")
    return n_bits, min_distance, _meta_int(meta, "entries", path, 0, 1 << 62)


# -- the cheap checks ---------------------------------------------------------------------------------

def inspect(conn: sqlite3.Connection, path: Path) -> RegistryState:
    """Run the cheap checks (call inside one read transaction); raise ``RegistryError`` on the first failure."""
    objects = conn.execute("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
                           ).fetchall()
    if not objects:
        raise damaged(path, "it holds no tables (they were dropped)")
    tables = {name for kind, name in objects if kind == "table"}
    if "meta" not in tables:
        raise RegistryError(f"{path}: an SQLite file, but not a fingerprint registry (no meta table); pass the "
                            "registry file; nothing was changed")
    _check_columns(conn, path, "meta")
    version = _meta_int(_meta(conn, path), "schema_version", path, 1, 1 << 62)
    if version is None:
        raise RegistryError(f"{path}: an SQLite file, but not a fingerprint registry (no schema_version); pass "
                            "the registry file; nothing was changed")
    if version > SCHEMA_VERSION:
        raise RegistryError(f"{path}: schema version {version} is newer than this code reads ({SCHEMA_VERSION}); "
                            "update the code; nothing was changed")
    if "fingerprints" not in tables:
        raise damaged(path, "its fingerprints table is missing (its meta table is there)")
    extra = [f"{kind} {name!r}" for kind, name in objects if kind != "index" and not (kind == "table" and
                                                                                    name in COLUMNS)]
    if extra:
        raise damaged(path, f"it holds {', '.join(extra)}, which a registry never has")
    _check_columns(conn, path, "fingerprints")
    n_bits, min_distance, recorded = read_rules(conn, path)
    count = conn.execute("SELECT COUNT(*) FROM fingerprints").fetchone()[0]
    if recorded is not None and count != recorded:
        raise damaged(path, f"it holds {count} entries but recorded {recorded}: entries were deleted or added "
                      "outside this code")
    if n_bits is None and count:
        raise damaged(path, f"it holds {count} entries but its meta table records no n_bits")
    if n_bits is not None and not count:
        raise damaged(path, "its meta table records a fingerprint length, set by the first entry, but no entry "
                      "is left")
    if count:
        problem = row_problem(conn, _bits_rules(n_bits))
        if problem:
            raise damaged(path, f"{problem} (expected a BLOB of {packed_bytes(n_bits)} bytes)")
        _check_unique(conn, path)
    return RegistryState(version, n_bits, min_distance, recorded, count)


def _bits_rules(n_bits: int) -> list[tuple[str, str]]:
    """(SQL condition true for a bad row, what it means) for the id and the fingerprint: checked on every open."""
    nbytes, pad = packed_bytes(n_bits), (-n_bits) % 8
    rules = [("typeof(id) != 'integer'", "its id is not an integer"),
             ("typeof(bits) != 'blob'", "its bits are not a BLOB"),
             (f"length(bits) != {nbytes}", f"its bits are not {nbytes} bytes long")]
    if pad:
        allowed = ",".join(f"'{b:02X}'" for b in range(256) if b & ((1 << pad) - 1) == 0)
        rules.append((f"hex(substr(bits, {nbytes}, 1)) NOT IN ({allowed})", "its padding bits are not 0"))
    return rules


# The other columns (the full check; ``entry_problem`` checks each row read). A 1,000,000-entry scan of
# these costs seconds, which every open would pay.
TEXT_RULES = [
    ("typeof(user) != 'text' OR length(user) NOT BETWEEN 1 AND 128 OR user GLOB '*[^A-Za-z0-9._@+-]*' "
     "OR user GLOB '[^A-Za-z0-9]*'", "its user is not an allowed name"),
    ("typeof(issued_at) != 'text'", "its issued_at is not text"),
    (" OR ".join(f"typeof({c}) NOT IN ('text', 'null')" for c in ("file", "file_sha256", "source", "source_sha256")),
     "its file, source or SHA-256 is not text"),
    (" OR ".join(f"coalesce(length({c}), 0) > {n}" for c, n in (("file", 4096), ("source", 4096), ("file_sha256", 64),
                                                               ("source_sha256", 64), ("issued_at", 64))),
     "its file or source is over 4096 characters, or its SHA-256 or issued_at over 64"),
]


def row_problem(conn: sqlite3.Connection, rules: list[tuple[str, str]]) -> str | None:
    """How many rows break one of ``rules`` and what the first breaks (one scan), or None."""
    where = " OR ".join(f"({cond})" for cond, _ in rules)
    flags = ", ".join(f"coalesce({cond}, 1)" for cond, _ in rules)
    row = conn.execute(f"SELECT COUNT(*) OVER (), CAST(id AS TEXT), {flags} FROM fingerprints WHERE {where} "
                       "LIMIT 1").fetchone()
    if row is None:
        return None
    reasons = "; ".join(what for (_, what), bad in zip(rules, row[2:]) if bad)
    return f"{row[0]} malformed entr{'y' if row[0] == 1 else 'ies'}, first id {row[1][:20]}: {reasons}"


def entry_problem(row: tuple, n_bits: int) -> str | None:
    """What is wrong with a row (id, user, bits, file, file_sha256, source, source_sha256, issued_at) as read."""
    bits, user = row[2], row[1]
    if type(bits) is not bytes or len(bits) != packed_bytes(n_bits):
        return f"entry {row[0]}: its bits are not a BLOB of {packed_bytes(n_bits)} bytes"
    if type(user) is not str or not USER_RE.fullmatch(user) or user in (".", ".."):
        return f"entry {row[0]}: its user is not an allowed name"
    if type(row[7]) is not str or any(v is not None and type(v) is not str for v in row[3:7]):
        return f"entry {row[0]}: its file, source, SHA-256 or issued_at is not text"
    return None


def _check_unique(conn: sqlite3.Connection, path: Path) -> None:
    unique = set()
    for _, name, is_unique, _, partial in conn.execute("PRAGMA index_list(fingerprints)").fetchall():
        if is_unique and not partial:
            quoted = name.replace('"', '""')
            unique.add(tuple(r[2] for r in conn.execute(f'PRAGMA index_info("{quoted}")').fetchall()))
    for column in ("user", "bits"):
        if (column,) in unique:
            continue
        dup = conn.execute(f"SELECT MIN(id), MAX(id), COUNT(*) FROM fingerprints GROUP BY {column} "
                           "HAVING COUNT(*) > 1 LIMIT 1").fetchone()
        if dup:
            what = "user" if column == "user" else "fingerprint"
            raise damaged(path, f"entries {dup[0]} and {dup[1]} hold the same {what} ({dup[2]} rows): the table "
                          "lost its UNIQUE constraint")


# -- the full check -----------------------------------------------------------------------------------

def integrity_problems(conn: sqlite3.Connection) -> list[str]:
    """SQLite's own check of pages and indexes (at most ``MAX_LISTED`` messages), then the rows' other columns."""
    rows = conn.execute(f"PRAGMA integrity_check({MAX_LISTED})").fetchall()
    try:
        problem = row_problem(conn, TEXT_RULES)
    except sqlite3.DataError as e:  # a value over MAX_VALUE
        problem = f"an entry holds a value over {MAX_VALUE} bytes ({e})"
    return [f"SQLite integrity check: {r[0]}" for r in rows if r[0] != "ok"] + ([problem] if problem else [])


def close_pairs(packed: np.ndarray, floor: int) -> tuple[int, np.ndarray]:
    """Rows whose nearest other row is closer than ``floor``: (how many, pairs [P, 3] of (row, row, distance)).

    Each such row is paired with its nearest other row; pairs are listed once, nearest first."""
    if len(packed) < 2:
        return 0, np.zeros((0, 3), np.int64)
    dist, idx = hamming_search(packed, packed, k=2)
    # The nearest row is the row itself (distance 0) unless an identical one came first.
    itself = idx[:, 0] == np.arange(len(packed))
    other = np.where(itself, idx[:, 1], idx[:, 0])
    other_d = np.where(itself, dist[:, 1], dist[:, 0])
    bad = np.flatnonzero(other_d < floor)
    pairs = np.stack([np.minimum(bad, other[bad]), np.maximum(bad, other[bad]), other_d[bad]], axis=1)
    pairs = np.unique(pairs, axis=0)
    return len(bad), pairs[np.argsort(pairs[:, 2], kind="stable")]


def distance_problems(ids: np.ndarray, packed: np.ndarray, floor: int,
                      users_of: Callable[[list[int]], dict[int, str]]) -> list[str]:
    """The full check's lines about fingerprints closer than ``floor``: a count with the nearest pair, then one
    line per further pair (at most ``MAX_LISTED`` pairs); ``users_of(ids)`` names the entries."""
    n_bad, pairs = close_pairs(packed, floor)
    if not n_bad:
        return []
    shown = pairs[:MAX_LISTED]
    users = users_of(ids[shown[:, :2].ravel()].tolist())
    lines = [f"users {users[ids[a]]!r} and {users[ids[b]]!r} (ids {ids[a]}, {ids[b]}) hold fingerprints {d} "
             f"bits apart" for a, b, d in shown.tolist()]
    return [f"{n_bad} fingerprints lie closer than the minimum distance {floor} to another one "
            f"(first: {lines[0]})"] + lines[1:]
