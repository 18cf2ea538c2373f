"""Detection and attribution decisions with a chosen false-positive rate, their calibration, and truth metrics.

**Attribution test.** An image's decoded bits are compared with the nearest registered fingerprint
(Hamming distance over packed bits); ``matched`` bits agree. Under the null hypothesis (the image
carries no registered fingerprint) each decoded bit agrees with a given fingerprint's bit by chance:
with probability ½ (fair coins, no calibration), or with the calibrated probability below. The p-value
is ``P[matches >= matched]`` for one fingerprint, times the registry size N (Bonferroni: the nearest
of N fingerprints is taken), capped at 1. An image is *attributed* when that p-value is at most the
false-positive rate.

**Calibration** (``calibrate``, from the decoder's logits on M real, non-fingerprinted images):
  * per-bit bias: bit j decodes as 1 on real images with rate r_j; a registered fingerprint with bit
    f_j then agrees by chance with probability q_j = r_j (f_j = 1) or 1 - r_j (f_j = 0). The test uses
    an upper confidence bound of q_j (q_j + 2 sqrt(q_j (1 - q_j) / M) + 1 / M) in an exact
    Poisson-binomial tail: a match on a bit the decoder favours anyway counts for less, a match
    against its bias for more, and estimation error errs on the cautious side;
  * a *fingerprint-likeness* test for fingerprints that are not registered (a generator issued
    elsewhere, the unbaked model): the score is the logits' squared Mahalanobis distance to the real
    images' logits (mean and shrunk covariance fitted on half of the calibration images); its p-value
    is conformal, ``(1 + #{held-out real scores >= score}) / (M_h + 1)`` over the other half (M_h
    images), which is valid without any distributional assumption but can go no lower than
    1 / (M_h + 1). (A χ²_n tail for the same score was tried first: on CelebA its empirical
    false-positive rate at a 1e-6 target was 2e-2; logits are far from Gaussian.)
The unknown test takes part only when it can reach half the false-positive rate (M_h + 1 >= 2 / fpr);
then both tests run at fpr / 2 each and the reported ``p_value`` is ``min(1, 2 min(p_attribution,
p_unknown))``: *attributed* when 2 p_attribution <= fpr, else *fingerprinted-unknown* when 2 p_unknown <=
fpr, else *not-fingerprinted*. Otherwise (no calibration, or too few images for that fpr) only the
attribution test decides, at the full rate, and *fingerprinted-unknown* is never decided.
The independence of bits that the attribution tail assumes is checked by the empirical
false-positive rates that ``calibrate`` stores (random fingerprints against the calibration images)
and that ``truth_metrics`` reports on real images.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from dnnlib.util import atomic_path
from torch_utils.ops.hamming import unpack_bits

DECISIONS = ("attributed", "fingerprinted-unknown", "not-fingerprinted")
CALIBRATION_FORMAT = "sgf-calibration"
CALIBRATION_VERSION = 1
CALIBRATION_SUFFIX = ".calibration.json"
CALIBRATION_JSON_KEYS = ("format", "version", "n_bits")  # the first keys of a calibration file
REPORT_FPRS = (1e-2, 1e-3, 1e-6)
MIN_CALIBRATION_IMAGES = 50


class CalibrationError(ValueError):
    """A calibration file that is missing, malformed or made for another decoder."""


# -- tails ------------------------------------------------------------------------------------------

def binomial_tail(k: np.ndarray | int, n: int) -> np.ndarray:
    """P[Binomial(n, ½) >= k], elementwise."""
    return stats.binom.sf(np.asarray(k) - 1, n, 0.5)


def match_tail(k: np.ndarray, q: np.ndarray) -> np.ndarray:
    """P[sum_j Bernoulli(q_ij) >= k_i] per row i (Poisson-binomial, exact dynamic programme).

    ``k`` int [Q], ``q`` float [Q, n].
    """
    q = np.asarray(q, dtype=np.float64)
    k = np.asarray(k)
    rows, n = q.shape
    if rows > 50_000:  # Bounded memory: [rows, n + 1] floats per chunk.
        return np.concatenate([match_tail(k[i:i + 50_000], q[i:i + 50_000]) for i in range(0, rows, 50_000)])
    pmf = np.zeros((rows, n + 1))
    pmf[:, 0] = 1.0
    for j in range(n):
        p = q[:, j:j + 1]
        pmf[:, 1:j + 2] = pmf[:, 1:j + 2] * (1 - p) + pmf[:, 0:j + 1] * p
        pmf[:, 0:1] *= 1 - p
    # Tail sums from the top, so small tails keep their precision.
    tail = np.cumsum(pmf[:, ::-1], axis=1)[:, ::-1]
    kk = np.clip(k, 0, n + 1)
    out = np.where(kk > n, 0.0, tail[np.arange(rows), np.minimum(kk, n)])
    return np.clip(out, 0.0, 1.0)


def threshold_bits(n_bits: int, fpr: float, registry_size: int = 1) -> int | None:
    """The fewest matched bits whose fair-coin Bonferroni p-value is <= fpr (None: unreachable)."""
    tails = registry_size * binomial_tail(np.arange(n_bits + 1), n_bits)
    ok = np.flatnonzero(tails <= fpr)
    return int(ok[0]) if len(ok) else None


# -- calibration ------------------------------------------------------------------------------------

def _fit_gaussian(x: np.ndarray, shrink: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    cov = np.cov(x, rowvar=False) if len(x) > 1 else np.eye(x.shape[1])
    cov = np.atleast_2d(cov)
    target = np.trace(cov) / cov.shape[0] * np.eye(cov.shape[0])
    cov = (1 - shrink) * cov + shrink * target + 1e-9 * np.eye(cov.shape[0])
    return mean, np.linalg.inv(cov)


def _mahalanobis2(x: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    d = x - mean
    return np.einsum("ij,jk,ik->i", d, precision, d)


@dataclass
class Calibration:
    n_bits: int
    num_images: int
    decoder_sha256: str
    bit_one_rate: np.ndarray           # [n] rate of decoded 1s on real images (Jeffreys-smoothed)
    mean: np.ndarray                   # [n] logit mean (fit half)
    precision: np.ndarray              # [n, n] inverse of the shrunk logit covariance (fit half)
    null_scores: np.ndarray            # sorted Mahalanobis scores of the held-out half
    report: dict[str, Any] = field(default_factory=dict)   # histograms and empirical FPRs, for people

    def null_match_probs(self, fingerprints: np.ndarray) -> np.ndarray:
        """Chance agreement per bit with each fingerprint (0/1 [Q, n]): an upper confidence bound."""
        f = np.asarray(fingerprints, dtype=bool)
        q = np.where(f, self.bit_one_rate[None], 1 - self.bit_one_rate[None])
        m = self.num_images
        return np.clip(q + 2 * np.sqrt(q * (1 - q) / m) + 1 / m, 0.0, 1.0)

    def unknown_scores(self, logits: np.ndarray) -> np.ndarray:
        return _mahalanobis2(np.asarray(logits, np.float64), self.mean, self.precision)

    @property
    def min_unknown_pvalue(self) -> float:
        return 1.0 / (len(self.null_scores) + 1)

    def unknown_pvalue(self, logits: np.ndarray) -> np.ndarray:
        """Conformal p-value of the fingerprint-likeness score against the held-out real images."""
        scores = self.unknown_scores(logits)
        at_least = len(self.null_scores) - np.searchsorted(self.null_scores, scores, side="left")
        return (1 + at_least) / (len(self.null_scores) + 1)

    def to_json(self) -> dict[str, Any]:  # Its first keys are CALIBRATION_JSON_KEYS.
        return {"format": CALIBRATION_FORMAT, "version": CALIBRATION_VERSION, "n_bits": self.n_bits,
                "num_images": self.num_images, "decoder_sha256": self.decoder_sha256,
                "bit_one_rate": self.bit_one_rate.tolist(), "mean": self.mean.tolist(),
                "precision": self.precision.tolist(), "null_scores": self.null_scores.tolist(),
                "report": self.report}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Calibration:
        if data.get("format") != CALIBRATION_FORMAT or data.get("version") != CALIBRATION_VERSION:
            raise CalibrationError(f"not a calibration of this project (format={data.get('format')!r}, "
                                   f"version={data.get('version')!r})")
        try:
            n = int(data["n_bits"])
            cal = cls(n_bits=n, num_images=int(data["num_images"]), decoder_sha256=str(data["decoder_sha256"]),
                      bit_one_rate=np.asarray(data["bit_one_rate"], np.float64),
                      mean=np.asarray(data["mean"], np.float64),
                      precision=np.asarray(data["precision"], np.float64),
                      null_scores=np.sort(np.asarray(data["null_scores"], np.float64)),
                      report=dict(data.get("report", {})))
        except (KeyError, TypeError, ValueError) as e:
            raise CalibrationError(f"malformed calibration ({e})") from e
        if (cal.bit_one_rate.shape != (n,) or cal.mean.shape != (n,) or cal.precision.shape != (n, n)
                or cal.null_scores.ndim != 1 or len(cal.null_scores) == 0 or cal.num_images < 1):
            raise CalibrationError("malformed calibration: array shapes do not match n_bits")
        return cal


def calibrate(logits: np.ndarray, decoder_sha256: str, *, num_random: int = 200, seed: int = 0,
              source: str | None = None) -> Calibration:
    """Measure a decoder's bit statistics on real images (logits [M, n]) and build its Calibration."""
    logits = np.asarray(logits, dtype=np.float64)
    m, n = logits.shape
    if m < MIN_CALIBRATION_IMAGES:
        raise CalibrationError(f"calibration needs at least {MIN_CALIBRATION_IMAGES} real images, got {m}")
    bits = logits > 0
    one_rate = (bits.sum(axis=0) + 0.5) / (m + 1)
    rng = np.random.default_rng(seed)
    fit, held_out = logits[0::2], logits[1::2]
    mean, precision = _fit_gaussian(fit)
    cal = Calibration(n_bits=n, num_images=m, decoder_sha256=decoder_sha256, bit_one_rate=one_rate, mean=mean,
                      precision=precision, null_scores=np.sort(_mahalanobis2(held_out, mean, precision)))

    # Agreement of the decoded bits with random fingerprints, against Binomial(n, ½).
    random_fp = rng.integers(0, 2, size=(num_random, n)).astype(bool)
    matches = (bits[:, None, :] == random_fp[None]).sum(axis=2)                 # [M, R]
    hist = np.bincount(matches.reshape(-1), minlength=n + 1)
    expected = stats.binom.pmf(np.arange(n + 1), n, 0.5) * matches.size
    q = cal.null_match_probs(np.broadcast_to(random_fp[None], (m,) + random_fp.shape).reshape(-1, n))
    p_cal = match_tail(matches.reshape(-1), q)
    empirical = {}
    for fpr in REPORT_FPRS:
        k = threshold_bits(n, fpr)
        empirical[f"{fpr:g}"] = {
            "fair_coin_threshold_bits": k,
            "fair_coin_fpr": None if k is None else float((matches >= k).mean()),
            "calibrated_fpr": float((p_cal <= fpr).mean()),
            "unknown_test_active": bool(cal.min_unknown_pvalue <= fpr / 2),
        }
    cal.report = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source": source,
        "bit_one_rate_range": [float(one_rate.min()), float(one_rate.max())],
        "most_biased_bits": [int(j) for j in np.argsort(-np.abs(one_rate - 0.5))[:8]],
        "random_fingerprints": num_random,
        "agreement_histogram": hist.tolist(),
        "agreement_expected_fair": [round(float(v), 3) for v in expected],
        "agreement_mean": float(matches.mean()), "agreement_std": float(matches.std()),
        "fair_mean": n / 2, "fair_std": math.sqrt(n) / 2,
        "unknown_test_held_out": len(held_out),
        "unknown_test_min_fpr": 2 * cal.min_unknown_pvalue,
        "empirical_fpr": empirical,
        "note": "empirical FPRs of (calibration image, random fingerprint) pairs for the attribution test (fair "
                "coins and calibrated); an FPR above its target means the bits are not independent on these "
                "images. The fingerprint-likeness (unknown) test is conformal and decides only at FPR >= "
                "unknown_test_min_fpr",
    }
    return cal


def calibration_path(decoder_file: str | os.PathLike) -> Path:
    """Where the calibration of a decoder file lives: beside it."""
    return Path(str(decoder_file) + CALIBRATION_SUFFIX)


def save_calibration(cal: Calibration, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(cal.to_json(), indent=1))
    return path


def load_calibration(path: str | os.PathLike, decoder_sha256: str | None = None) -> Calibration:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CalibrationError(f"{path}: cannot read the calibration ({e})") from e
    try:
        cal = Calibration.from_json(data)
    except CalibrationError as e:
        raise CalibrationError(f"{path}: {e}") from None
    if decoder_sha256 is not None and cal.decoder_sha256 != decoder_sha256:
        raise CalibrationError(f"{path} was made for another decoder (SHA-256 {cal.decoder_sha256[:12]}..., this one "
                               f"{decoder_sha256[:12]}...): run detect_attribute.py calibrate again")
    return cal


# -- decisions --------------------------------------------------------------------------------------

@dataclass
class Decisions:
    """Per image (arrays of length Q)."""
    bits: np.ndarray                  # uint8 [Q, n] decoded
    matched_bits: np.ndarray          # int [Q]: agreement with the nearest registered fingerprint
    second_matched_bits: np.ndarray   # int [Q]: with the second nearest (-1 when the registry has one entry)
    nearest_id: np.ndarray            # int [Q]: registry id of the nearest
    p_attribution: np.ndarray         # Bonferroni p-value of the nearest match
    p_unknown: np.ndarray | None      # fingerprint-likeness p-value (None without calibration)
    unknown_test: bool                # whether the unknown test took part in the decisions
    p_value: np.ndarray               # the combined p-value the decision thresholds
    decision: list[str]


def decisions_at(fpr: float, p_attribution: np.ndarray, p_unknown: np.ndarray | None = None,
                 min_unknown_pvalue: float | None = None) -> tuple[bool, np.ndarray, list[str]]:
    """(unknown test used, combined p-values, decisions) at ``fpr`` from the two tests' p-values.

    The p-values do not depend on the false-positive rate, so results can be re-decided at another rate.
    """
    p_attribution = np.asarray(p_attribution, np.float64)
    use_unknown = p_unknown is not None and min_unknown_pvalue is not None and min_unknown_pvalue <= fpr / 2
    if not use_unknown:
        return False, p_attribution, ["attributed" if p <= fpr else "not-fingerprinted" for p in p_attribution]
    p_unknown = np.asarray(p_unknown, np.float64)
    p_value = np.minimum(1.0, 2 * np.minimum(p_attribution, p_unknown))
    decision = ["attributed" if 2 * pa <= fpr else "fingerprinted-unknown" if 2 * pu <= fpr else "not-fingerprinted"
                for pa, pu in zip(p_attribution, p_unknown)]
    return True, p_value, decision


def decide(logits: np.ndarray, registry, fpr: float = 1e-6, calibration: Calibration | None = None) -> Decisions:
    """Decide per image: attributed / fingerprinted-unknown / not-fingerprinted (see the module docstring)."""
    if not 0 < fpr < 1:
        raise ValueError(f"the false-positive rate must be in (0, 1), got {fpr}")
    logits = np.asarray(logits, dtype=np.float64)
    bits = (logits > 0).astype(np.uint8)
    n = bits.shape[1]
    size = len(registry)
    dist, ids = registry.nearest(bits, k=2)
    matched = n - dist[:, 0]
    second = n - dist[:, 1] if dist.shape[1] > 1 else np.full(len(bits), -1)
    if calibration is None:
        tail = binomial_tail(matched, n)
    else:
        if calibration.n_bits != n:
            raise CalibrationError(f"the calibration is for {calibration.n_bits} bits, the decoder gives {n}")
        reg_ids, packed = registry.packed()
        rows = np.searchsorted(reg_ids, ids[:, 0])          # ids are sorted (issue order)
        nearest_fp = unpack_bits(packed[rows], n)
        tail = match_tail(matched, calibration.null_match_probs(nearest_fp))
    p_attr = np.minimum(1.0, size * tail)
    p_unknown = calibration.unknown_pvalue(logits) if calibration is not None else None
    min_unknown = calibration.min_unknown_pvalue if calibration is not None else None
    use_unknown, p_value, decision = decisions_at(fpr, p_attr, p_unknown, min_unknown)
    return Decisions(bits=bits, matched_bits=matched, second_matched_bits=second, nearest_id=ids[:, 0],
                     p_attribution=p_attr, p_unknown=p_unknown, unknown_test=use_unknown, p_value=p_value,
                     decision=decision)


# -- metrics against the truth ----------------------------------------------------------------------

def roc_auc(pos_scores: np.ndarray, neg_scores: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties counted half); None without both classes."""
    pos, neg = np.asarray(pos_scores, np.float64), np.asarray(neg_scores, np.float64)
    if len(pos) == 0 or len(neg) == 0:
        return None
    ranks = stats.rankdata(np.concatenate([pos, neg]))
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def truth_metrics(decisions: list[str], users: list[str | None], p_values: np.ndarray, truth: list[str],
                  registered: set[str], fprs: tuple[float, ...] = REPORT_FPRS) -> dict[str, Any]:
    """Detection and attribution figures for images with known truth (``'real'`` or a user name).

    * detection accuracy: fingerprinted (any decision but not-fingerprinted) vs real;
    * attribution accuracy: images of registered users attributed to exactly that user;
    * unregistered users' images (an open world): the share not attributed to anybody;
    * TPR at each FPR: the share of fingerprinted images whose p-value is at most it (with the empirical
      FPR, the share of real images at most it); ROC AUC of -log10 p between the two.
    """
    truth_arr = np.asarray(truth, dtype=object)
    is_real = truth_arr == "real"
    pred_fp = np.asarray([d != "not-fingerprinted" for d in decisions])
    p_values = np.asarray(p_values, np.float64)
    reg_mask = np.asarray([t in registered for t in truth], dtype=bool)
    unreg_mask = ~is_real & ~reg_mask
    attributed_right = np.asarray([d == "attributed" and u == t for d, u, t in zip(decisions, users, truth)])
    out: dict[str, Any] = {
        "images": len(truth), "real": int(is_real.sum()), "registered_user_images": int(reg_mask.sum()),
        "unregistered_user_images": int(unreg_mask.sum()),
        "detection_accuracy": float((pred_fp == ~is_real).mean()) if len(truth) else None,
        "false_positives": int((pred_fp & is_real).sum()),
        "attribution_accuracy": float(attributed_right[reg_mask].mean()) if reg_mask.any() else None,
        "misattributed": int(np.sum([d == "attributed" and u != t for d, u, t, r in
                                     zip(decisions, users, truth, reg_mask | unreg_mask) if r])),
        "unregistered_not_attributed": (float(np.mean([d != "attributed" for d, m in zip(decisions, unreg_mask)
                                                       if m])) if unreg_mask.any() else None),
    }
    scores = -np.log10(np.clip(p_values, 1e-300, 1.0))
    for fpr in fprs:
        out[f"tpr_at_fpr_{fpr:g}"] = float((p_values[~is_real] <= fpr).mean()) if (~is_real).any() else None
        out[f"empirical_fpr_at_{fpr:g}"] = float((p_values[is_real] <= fpr).mean()) if is_real.any() else None
    out["roc_auc"] = roc_auc(scores[~is_real], scores[is_real])
    return out
