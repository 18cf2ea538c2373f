"""The Hamming search against its reference (unpacked bits compared one by one)."""

import numpy as np
import pytest

from torch_utils.ops import hamming
from torch_utils.ops.hamming import hamming_search, hamming_search_ref, pack_bits, unpack_bits


@pytest.mark.parametrize("n_bits", [8, 13, 32, 128])
def test_pack_unpack_round_trip_and_zero_padding(n_bits):
    rng = np.random.default_rng(n_bits)
    bits = rng.integers(0, 2, (7, n_bits))
    packed = pack_bits(bits)
    assert packed.dtype == np.uint8 and packed.shape == (7, (n_bits + 7) // 8)
    np.testing.assert_array_equal(unpack_bits(packed, n_bits), bits)
    pad = (-n_bits) % 8
    assert not (packed[:, -1] & ((1 << pad) - 1)).any()       # padding bits are zero
    assert pack_bits(np.array([[1, 0, 0, 0, 0, 0, 0, 1]]))[0, 0] == 0b10000001   # most significant bit first


def test_reference_counts_differing_bits():
    a = np.array([[1, 1, 0, 0, 1, 0, 1, 0, 1, 1]])
    db = np.array([[1, 1, 0, 0, 1, 0, 1, 0, 1, 1], [0, 1, 0, 0, 1, 0, 1, 0, 1, 0], [0] * 10])
    dist, idx = hamming_search_ref(pack_bits(a), pack_bits(db), k=3)
    assert dist.tolist() == [[0, 2, 6]] and idx.tolist() == [[0, 1, 2]]


@pytest.mark.parametrize("impl", ["numpy", "faiss"])
@pytest.mark.parametrize("n_bits,k", [(16, 1), (32, 2), (100, 3), (128, 2)])
def test_implementations_match_the_reference(impl, n_bits, k):
    if impl == "faiss" and hamming.faiss is None:
        pytest.skip("faiss not installed")
    rng = np.random.default_rng(n_bits + k)
    db = pack_bits(rng.integers(0, 2, (300, n_bits)))
    q_bits = rng.integers(0, 2, (40, n_bits))
    q_bits[:5] = unpack_bits(db[[3, 50, 299, 0, 120]], n_bits)           # exact hits
    q_bits[5, :3] ^= 1                                                   # near hits
    q = pack_bits(q_bits)
    ref_d, ref_i = hamming_search_ref(q, db, k)
    d, i = hamming_search(q, db, k, impl=impl)
    np.testing.assert_array_equal(d, ref_d)
    # Every returned row is at the distance reported (faiss may order equal distances differently).
    true_d = np.unpackbits(q[:, None, :] ^ db[i], axis=2).sum(axis=2)
    np.testing.assert_array_equal(true_d, d)
    if impl == "numpy":
        np.testing.assert_array_equal(i, ref_i)                          # ties go to the lowest row
    assert d[:5, 0].tolist() == [0] * 5 and i[:5, 0].tolist() == [3, 50, 299, 0, 120]


def test_numpy_blocks_agree_across_block_boundaries():
    rng = np.random.default_rng(1)
    db = pack_bits(rng.integers(0, 2, (1000, 64)))
    q = pack_bits(rng.integers(0, 2, (300, 64)))
    d_ref, i_ref = hamming_search_ref(q, db, 2)
    d, i = hamming._search_numpy(q, db, 2, block=97)
    np.testing.assert_array_equal(d, d_ref)
    np.testing.assert_array_equal(i, i_ref)


def test_bad_inputs():
    db = pack_bits(np.zeros((3, 16)))
    with pytest.raises(ValueError, match="empty"):
        hamming_search(pack_bits(np.zeros((1, 16))), db[:0])
    with pytest.raises(ValueError, match="k=4"):
        hamming_search(pack_bits(np.zeros((1, 16))), db, k=4)
    with pytest.raises(ValueError, match="alike"):
        hamming_search(pack_bits(np.zeros((1, 24))), db)
    with pytest.raises(ValueError, match="unknown implementation"):
        hamming_search(db, db, impl="gpu")
    with pytest.raises(ValueError, match="must be"):
        unpack_bits(db, 32)
    d, i = hamming_search(db[:0], db)
    assert d.shape == (0, 1) and i.shape == (0, 1)
