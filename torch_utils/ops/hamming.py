"""Nearest fingerprints by Hamming distance over packed bits.

Fingerprints are stored packed, eight bits a byte, most significant bit first (``numpy.packbits``);
an ``n``-bit fingerprint takes ``ceil(n / 8)`` bytes and the padding bits are zero in every row, so
they never add to a distance.

``hamming_search(queries, database, k)`` returns, for every query, the ``k`` smallest distances and
the rows they belong to. Three implementations give the same distances:
  * ``faiss``: faiss-cpu's ``IndexBinaryFlat`` (exhaustive, SIMD popcount, multi-threaded); the
    default when faiss is installed. Among rows at equal distance its choice of row is its own.
  * ``numpy``: blocked XOR + ``numpy.bitwise_count``; ties go to the lowest row.
  * ``reference``: ``hamming_search_ref``, unpacked bits compared one by one in PyTorch (the oracle of
    the tests; quadratic memory, for small inputs).
A search is discrete: there is no gradient to test.
"""

from __future__ import annotations

import os

import numpy as np
import torch

# OpenMP threads spin while they wait by default. With another busy process on the same cores (a
# training run) a 10,000 x 20,000 faiss search then took 7 s instead of 0.2 s on 2 cores; passive
# waiting fixes it. The setting is read once, by the first OpenMP runtime the process loads (torch's,
# whose runtime then also runs faiss's threads), so the command-line tools that search
# (generate.py, detect_attribute.py) set it before importing torch; this line covers a process that
# imports this module first. A value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
try:  # faiss-cpu is a dependency (requirements.txt); keep the module importable without it.
    import faiss
except ImportError:  # pragma: no cover - exercised only where faiss is absent
    faiss = None

IMPLEMENTATIONS = ("auto", "faiss", "numpy", "reference")


def packed_bytes(n_bits: int) -> int:
    return (n_bits + 7) // 8


def pack_bits(bits: np.ndarray | torch.Tensor) -> np.ndarray:
    """0/1 bits [N, n] (any numeric dtype; > 0.5 counts as 1) -> uint8 [N, ceil(n/8)]."""
    arr = bits.detach().cpu().numpy() if isinstance(bits, torch.Tensor) else np.asarray(bits)
    if arr.ndim != 2:
        raise ValueError(f"bits must be [N, n], got shape {arr.shape}")
    return np.packbits(arr > 0.5, axis=1)


def unpack_bits(packed: np.ndarray, n_bits: int) -> np.ndarray:
    """uint8 [N, ceil(n/8)] -> uint8 0/1 [N, n]."""
    packed = np.asarray(packed, dtype=np.uint8)
    if packed.ndim != 2 or packed.shape[1] != packed_bytes(n_bits):
        raise ValueError(f"packed fingerprints of {n_bits} bits must be [N, {packed_bytes(n_bits)}] uint8, "
                         f"got {packed.shape}")
    return np.unpackbits(packed, axis=1, count=n_bits)


def _check(queries: np.ndarray, database: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    queries = np.ascontiguousarray(queries, dtype=np.uint8)
    database = np.ascontiguousarray(database, dtype=np.uint8)
    if queries.ndim != 2 or database.ndim != 2 or queries.shape[1] != database.shape[1]:
        raise ValueError(f"queries {queries.shape} and database {database.shape} must be [*, bytes] alike")
    if len(database) == 0:
        raise ValueError("the database is empty: nothing to search")
    if not 1 <= k <= len(database):
        raise ValueError(f"k={k} must be between 1 and the database size {len(database)}")
    return queries, database


def hamming_search_ref(queries: np.ndarray, database: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The oracle: unpack, compare every bit in PyTorch, sort by (distance, row)."""
    queries, database = _check(queries, database, k)
    q = torch.from_numpy(np.unpackbits(queries, axis=1)).bool()
    d = torch.from_numpy(np.unpackbits(database, axis=1)).bool()
    dist = (q[:, None, :] != d[None, :, :]).sum(dim=2)                       # [Q, N]
    # Stable sort on distance keeps the lower row first among equals.
    order = torch.sort(dist, dim=1, stable=True).indices[:, :k]
    return torch.gather(dist, 1, order).numpy().astype(np.int32), order.numpy().astype(np.int64)


def _search_numpy(queries: np.ndarray, database: np.ndarray, k: int,
                  block: int = 1 << 16) -> tuple[np.ndarray, np.ndarray]:
    nbytes = queries.shape[1]
    pad = (-nbytes) % 8
    words = lambda a: np.pad(a, ((0, 0), (0, pad))).view(np.uint64)  # noqa: E731
    qw, dw = words(queries), words(database)
    best_d = np.full((len(qw), k), np.iinfo(np.int32).max, dtype=np.int32)
    best_i = np.zeros((len(qw), k), dtype=np.int64)
    for start in range(0, len(dw), block):
        chunk = dw[start:start + block]
        for qs in range(0, len(qw), 256):
            qc = qw[qs:qs + 256]
            dist = np.zeros((len(qc), len(chunk)), dtype=np.int32)
            for w in range(qw.shape[1]):
                dist += np.bitwise_count(qc[:, None, w] ^ chunk[None, :, w])
            idx = np.arange(start, start + len(chunk), dtype=np.int64)
            cand_d = np.concatenate([best_d[qs:qs + 256], dist], axis=1)
            cand_i = np.concatenate([best_i[qs:qs + 256], np.broadcast_to(idx, dist.shape)], axis=1)
            order = np.lexsort((cand_i, cand_d), axis=1)[:, :k]
            best_d[qs:qs + 256] = np.take_along_axis(cand_d, order, axis=1)
            best_i[qs:qs + 256] = np.take_along_axis(cand_i, order, axis=1)
    return best_d, best_i


def _search_faiss(queries: np.ndarray, database: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    nbytes = queries.shape[1]
    index = faiss.IndexBinaryFlat(nbytes * 8)
    index.add(database)
    dist, idx = index.search(queries, k)
    return dist.astype(np.int32), idx.astype(np.int64)


def hamming_search(queries: np.ndarray, database: np.ndarray, k: int = 1,
                   impl: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest database rows of every query: (distances int32 [Q, k], rows int64 [Q, k]), nearest first."""
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"unknown implementation {impl!r}; choose from {IMPLEMENTATIONS}")
    queries, database = _check(queries, database, k)
    if len(queries) == 0:
        return np.zeros((0, k), np.int32), np.zeros((0, k), np.int64)
    if impl == "auto":
        impl = "faiss" if faiss is not None else "numpy"
    if impl == "faiss":
        if faiss is None:
            raise RuntimeError("faiss is not installed (pip install faiss-cpu); use impl='numpy'")
        return _search_faiss(queries, database, k)
    if impl == "numpy":
        return _search_numpy(queries, database, k)
    return hamming_search_ref(queries, database, k)
