"""Detection statistics: exact tails, thresholds of docs/method.md#evaluation, calibration, decisions, truth metrics."""

import itertools
import math

import numpy as np
import pytest

from attribution.detection import (
    Calibration,
    CalibrationError,
    binomial_tail,
    calibrate,
    decide,
    load_calibration,
    match_tail,
    roc_auc,
    save_calibration,
    threshold_bits,
    truth_metrics,
)
from attribution.registry import Registry
from torch_utils.ops.hamming import unpack_bits


def test_binomial_tail_is_exact():
    n = 12
    for k in range(n + 2):
        want = sum(math.comb(n, j) for j in range(k, n + 1)) / 2 ** n
        assert binomial_tail(k, n) == pytest.approx(want, rel=1e-12, abs=0)
    assert binomial_tail(128, 128) == pytest.approx(2.0 ** -128, rel=1e-9)


def test_thresholds_reproduce_the_evaluation_table():
    # docs/method.md#evaluation: matched bits needed at FPR 1e-2 / 1e-3 / 1e-6 (one fingerprint), and for N = 1e3 / 1e6.
    table = {32: (24, 26, 30), 100: (63, 66, 74), 128: (78, 82, 92)}
    for n, want in table.items():
        assert tuple(threshold_bits(n, f) for f in (1e-2, 1e-3, 1e-6)) == want
    assert threshold_bits(128, 1e-6, registry_size=1000) == 98
    assert threshold_bits(128, 1e-6, registry_size=10**6) == 103
    assert threshold_bits(32, 1e-12) is None


def test_poisson_binomial_tail_against_enumeration():
    rng = np.random.default_rng(0)
    n = 8
    q = rng.uniform(0.05, 0.95, (3, n))
    for row in range(3):
        pmf = np.zeros(n + 1)
        for outcome in itertools.product([0, 1], repeat=n):
            o = np.array(outcome)
            pmf[o.sum()] += np.prod(np.where(o == 1, q[row], 1 - q[row]))
        for k in range(n + 2):
            got = match_tail(np.array([k]), q[row:row + 1])[0]
            assert got == pytest.approx(pmf[k:].sum(), abs=1e-12)
    # Equal probabilities of one half give the binomial tail.
    half = np.full((1, 40), 0.5)
    for k in (0, 20, 33, 40, 41):
        assert match_tail(np.array([k]), half)[0] == pytest.approx(binomial_tail(k, 40), rel=1e-9)


def make_registry(tmp_path, n_bits=32, users=10, seed=0):
    reg = Registry(tmp_path / "r.sqlite")
    rng = np.random.default_rng(seed)

    def writer(user):
        def write(bits):
            path = tmp_path / f"{user}.bin"
            path.write_bytes(b"x")
            return str(path), "0" * 64
        return write
    for i in range(users):
        reg.issue(f"u{i}", n_bits, writer(f"u{i}"), random_bytes=lambda k: rng.bytes(k))
    return reg


def logits_for(bits: np.ndarray, rng, flip: int = 0, scale: float = 4.0) -> np.ndarray:
    bits = bits.copy()
    for row in bits:
        row[rng.choice(len(row), flip, replace=False)] ^= 1
    return (bits * 2.0 - 1.0) * scale + rng.normal(0, 0.3, bits.shape)


def test_decisions_attribute_fingerprinted_and_reject_null_images(tmp_path):
    reg = make_registry(tmp_path, n_bits=64, users=20)
    ids, packed = reg.packed()
    rng = np.random.default_rng(1)
    fp = unpack_bits(packed[[0, 5, 19]], 64).astype(np.int64)
    fake = logits_for(fp, rng, flip=4)                               # 60 of 64 bits right
    null = rng.normal(0, 3, (5000, 64))                              # not fingerprinted: fair coins
    d = decide(np.concatenate([fake, null]), reg, fpr=1e-6)
    assert d.decision[:3] == ["attributed"] * 3
    assert d.nearest_id[:3].tolist() == ids[[0, 5, 19]].tolist() and d.matched_bits[:3].tolist() == [60] * 3
    assert set(d.decision[3:]) == {"not-fingerprinted"} and d.p_unknown is None and not d.unknown_test
    # The p-value is Bonferroni over 20 entries of the exact tail.
    assert d.p_attribution[0] == pytest.approx(20 * binomial_tail(60, 64), rel=1e-9)
    # At a loose FPR the null images are attributed at about that rate, never more than allowed (+ noise).
    loose = decide(null, reg, fpr=0.05)
    rate = np.mean([x == "attributed" for x in loose.decision])
    assert rate <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / len(null))


def test_calibration_corrects_biased_bits(tmp_path):
    """A decoder that says 1 on most real images for half its bits: fair coins over-attribute, calibration not."""
    n = 32
    reg = make_registry(tmp_path, n_bits=n, users=50, seed=3)
    rng = np.random.default_rng(2)
    bias = np.where(np.arange(n) < n // 2, 2.5, 0.0)                   # half the bits lean to 1

    def real(m):
        return rng.normal(bias, 1.0, (m, n))
    cal = calibrate(real(2000), "sha")
    assert cal.bit_one_rate[: n // 2].min() > 0.9 and 0.4 < cal.bit_one_rate[n // 2:].mean() < 0.6
    # Registered fingerprints that agree with the bias: build one and issue it.
    reg.add_many(["biased"], np.packbits(np.r_[np.ones(n // 2), rng.integers(0, 2, n // 2)].astype(bool))[None],
                 n_bits=n, check_distance=False)
    test = real(20000)
    fair = decide(test, reg, fpr=1e-3)
    calibrated = decide(test, reg, fpr=1e-3, calibration=cal)
    fair_fp = np.mean([x == "attributed" for x in fair.decision])
    cal_fp = np.mean([x == "attributed" for x in calibrated.decision])
    assert fair_fp > 1e-2          # the fair-coin test is fooled by the bias ...
    assert cal_fp <= 2e-3          # ... the calibrated one holds its rate
    # Fingerprinted images are still attributed with the calibration.
    ids, packed = reg.packed()
    fake = logits_for(unpack_bits(packed[:5], n).astype(np.int64), rng, flip=0, scale=5)
    assert decide(fake, reg, fpr=1e-6, calibration=cal).decision == ["attributed"] * 5


def test_unknown_test_is_conformal_and_only_runs_when_it_can_decide(tmp_path):
    reg = make_registry(tmp_path, n_bits=16, users=3)
    rng = np.random.default_rng(4)
    cal = calibrate(rng.normal(0, 1, (400, 16)), "sha")
    assert len(cal.null_scores) == 200 and cal.min_unknown_pvalue == pytest.approx(1 / 201)
    # New real images: conformal p-values are about uniform, P[p <= a] <= a (up to the calibration's
    # own sampling noise, sd ~ sqrt(a (1 - a) / held-out images)).
    big = calibrate(rng.normal(0, 1, (8000, 16)), "sha")
    p = big.unknown_pvalue(rng.normal(0, 1, (5000, 16)))
    assert np.mean(p <= 0.1) <= 0.1 + 0.03 and np.mean(p <= 0.5) == pytest.approx(0.5, abs=0.05)
    far = rng.normal(0, 1, (4, 16)) * 20                               # confident logits, unregistered
    d = decide(far, reg, fpr=0.05, calibration=cal)
    assert d.unknown_test and set(d.decision) <= {"fingerprinted-unknown", "attributed"}
    assert np.all(d.p_unknown == pytest.approx(1 / 201))
    strict = decide(far, reg, fpr=1e-6, calibration=cal)              # 1/201 cannot reach 5e-7
    assert not strict.unknown_test and "fingerprinted-unknown" not in strict.decision


def test_calibration_file_round_trip_and_errors(tmp_path):
    rng = np.random.default_rng(5)
    cal = calibrate(rng.normal(0, 1, (100, 8)), "abc123")
    path = save_calibration(cal, tmp_path / "d.safetensors.calibration.json")
    back = load_calibration(path, "abc123")
    np.testing.assert_allclose(back.precision, cal.precision)
    np.testing.assert_allclose(back.null_scores, cal.null_scores)
    assert isinstance(back, Calibration) and back.report["empirical_fpr"]["0.001"]["fair_coin_threshold_bits"] is None
    with pytest.raises(CalibrationError, match="another decoder"):
        load_calibration(path, "other")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CalibrationError, match="cannot read"):
        load_calibration(tmp_path / "bad.json")
    (tmp_path / "foreign.json").write_text('{"format": "x"}')
    with pytest.raises(CalibrationError, match="not a calibration"):
        load_calibration(tmp_path / "foreign.json")
    with pytest.raises(CalibrationError, match="at least 50"):
        calibrate(rng.normal(0, 1, (10, 8)), "abc")


def test_truth_metrics_and_auc():
    decisions = ["attributed", "attributed", "not-fingerprinted", "fingerprinted-unknown", "not-fingerprinted",
                 "attributed"]
    users = ["a", "b", None, None, None, "a"]
    truth = ["a", "a", "real", "zed", "real", "a"]
    p = np.array([1e-9, 1e-8, 0.5, 1e-4, 0.9, 1e-7])
    m = truth_metrics(decisions, users, p, truth, registered={"a", "b"})
    assert m["detection_accuracy"] == 1.0 and m["false_positives"] == 0
    assert m["attribution_accuracy"] == pytest.approx(2 / 3) and m["misattributed"] == 1
    assert m["unregistered_not_attributed"] == 1.0
    assert m["tpr_at_fpr_1e-06"] == 0.75 and m["tpr_at_fpr_0.001"] == 1.0 and m["empirical_fpr_at_0.01"] == 0.0
    assert m["roc_auc"] == 1.0
    assert roc_auc(np.array([1, 2]), np.array([2, 3])) == pytest.approx(0.125)
    assert roc_auc(np.array([1.0]), np.array([])) is None
