"""The registry of issued fingerprints: who received which generator.

One SQLite file (default ``registry.sqlite``) in WAL mode, so that readers (detection) never block
the writer and two processes may issue at once: every issue runs in one ``BEGIN IMMEDIATE``
transaction (the database's write lock), which reads the registered fingerprints, draws a new one,
writes the generator file and inserts the row; a second process waits for the lock (``timeout``)
and then sees the first one's row. Schema (version 1):

``meta(key TEXT PRIMARY KEY, value TEXT)``
    ``schema_version``; ``n_bits`` (fingerprint length, fixed by the first entry);
    ``min_distance`` (the smallest Hamming distance allowed between two registered fingerprints).
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
"""

from __future__ import annotations

import csv
import datetime as _dt
import os
import re
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dnnlib.util import atomic_path
from torch_utils.ops.hamming import hamming_search, pack_bits, packed_bytes, unpack_bits

SCHEMA_VERSION = 1
DEFAULT_PATH = "registry.sqlite"
CSV_FIELDS = ("user", "bits", "file", "file_sha256", "source", "source_sha256", "issued_at")
USER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")

_SCHEMA = """
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


class RegistryError(ValueError):
    """A registry that cannot be opened or used as asked, or an entry that breaks its rules."""


def default_min_distance(n_bits: int) -> int:
    """A quarter of the bits (32 for 128): see the module's docstring."""
    return max(1, n_bits // 4)


def check_user_name(user: str) -> str:
    if not USER_RE.match(user) or user in (".", ".."):
        raise RegistryError(f"user name {user!r} is not allowed: use letters, digits and . _ @ + - (at most 128 "
                            "characters, not starting with a symbol); it names the generator's file")
    return user


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


class Registry:
    """A registry file; ``Registry(path)`` creates it when missing, ``readonly=True`` never does."""

    def __init__(self, path: str | os.PathLike = DEFAULT_PATH, *, readonly: bool = False, timeout: float = 120.0):
        self.path = Path(path)
        self.readonly = readonly
        if readonly and not self.path.is_file():
            raise RegistryError(f"{self.path}: no such registry (issue generators with generate.py issue first)")
        try:
            if readonly:
                uri = f"{self.path.resolve().as_uri()}?mode=ro"
                self.conn = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.conn = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None)
                self._set_wal(timeout)
                self.conn.execute("PRAGMA synchronous=FULL")
                with self._transaction():
                    for stmt in _SCHEMA.split(";"):
                        if stmt.strip():
                            self.conn.execute(stmt)
                    self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            version = self._meta("schema_version")
        except sqlite3.DatabaseError as e:
            raise RegistryError(f"{self.path}: not a readable registry ({e})") from e
        if version is None:
            raise RegistryError(f"{self.path}: an SQLite file, but not a fingerprint registry (no schema_version)")
        if int(version) > SCHEMA_VERSION:
            raise RegistryError(f"{self.path}: schema version {version} is newer than this code reads "
                                f"({SCHEMA_VERSION})")
        self._cache: tuple[int, np.ndarray, np.ndarray] | None = None

    def _set_wal(self, timeout: float) -> None:
        # Switching a new file to WAL takes an exclusive lock that SQLite's busy timeout does not wait for:
        # two processes creating one registry at once see "database is locked". Retry until ``timeout``.
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    # -- basics -------------------------------------------------------------------------------------

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _meta(self, key: str) -> str | None:
        try:
            row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return None
            raise
        return None if row is None else row[0]

    @property
    def n_bits(self) -> int | None:
        value = self._meta("n_bits")
        return None if value is None else int(value)

    @property
    def min_distance(self) -> int | None:
        value = self._meta("min_distance")
        return None if value is None else int(value)

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
        have_bits, have_dist = self.n_bits, self.min_distance
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

    # -- reading ------------------------------------------------------------------------------------

    def packed(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64 [N], fingerprints uint8 [N, ceil(n/8)]) of every entry, in issue order."""
        version = self.conn.execute("PRAGMA data_version").fetchone()[0], len(self)
        if self._cache is not None and self._cache[0] == version:
            return self._cache[1], self._cache[2]
        rows = self.conn.execute("SELECT id, bits FROM fingerprints ORDER BY id").fetchall()
        nbytes = packed_bytes(self.n_bits or 8)
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        bits = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.uint8).reshape(len(rows), nbytes).copy()
        self._cache = (version, ids, bits)
        return ids, bits

    def entries(self, ids: Iterable[int] | None = None) -> list[Entry]:
        cols = "id, user, bits, file, file_sha256, source, source_sha256, issued_at"
        if ids is None:
            rows = self.conn.execute(f"SELECT {cols} FROM fingerprints ORDER BY id").fetchall()
        else:
            wanted = sorted({int(i) for i in ids})
            rows = []
            for start in range(0, len(wanted), 500):
                part = wanted[start:start + 500]
                rows += self.conn.execute(f"SELECT {cols} FROM fingerprints WHERE id IN ({','.join('?' * len(part))})",
                                          part).fetchall()
        n = self.n_bits or 0
        return [Entry(r[0], r[1], bits_to_str(unpack_bits(np.frombuffer(r[2], np.uint8)[None], n)[0]), *r[3:])
                for r in rows]

    def entry(self, user: str) -> Entry | None:
        row = self.conn.execute("SELECT id FROM fingerprints WHERE user = ?", (user,)).fetchone()
        return None if row is None else self.entries([row[0]])[0]

    def source_digests(self) -> list[tuple[str | None, str | None, int]]:
        """(source_sha256, source, number of entries) of every issuing snapshot recorded, most entries first;
        entries that record none appear as (None, None, count)."""
        return [(r[0], r[1], int(r[2])) for r in self.conn.execute(
            "SELECT source_sha256, MIN(source), COUNT(*) FROM fingerprints GROUP BY source_sha256 "
            "ORDER BY COUNT(*) DESC, source_sha256").fetchall()]

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

    def issue(self, user: str, n_bits: int, write_file: Callable[[np.ndarray], tuple[str, str]], *,
              source: str | None = None, source_sha256: str | None = None, min_distance: int | None = None,
              random_bytes: Callable[[int], bytes] = secrets.token_bytes, max_draws: int = 10_000,
              remove: Callable[[str], None] | None = None) -> Entry:
        """Register a fresh fingerprint for ``user`` and write its generator, atomically together.

        Inside one write transaction: draw fingerprints from ``random_bytes`` until one is at least the
        minimum distance from every registered one, call ``write_file(bits 0/1 [n])`` (which must write
        the file completely, e.g. with ``atomic_path``, and return ``(path, sha256)``), insert the row (with
        the path made absolute) and commit. If anything fails the transaction rolls back and what
        ``write_file`` wrote is removed (by ``remove(path)``; default: unlink the file), so a row never exists
        without its file.
        """
        check_user_name(user)
        written: str | None = None
        try:
            with self._transaction():
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
        except BaseException:
            if written is not None and Path(written).exists():
                (remove or os.remove)(written)
            raise
        return self.entry(user)

    # -- bulk: CSV export / import ------------------------------------------------------------------

    def add_many(self, users: list[str], packed: np.ndarray, *, n_bits: int, min_distance: int | None = None,
                 check_distance: bool = True, rows: list[dict] | None = None) -> int:
        """Insert many fingerprints (packed uint8 [N, ceil(n/8)]) in one transaction: all or none.

        Exact duplicates (users or fingerprints) are always refused. With ``check_distance`` every new
        fingerprint must also keep the minimum distance to the registered ones and to each other (a
        search of the new set against the registry and itself: about 6 s per 10,000 x 1,000,000).
        """
        packed = np.ascontiguousarray(packed, dtype=np.uint8)
        if packed.ndim != 2 or packed.shape[1] != packed_bytes(n_bits) or len(packed) != len(users):
            raise RegistryError(f"{len(users)} users need fingerprints of shape [{len(users)}, {packed_bytes(n_bits)}],"
                                f" got {packed.shape}")
        for user in users:
            check_user_name(user)
        if len(set(users)) != len(users):
            raise RegistryError("the new entries name a user twice")
        now = utc_now()
        rows = rows or [{} for _ in users]
        with self._transaction():
            min_distance = self._set_rules(n_bits, min_distance)
            if check_distance and len(packed):
                _, existing = self.packed()
                floor = max(min_distance, 1)
                if len(existing):
                    dist, idx = hamming_search(packed, existing, k=1)
                    bad = np.flatnonzero(dist[:, 0] < floor)
                    if len(bad):
                        raise RegistryError(f"{len(bad)} new fingerprints lie closer than {floor} to registered ones "
                                            f"(first: user {users[bad[0]]!r}, distance {int(dist[bad[0], 0])}); "
                                            "nothing added")
                if len(packed) > 1:
                    dist, idx = hamming_search(packed, packed, k=2)
                    # The nearest is the row itself (distance 0) unless a duplicate shares it.
                    other = np.where(idx[:, 0] == np.arange(len(packed)), dist[:, 1], dist[:, 0])
                    bad = np.flatnonzero(other < floor)
                    if len(bad):
                        raise RegistryError(f"{len(bad)} new fingerprints lie closer than {floor} to each other "
                                            f"(first: user {users[bad[0]]!r}, distance {int(other[bad[0]])}); "
                                            "nothing added")
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
        return len(users)

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
