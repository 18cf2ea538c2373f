"""The registry of issued fingerprints: who received which generator.

One SQLite file (default ``registry.sqlite``) in WAL mode, so that readers (detection) never block
the writer and two processes may issue at once: every issue runs in one ``BEGIN IMMEDIATE``
transaction (the database's write lock), which reads the registered fingerprints, draws a new one,
writes the generator file and inserts the row; a second process waits for the lock (``timeout``)
and then sees the first one's row. Schema (version 1):

``meta(key TEXT PRIMARY KEY, value TEXT)``
    ``schema_version``; ``n_bits`` (fingerprint length, fixed by the first entry);
    ``min_distance`` (the smallest Hamming distance allowed between two registered fingerprints);
    ``entries`` (how many entries there are, rewritten by every issue and import in its own transaction,
    so that lost rows show; a registry written before it was recorded gets it on its next write).
``fingerprints``
    ``id INTEGER PRIMARY KEY``  issue order;
    ``user TEXT UNIQUE NOT NULL``  who holds the generator;
    ``bits BLOB UNIQUE NOT NULL``  the fingerprint, packed most significant bit first (``numpy.packbits``);
    ``file TEXT``, ``file_sha256 TEXT``  the baked generator file (absolute when issued) and the SHA-256 of its bytes;
    ``source TEXT``, ``source_sha256 TEXT``  the snapshot it was baked from (detection checks its decoder
    against these SHA-256 values: ``records_source``);
    ``issued_at TEXT NOT NULL``  UTC time, ISO 8601.

Fingerprints come from the operating system's cryptographic generator (``secrets``): nobody can
predict another user's fingerprint from their own or from the issue order. The default minimum
distance is a quarter of the bits (32 of 128). Random 128-bit fingerprints are 64 bits apart on
average (standard deviation 5.7), so the rule almost never rejects a draw (P[distance < 32] = 5e-9 a
pair, 0.5% of draws against 1,000,000 entries), and it guarantees that an image from user A whose
decoded fingerprint has at most 15 wrong bits is still strictly nearer A than anyone else
(triangle inequality: 32 - 15 > 15), so no plausible decoding error makes one user look like another.

Opening. ``Registry(path)`` creates a registry only in a missing file, an empty one, or an SQLite
database that never held a table. Any other file must pass the cheap checks of
``attribution/registry_check.py`` (schema, meta values, every row's types and lengths, no duplicates, the
entry count), or it is refused, unchanged, with a ``RegistryError``; ``check(full=True)`` adds SQLite's
integrity check and the minimum-distance rule over all pairs.

Read-only opening (``readonly=True``: detection, metrics) leaves the folder exactly as it found it,
even while another process issues: ``connect_readonly`` in ``attribution/registry_check.py`` says how.
"""

from __future__ import annotations

import csv
import datetime as _dt
import functools
import os
import secrets
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attribution.registry_check import (  # noqa: F401 - RegistryError and RegistryReport are part of this API
    MAX_BITS,
    SCHEMA,
    USER_RE,
    RegistryError,
    RegistryReport,
    close_pairs,
    damaged,
    distance_problems,
    entry_problem,
    inspect,
    integrity_problems,
    open_registry,
    read_rules,
    snapshot,
    sql_error,
)
from dnnlib.util import atomic_path
from torch_utils.ops.hamming import hamming_search, pack_bits, packed_bytes, unpack_bits

DEFAULT_PATH = "registry.sqlite"
CSV_FIELDS = ("user", "bits", "file", "file_sha256", "source", "source_sha256", "issued_at")
MAX_ISSUE = 10_000      # most generators one issue call may make (each is a baked file; check before starting)
_SCHEMA = SCHEMA


def default_min_distance(n_bits: int) -> int:
    """A quarter of the bits (32 for 128): see the module's docstring."""
    return max(1, n_bits // 4)


def check_user_name(user: str) -> str:
    if not USER_RE.fullmatch(user) or user in (".", ".."):
        raise RegistryError(f"user name {user!r} is not allowed: use letters, digits and . _ @ + - (at most 128 "
                            "characters, not starting with a symbol); it names the generator's file")
    return user


def default_user_name(k: int) -> str:
    """The k-th default user name: user000001, ..., user999999, user1000000, ..."""
    return f"user{k:06d}"


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def bits_to_str(bits: np.ndarray) -> str:
    return "".join("1" if b else "0" for b in np.asarray(bits).reshape(-1))


def str_to_bits(text: str, n_bits: int | None = None) -> np.ndarray:
    text = text.strip()
    if not text or set(text) - {"0", "1"} or (n_bits is not None and len(text) != n_bits):
        want = f"{n_bits} " if n_bits is not None else ""
        raise RegistryError(f"a fingerprint must be {want}characters of 0 and 1, got {text[:40]!r}"
                            f"{'...' if len(text) > 40 else ''} ({len(text)} characters)")
    return np.frombuffer(text.encode(), dtype=np.uint8) - ord("0")


@dataclass(frozen=True)
class Entry:
    id: int
    user: str
    bits: str
    file: str | None
    file_sha256: str | None
    source: str | None
    source_sha256: str | None
    issued_at: str


def _sqlite_errors(method):
    """Turn an SQLite error inside a registry method into a one-line ``RegistryError`` naming the file."""
    @functools.wraps(method)
    def wrapper(self: Registry, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as e:
            raise self._sql_error(e) from e
    return wrapper


class Registry:
    """A registry file; ``Registry(path)`` creates it when missing or empty, ``readonly=True`` never does."""

    def __init__(self, path: str | os.PathLike = DEFAULT_PATH, *, readonly: bool = False, timeout: float = 120.0):
        self.path = Path(path)
        self.readonly = readonly
        self.timeout = timeout
        self._cache: tuple[tuple, np.ndarray, np.ndarray] | None = None
        self.conn = open_registry(self.path, readonly=readonly, timeout=timeout)

    def _sql_error(self, e: sqlite3.Error) -> RegistryError:
        return sql_error(self.path, e, self.timeout)

    # -- basics -------------------------------------------------------------------------------------

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _snapshot(self):
        """One read transaction: the queries inside see one committed state (nested: the outer one's)."""
        return snapshot(self.conn)

    @_sqlite_errors
    def _rules(self) -> tuple[int | None, int | None, int | None]:
        return read_rules(self.conn, self.path)

    @property
    def n_bits(self) -> int | None:
        return self._rules()[0]

    @property
    def min_distance(self) -> int | None:
        return self._rules()[1]

    @_sqlite_errors
    def __len__(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM fingerprints").fetchone()[0]

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction (``BEGIN IMMEDIATE`` takes the write lock at once)."""
        if self.readonly:
            raise RegistryError(f"{self.path}: opened read-only")
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def _set_rules(self, n_bits: int, min_distance: int | None) -> int:
        """Fix the registry's length and minimum distance on first use; check them afterwards (inside a transaction)."""
        if not 1 <= n_bits <= MAX_BITS:
            raise RegistryError(f"fingerprints of {n_bits} bits: a registry holds 1 to {MAX_BITS} bits")
        have_bits, have_dist, _ = self._rules()
        if have_bits is None:
            min_distance = default_min_distance(n_bits) if min_distance is None else int(min_distance)
            if not 0 <= min_distance <= n_bits:
                raise RegistryError(f"minimum distance {min_distance} must be between 0 and {n_bits}")
            self.conn.executemany("INSERT INTO meta VALUES (?, ?)",
                                  [("n_bits", str(n_bits)), ("min_distance", str(min_distance))])
            return min_distance
        if have_bits != n_bits:
            raise RegistryError(f"{self.path} holds {have_bits}-bit fingerprints; this network uses {n_bits} bits "
                                "(one registry per fingerprint length: pass another --registry)")
        if min_distance is not None and int(min_distance) != have_dist:
            raise RegistryError(f"{self.path} was created with minimum distance {have_dist}; "
                                f"got {min_distance} (leave the option out to use the registry's)")
        return have_dist

    def _checked_count(self) -> int:
        """The number of entries, which must be the one recorded in meta (inside a write transaction)."""
        recorded = self._rules()[2]
        count = len(self)
        if recorded is not None and count != recorded:
            raise damaged(self.path, f"it holds {count} entries but recorded {recorded}: entries were deleted or "
                          "added outside this code")
        return count

    def _record_count(self, count: int) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('entries', ?)", (str(count),))

    # -- checking -----------------------------------------------------------------------------------

    @_sqlite_errors
    def check(self, full: bool = True) -> RegistryReport:
        """Check the registry; returns a report (``.ok``, ``.problems``, ``.summary()``, ``.error()``).

        The cheap checks of every open run again and raise ``RegistryError`` as an open would. ``full`` adds
        SQLite's ``PRAGMA integrity_check``, a scan of the text columns, and the minimum-distance rule: every
        fingerprint's nearest other one must be at least ``min_distance`` (at least 1) away. What breaks
        these is listed in the report (``attribution/registry_check.py`` describes every check).
        """
        with self._snapshot():
            state = inspect(self.conn, self.path)
            problems = []
            if full:
                problems += integrity_problems(self.conn)
                if state.entries > 1:
                    ids, packed = self.packed()
                    problems += distance_problems(ids, packed, max(state.min_distance, 1), self._users)
        return RegistryReport(self.path, state.entries, state.n_bits, state.min_distance, full, tuple(problems))

    def _users(self, ids: list[int]) -> dict[int, str]:
        """Entry id -> user as stored (for messages: not checked, at most 128 characters)."""
        return dict(self.conn.execute(f"SELECT id, substr(CAST(user AS TEXT), 1, 128) FROM fingerprints WHERE id IN "
                                      f"({','.join('?' * len(ids))})", ids).fetchall())

    # -- reading ------------------------------------------------------------------------------------

    @_sqlite_errors
    def packed(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64 [N], fingerprints uint8 [N, ceil(n/8)]) of every entry, in issue order."""
        version = self.conn.execute("PRAGMA data_version").fetchone()[0], len(self)
        if self._cache is not None and self._cache[0] == version:
            return self._cache[1], self._cache[2]
        with self._snapshot():
            n_bits = self.n_bits
            rows = self.conn.execute("SELECT id, bits FROM fingerprints ORDER BY id").fetchall()
        nbytes = packed_bytes(n_bits or 8)
        if any(type(r[1]) is not bytes or len(r[1]) != nbytes for r in rows) or (rows and n_bits is None):
            raise damaged(self.path, f"an entry's bits are not a BLOB of {nbytes} bytes (changed since it was opened)")
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        bits = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.uint8).reshape(len(rows), nbytes).copy()
        pad = (-(n_bits or 8)) % 8
        if pad and len(bits) and (bits[:, -1] & ((1 << pad) - 1)).any():
            raise damaged(self.path, "an entry's padding bits are not 0 (changed since it was opened)")
        self._cache = (version, ids, bits)
        return ids, bits

    @_sqlite_errors
    def entries(self, ids: Iterable[int] | None = None) -> list[Entry]:
        cols = "id, user, bits, file, file_sha256, source, source_sha256, issued_at"
        with self._snapshot():
            n = self.n_bits or 0
            if ids is None:
                rows = self.conn.execute(f"SELECT {cols} FROM fingerprints ORDER BY id").fetchall()
            else:
                wanted = sorted({int(i) for i in ids})
                rows = []
                for start in range(0, len(wanted), 500):
                    part = wanted[start:start + 500]
                    rows += self.conn.execute(f"SELECT {cols} FROM fingerprints WHERE id IN "
                                              f"({','.join('?' * len(part))})", part).fetchall()
        problem = next(filter(None, (entry_problem(r, n) for r in rows)), None)
        if problem:
            raise damaged(self.path, problem)
        return [Entry(r[0], r[1], bits_to_str(unpack_bits(np.frombuffer(r[2], np.uint8)[None], n)[0]), *r[3:])
                for r in rows]

    @_sqlite_errors
    def entry(self, user: str) -> Entry | None:
        row = self.conn.execute("SELECT id FROM fingerprints WHERE user = ?", (user,)).fetchone()
        return None if row is None else self.entries([row[0]])[0]

    @_sqlite_errors
    def next_user_names(self, count: int, *, start: int | None = None) -> list[str]:
        """The next ``count`` default names nobody holds: ``default_user_name(k)`` for k = ``start``,
        ``start + 1``, ... (default: the number of entries + 1), skipping taken ones.

        Names of one length sort like their numbers, so each window [k, k + still needed) is one range query
        on the user index: a query or two however large the registry. ``count`` is at most ``MAX_ISSUE``.
        """
        if not 1 <= count <= MAX_ISSUE:
            raise RegistryError(f"cannot name {count} new users at once: from 1 to {MAX_ISSUE} per call (issue in "
                                "several calls)")
        names: list[str] = []
        with self._snapshot():
            k = len(self) + 1 if start is None else int(start)
            while len(names) < count:
                width = max(6, len(str(k)))
                end = min(k + count - len(names), 10 ** width)  # every name in [k, end) has the same length
                lo, hi = default_user_name(k), default_user_name(end - 1)
                taken = {r[0] for r in self.conn.execute(
                    "SELECT user FROM fingerprints WHERE user BETWEEN ? AND ? AND length(user) = ?",
                    (lo, hi, len(lo))).fetchall()}
                names += [name for name in map(default_user_name, range(k, end)) if name not in taken]
                k = end
        return names

    @_sqlite_errors
    def source_digests(self) -> list[tuple[str | None, str | None, int]]:
        """(source_sha256, source, number of entries) of every issuing snapshot recorded, most entries first;
        entries that record none appear as (None, None, count)."""
        return [(r[0], r[1], int(r[2])) for r in self.conn.execute(
            "SELECT source_sha256, MIN(source), COUNT(*) FROM fingerprints GROUP BY source_sha256 "
            "ORDER BY COUNT(*) DESC, source_sha256").fetchall()]

    @_sqlite_errors
    def records_source(self, sha256: str) -> bool:
        """Whether any entry was issued from the snapshot (or autoencoder) file with this SHA-256."""
        return self.conn.execute("SELECT 1 FROM fingerprints WHERE source_sha256 = ? LIMIT 1",
                                 (sha256,)).fetchone() is not None

    def nearest(self, bits: np.ndarray, k: int = 2) -> tuple[np.ndarray, np.ndarray]:
        """For decoded 0/1 bits [Q, n]: Hamming distances [Q, k'] and entry ids [Q, k'] of the nearest
        registered fingerprints, k' = min(k, size)."""
        ids, packed = self.packed()
        if len(ids) == 0:
            raise RegistryError(f"{self.path}: the registry is empty; nothing to attribute to")
        if bits.shape[1] != self.n_bits:
            raise RegistryError(f"decoded fingerprints have {bits.shape[1]} bits; {self.path} holds "
                                f"{self.n_bits}-bit ones")
        dist, rows = hamming_search(pack_bits(bits), packed, k=min(k, len(ids)))
        return dist, ids[rows]

    # -- issuing ------------------------------------------------------------------------------------

    def _distance_ok(self, candidate: np.ndarray, packed: np.ndarray, min_distance: int) -> bool:
        if len(packed) == 0:
            return True
        dist, _ = hamming_search(candidate[None], packed, k=1)
        return int(dist[0, 0]) >= max(min_distance, 1)

    @_sqlite_errors
    def issue(self, user: str, n_bits: int, write_file: Callable[[np.ndarray], tuple[str, str]], *,
              source: str | None = None, source_sha256: str | None = None, min_distance: int | None = None,
              random_bytes: Callable[[int], bytes] = secrets.token_bytes, max_draws: int = 10_000,
              remove: Callable[[str], None] | None = None) -> Entry:
        """Register a fresh fingerprint for ``user`` and write its generator, atomically together.

        Inside one write transaction: draw fingerprints from ``random_bytes`` until one is at least the
        minimum distance from every registered one, call ``write_file(bits 0/1 [n])`` (which must write
        the file completely, e.g. with ``atomic_path``, and return ``(path, sha256)``), insert the row (with
        the path made absolute), update ``meta.entries`` and commit. If anything fails the transaction rolls
        back and what ``write_file`` wrote is removed (by ``remove(path)``; default: unlink the file), so a
        row never exists without its file.
        """
        check_user_name(user)
        written: str | None = None
        try:
            with self._transaction():
                count = self._checked_count()
                min_distance = self._set_rules(n_bits, min_distance)
                if self.conn.execute("SELECT 1 FROM fingerprints WHERE user = ?", (user,)).fetchone():
                    raise RegistryError(f"user {user!r} already holds a generator in {self.path}")
                _, packed = self.packed()
                nbytes, pad = packed_bytes(n_bits), (-n_bits) % 8
                for _ in range(max_draws):
                    candidate = np.frombuffer(random_bytes(nbytes), dtype=np.uint8).copy()
                    candidate[-1] &= (0xFF << pad) & 0xFF  # zero padding bits
                    if self._distance_ok(candidate, packed, min_distance):
                        break
                else:
                    raise RegistryError(f"no fingerprint at distance >= {min_distance} from all {len(packed)} "
                                        f"registered ones in {max_draws} draws: the {n_bits}-bit space is full "
                                        "at this distance")
                bits = unpack_bits(candidate[None], n_bits)[0]
                written, sha = write_file(bits)
                self.conn.execute("INSERT INTO fingerprints (user, bits, file, file_sha256, source, source_sha256, "
                                  "issued_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                                  (user, candidate.tobytes(), str(Path(written).resolve()), sha, source,
                                   source_sha256, utc_now()))
                self._record_count(count + 1)
        except BaseException:
            if written is not None and Path(written).exists():
                (remove or os.remove)(written)
            raise
        return self.entry(user)

    # -- bulk: CSV export / import ------------------------------------------------------------------

    @_sqlite_errors
    def add_many(self, users: list[str], packed: np.ndarray, *, n_bits: int, min_distance: int | None = None,
                 check_distance: bool = True, rows: list[dict] | None = None) -> int:
        """Insert many fingerprints (packed uint8 [N, ceil(n/8)]) in one transaction: all or none.

        Exact duplicates (users or fingerprints) are always refused. With ``check_distance`` every new
        fingerprint must also keep the minimum distance to the registered ones and to each other (a
        search of the new set against the registry and itself: about 6 s per 10,000 x 1,000,000).
        Nothing at all (not even the rules) is written for an empty list.
        """
        packed = np.ascontiguousarray(packed, dtype=np.uint8)
        if packed.ndim != 2 or packed.shape[1] != packed_bytes(n_bits) or len(packed) != len(users):
            raise RegistryError(f"{len(users)} users need fingerprints of shape [{len(users)}, {packed_bytes(n_bits)}],"
                                f" got {packed.shape}")
        if not users:
            return 0
        for user in users:
            check_user_name(user)
        if len(set(users)) != len(users):
            raise RegistryError("the new entries name a user twice")
        now = utc_now()
        rows = rows or [{} for _ in users]
        with self._transaction():
            count = self._checked_count()
            min_distance = self._set_rules(n_bits, min_distance)
            if check_distance:
                self._check_new_distances(users, packed, max(min_distance, 1))
            try:
                self.conn.executemany(
                    "INSERT INTO fingerprints (user, bits, file, file_sha256, source, source_sha256, issued_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    ((u, p.tobytes(), r.get("file") or None, r.get("file_sha256") or None, r.get("source") or None,
                      r.get("source_sha256") or None, r.get("issued_at") or now)
                     for u, p, r in zip(users, packed, rows)))
            except sqlite3.IntegrityError as e:
                raise RegistryError(f"{self.path}: refused, nothing added: a user or fingerprint is already "
                                    f"registered ({e})") from e
            self._record_count(count + len(users))
        return len(users)

    def _check_new_distances(self, users: list[str], packed: np.ndarray, floor: int) -> None:
        """Refuse new fingerprints closer than ``floor`` to a registered one or to each other."""
        _, existing = self.packed()
        if len(existing):
            dist, _ = hamming_search(packed, existing, k=1)
            bad = np.flatnonzero(dist[:, 0] < floor)
            if len(bad):
                raise RegistryError(f"{len(bad)} new fingerprints lie closer than {floor} to registered ones "
                                    f"(first: user {users[bad[0]]!r}, distance {int(dist[bad[0], 0])}); "
                                    "nothing added")
        n_bad, pairs = close_pairs(packed, floor)
        if n_bad:
            a, _, d = pairs[0]
            raise RegistryError(f"{n_bad} new fingerprints lie closer than {floor} to each other "
                                f"(first: user {users[a]!r}, distance {d}); nothing added")

    def export_csv(self, dest: str | os.PathLike) -> int:
        """Write every entry as CSV (``CSV_FIELDS``; bits as 0/1 text) atomically; returns the count."""
        entries = self.entries()
        with atomic_path(dest) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(CSV_FIELDS)
            for e in entries:
                writer.writerow([e.user, e.bits, e.file or "", e.file_sha256 or "", e.source or "",
                                 e.source_sha256 or "", e.issued_at])
        return len(entries)

    def import_csv(self, source: str | os.PathLike, *, min_distance: int | None = None,
                   check_distance: bool = True) -> int:
        """Add the entries of a CSV (at least ``user`` and ``bits`` columns) in one transaction: all or none."""
        source = Path(source)
        try:
            with open(source, newline="") as f:
                reader = csv.DictReader(f)
                fields = reader.fieldnames or []
                missing = {"user", "bits"} - set(fields)
                if missing:
                    raise RegistryError(f"{source}: missing column(s) {sorted(missing)}; found {fields}")
                rows = list(reader)
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise RegistryError(f"{source}: cannot read as CSV ({e})") from e
        if not rows:
            raise RegistryError(f"{source}: no entries")
        n_bits = self.n_bits or len((rows[0]["bits"] or "").strip())
        if not 1 <= n_bits <= MAX_BITS:
            raise RegistryError(f"{source}, line 2: a fingerprint of {n_bits} bits; a registry holds 1 to {MAX_BITS}")
        bits = np.empty((len(rows), n_bits), dtype=np.uint8)
        for i, row in enumerate(rows):
            try:
                bits[i] = str_to_bits(row["bits"] or "", n_bits)
                check_user_name((row["user"] or "").strip())
            except RegistryError as e:
                raise RegistryError(f"{source}, line {i + 2}: {e}") from None
        users = [row["user"].strip() for row in rows]
        return self.add_many(users, pack_bits(bits), n_bits=n_bits, min_distance=min_distance,
                             check_distance=check_distance, rows=rows)
