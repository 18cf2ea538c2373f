"""Benchmark: the registry at scale (targets on 2 CPU cores: load 1,000,000 fingerprints <= 60 s;
attribute 10,000 decoded fingerprints against 1,000,000 registered <= 8 s).

Usage: python bench/bench_registry.py [--registered 1000000] [--queries 10000] [--bits 128] [--numpy]
       [--matmul] [--threads 2] [--check-entries 100000] [--out bench.json]

Measures, on a fresh registry in a temporary folder:
  * load (API): ``Registry.add_many`` of N random fingerprints in one transaction (exact-duplicate checks by
    the UNIQUE indexes; the pairwise distance check is off, as it is for ``import-registry --no-check-distance``);
  * load (CSV): ``Registry.import_csv`` of the same N as a CSV (parsing included), into another fresh registry;
  * read back: ``Registry.packed()`` (all fingerprints from SQLite into one array, what detection does once);
  * search: the nearest and second-nearest registered fingerprint of every query (queries are registered
    fingerprints with 10% of their bits flipped, so each has a true answer), with faiss ``IndexBinaryFlat``
    (the default) and, with ``--numpy``, the blocked numpy fallback; checks that every query finds its source;
  * with ``--matmul``, the same search as one bf16 matrix product per chunk in PyTorch (the alternative to faiss);
  * a distance check of 10,000 new fingerprints against the registry (what ``issue`` does per draw, batched);
  * open (checks): a read-only ``Registry(...)`` of the N entries, i.e. the cheap integrity checks every open
    runs (schema, meta, one scan of the rows' types and lengths, the entry count);
  * ``next_user_names`` of ``MAX_ISSUE`` default names (what ``issue --count`` asks for);
  * the full check, ``Registry.check(full=True)`` (SQLite's integrity check, then every fingerprint's nearest
    other one), on a registry of ``--check-entries`` (quadratic: 10x the entries is 100x the time), with the
    share of SQLite's integrity check and the scan of the text columns timed alone.
"""

from __future__ import annotations

import os

# Before torch and faiss load OpenMP: waiting threads yield the cores (torch_utils/ops/hamming.py says why).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from attribution.registry import MAX_ISSUE, Registry  # noqa: E402
from attribution.registry_check import integrity_problems  # noqa: E402
from torch_utils.ops import hamming  # noqa: E402
from torch_utils.ops.hamming import hamming_search, pack_bits, unpack_bits  # noqa: E402


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def matmul_search(q_bits: np.ndarray, db_bits: np.ndarray, threads: int, chunk: int = 100_000):
    """Nearest row by Hamming distance, (n - x.y) / 2 on +-1 codes, from bf16 products (exact for n <= 256)."""
    import torch

    torch.set_num_threads(threads)
    q = torch.from_numpy(q_bits).to(torch.bfloat16) * 2 - 1
    best = torch.full((len(q),), -1e9)
    arg = torch.zeros(len(q), dtype=torch.long)
    for start in range(0, len(db_bits), chunk):
        d = torch.from_numpy(db_bits[start:start + chunk]).to(torch.bfloat16) * 2 - 1
        score, idx = (q @ d.T).float().max(dim=1)
        better = score > best
        best[better], arg[better] = score[better], idx[better] + start
    return best.numpy(), arg.numpy()


@click.command()
@click.option("--registered", default=1_000_000, show_default=True, type=click.IntRange(min=2))
@click.option("--queries", default=10_000, show_default=True, type=click.IntRange(min=1))
@click.option("--bits", default=128, show_default=True, type=click.IntRange(min=8))
@click.option("--numpy", "with_numpy", is_flag=True, help="Also time the numpy fallback (about 10x slower).")
@click.option("--matmul", "with_matmul", is_flag=True,
              help="Also time a PyTorch alternative: distances from one bf16 matrix product of +-1 codes.")
@click.option("--threads", default=2, show_default=True, type=click.IntRange(min=1))
@click.option("--check-entries", default=100_000, show_default=True, type=click.IntRange(min=0),
              help="Entries of the registry the full check runs on (0: skip it).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the figures as JSON.")
def main(registered: int, queries: int, bits: int, with_numpy: bool, with_matmul: bool, threads: int,
         check_entries: int, out: Path | None) -> None:
    if hamming.faiss is not None:
        hamming.faiss.omp_set_num_threads(threads)
    rng = np.random.default_rng(0)
    packed = np.unique(pack_bits(rng.integers(0, 2, (registered, bits), dtype=np.uint8)), axis=0)
    rng.shuffle(packed)
    users = [f"u{i:07d}" for i in range(len(packed))]
    res: dict = {"registered": len(packed), "queries": queries, "bits": bits, "threads": threads,
                 "faiss": hamming.faiss is not None}
    with tempfile.TemporaryDirectory() as tmp:
        reg = Registry(Path(tmp) / "r.sqlite")
        _, res["load_api_s"] = timed(lambda: reg.add_many(users, packed, n_bits=bits, check_distance=False))
        csv_path = Path(tmp) / "r.csv"
        strings = ["".join("1" if b else "0" for b in row) for row in unpack_bits(packed, bits).astype(bool)]
        with open(csv_path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["user", "bits"])
            w.writerows(zip(users, strings))
        reg2 = Registry(Path(tmp) / "r2.sqlite")
        _, res["load_csv_s"] = timed(lambda: reg2.import_csv(csv_path, check_distance=False))
        reg2.close()
        reg3 = Registry(Path(tmp) / "r.sqlite", readonly=True)
        (ids, db), res["read_back_s"] = timed(reg3.packed)
        assert len(ids) == len(packed)

        src = rng.integers(0, len(db), queries)
        q = unpack_bits(db[src], bits).copy()
        flips = rng.random(q.shape) < 0.10
        q ^= flips.astype(np.uint8)
        qp = pack_bits(q)
        for impl in ["faiss"] * (hamming.faiss is not None) + ["numpy"] * with_numpy:
            (dist, idx), res[f"search_{impl}_s"] = timed(lambda impl=impl: hamming_search(qp, db, k=2, impl=impl))
            res[f"search_{impl}_found_source"] = float((idx[:, 0] == src).mean())
        if with_matmul:
            (best, arg), res["search_matmul_bf16_s"] = timed(lambda: matmul_search(q, unpack_bits(db, bits), threads))
            res["search_matmul_bf16_found_source"] = float((arg == src).mean())
        new = pack_bits(rng.integers(0, 2, (10_000, bits), dtype=np.uint8))
        _, res["distance_check_10k_s"] = timed(lambda: hamming_search(new, db, k=1))
        reg.close()
        reg3.close()
        reg4, res["open_checks_s"] = timed(lambda: Registry(Path(tmp) / "r.sqlite", readonly=True))
        names, res["next_user_names_s"] = timed(lambda: reg4.next_user_names(MAX_ISSUE))
        assert len(names) == MAX_ISSUE
        reg4.close()
        if check_entries:
            reg5 = Registry(Path(tmp) / "check.sqlite")
            reg5.add_many(users[:check_entries], packed[:check_entries], n_bits=bits, min_distance=1,
                          check_distance=False)
            res["check_entries"] = min(check_entries, len(packed))
            _, res["integrity_check_s"] = timed(lambda: integrity_problems(reg5.conn))
            report, res["check_full_s"] = timed(reg5.check)
            res["check_full_ok"] = report.ok
            reg5.close()
    for k, v in res.items():
        click.echo(f"{k:32s} {v:.3f}" if isinstance(v, float) else f"{k:32s} {v}")
    if out:
        out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
