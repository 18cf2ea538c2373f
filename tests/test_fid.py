"""metrics/fid.py: the Fréchet distance against independent computations, the pinned loading of a
TorchScript network (a small stand-in saved here; file:// URLs only, no network), the cached reference
statistics, and the registered FID metrics on stand-in networks."""

from __future__ import annotations

import os
import urllib.request

import numpy as np
import pytest
import torch
from torch import nn

from data.dataset import ImageDataset
from dnnlib.util import sha256_file
from metrics import fid, metric_main
from metrics.fid import FeatureStats, FIDError, frechet_distance
from tests.standin_inception import StandInInception, save_standin


@pytest.fixture(scope="module")
def inception(tmp_path_factory):
    return save_standin(tmp_path_factory.mktemp("inception") / "standin.pt")


@pytest.fixture(autouse=True)
def _fresh_detectors():
    fid._DETECTORS.clear()
    yield
    fid._DETECTORS.clear()


def random_spd(d: int, rng, rank: int | None = None) -> np.ndarray:
    a = rng.normal(size=(d, rank or d + 3))
    return a @ a.T / a.shape[1]


def fd_by_eigh(mu1, s1, mu2, s2) -> float:
    """tr((S1 S2)^(1/2)) = sum of sqrt of the eigenvalues of sqrt(S1) S2 sqrt(S1) (symmetric PSD)."""
    w, v = np.linalg.eigh(s1)
    root = v @ np.diag(np.sqrt(np.clip(w, 0, None))) @ v.T
    ev = np.linalg.eigvalsh(root @ s2 @ root)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sum(np.sqrt(np.clip(ev, 0, None))))


def test_frechet_distance_matches_an_eigendecomposition():
    rng = np.random.default_rng(0)
    for d in (1, 5, 40):
        mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
        s1, s2 = random_spd(d, rng), random_spd(d, rng)
        assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(fd_by_eigh(mu1, s1, mu2, s2), rel=1e-8, abs=1e-9)


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(1)
    a, b = rng.uniform(0.1, 3, 7), rng.uniform(0.1, 3, 7)
    mu1, mu2 = rng.normal(size=7), rng.normal(size=7)
    # Diagonal covariances: sum (sqrt a - sqrt b)^2 plus the squared mean difference.
    want = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(want, rel=1e-10)
    # One dimension: (m1 - m2)^2 + (s1 - s2)^2 with standard deviations s.
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4 + 1)
    s = random_spd(10, rng)
    assert abs(frechet_distance(mu1[:1].repeat(10), s, mu1[:1].repeat(10), s)) < 1e-8


def test_frechet_distance_of_singular_covariances_stays_finite():
    rng = np.random.default_rng(2)
    s1, s2 = random_spd(30, rng, rank=5), random_spd(30, rng, rank=5)   # fewer samples than features
    mu = np.zeros(30)
    got = frechet_distance(mu, s1, mu, s2)
    assert np.isfinite(got) and got == pytest.approx(fd_by_eigh(mu, s1, mu, s2), rel=1e-3, abs=1e-3)
    assert abs(frechet_distance(mu, s1, mu, s1)) < 1e-3
    with pytest.raises(FIDError, match="mismatched"):
        frechet_distance(mu, s1, mu[:3], s2[:3, :3])


def test_feature_stats_equal_numpy():
    rng = np.random.default_rng(3)
    x = rng.normal(2.0, 1.5, size=(101, 9))
    st = FeatureStats()
    for chunk in np.array_split(x, 7):
        st.add(chunk)
    mu, cov = st.mean_cov()
    np.testing.assert_allclose(mu, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(x, rowvar=False), rtol=1e-10, atol=1e-12)
    with pytest.raises(FIDError, match="at least 2"):
        FeatureStats().mean_cov()


def test_to_uint8():
    img = torch.tensor([-1.5, -1.0, -0.999, 0.0, 0.5, 1.0, 2.0]).view(1, 1, 1, 7)
    assert fid.to_uint8_nchw(img).flatten().tolist() == [0, 0, 0, 128, 191, 255, 255]


# -- loading the network -----------------------------------------------------------------------------

def test_load_by_path_and_a_pinned_path(inception):
    net, digest = fid.load_inception(str(inception))
    assert digest == sha256_file(inception)
    x = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    torch.testing.assert_close(net(x, return_features=True), StandInInception()(x, return_features=True))
    fid.load_inception(f"{inception}#sha256={digest.upper()}")
    with pytest.raises(FIDError, match="not the pinned"):
        fid.load_inception(f"{inception}#sha256={'0' * 64}")
    with pytest.raises(FIDError, match="no such"):
        fid.load_inception(str(inception) + ".missing")
    with pytest.raises(FIDError, match="two different"):
        fid.split_pin(f"x#sha256={'a' * 64}", "b" * 64)


def test_url_download_pinned_cached_and_refused(inception, tmp_path, monkeypatch):
    url = inception.as_uri()
    digest = sha256_file(inception)
    cache = tmp_path / "cache"
    with pytest.raises(FIDError, match="must be pinned"):
        fid.resolve_inception(url, cache_dir=cache)
    # A wrong pin: refused, and nothing is left behind (not even the temporary file).
    with pytest.raises(FIDError, match="not the pinned"):
        fid.resolve_inception(f"{url}#sha256={'1' * 64}", cache_dir=cache)
    assert not (cache / "downloads").exists() or not any((cache / "downloads").iterdir())
    path, got = fid.resolve_inception(url, sha256=digest, cache_dir=cache)
    assert got == digest and path.parent == cache / "downloads" and sha256_file(path) == digest
    net, _ = fid.load_inception(f"{url}#sha256={digest}", cache_dir=cache)
    assert net(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), return_features=True).shape == (2, 12)

    # The second time the cached copy is used: no download.
    def no_network(*a, **k):
        raise AssertionError("downloaded again")
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    assert fid.resolve_inception(f"{url}#sha256={digest}", cache_dir=cache)[0] == path
    # The environment variable names the cache when MetricOptions does not.
    monkeypatch.setenv(fid.CACHE_ENV, str(cache))
    assert fid.resolve_inception(f"{url}#sha256={digest}")[0] == path
    # A tampered cached copy is thrown away and fetched again (here: the fetch fails and says so).
    path.write_bytes(b"tampered")
    def offline(*a, **k):
        raise OSError("offline")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(FIDError, match="cannot download"):
        fid.resolve_inception(f"{url}#sha256={digest}", cache_dir=cache)
    assert not path.exists()


def test_not_torchscript_is_refused(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a zip")
    with pytest.raises(FIDError, match="TorchScript"):
        fid.load_inception(str(bad))


# -- reference statistics and the metrics -----------------------------------------------------------------

class PaintG(nn.Module):
    """32x32 images: a smooth pattern set by z, with the fingerprint written into row 0 of channel 0."""
    z_dim, n_bits, img_resolution = 4, 8, 32

    def forward(self, z, c, noise_mode="const"):
        yy = torch.linspace(-1, 1, 32)
        img = torch.tanh(z[:, :3, None, None] + z[:, 3:4, None, None] * yy[None, None, :, None])
        img = img.expand(-1, 3, 32, 32).clone()
        img[:, 0, 0, :8] = c * 2 - 1
        return img


class ReadF(nn.Module):
    def forward(self, img):
        return torch.zeros(img.shape[0], 4), img[:, 0, 0, :8]


def test_reference_stats_are_cached_and_reused(inception, data, tmp_path, monkeypatch):
    net, digest = fid.load_inception(str(inception))
    calls = []
    real = fid.dataset_feature_stats
    monkeypatch.setattr(fid, "dataset_feature_stats", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = fid.reference_stats(net, digest, data, max_real=24, cache_dir=tmp_path, batch=10)
    assert not first.reused and first.num == 24 and first.path.is_file() and len(calls) == 1
    mtime = first.path.stat().st_mtime_ns
    again = fid.reference_stats(net, digest, data, max_real=24, cache_dir=tmp_path, batch=7)
    assert again.reused and len(calls) == 1 and again.path == first.path and again.path.stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(again.sigma, first.sigma)
    # The statistics are those of the detector's features of the first 24 images (an independent pass).
    ds = ImageDataset(data, max_size=24)
    with torch.no_grad():
        feats = net(torch.stack([ds[i][0] for i in range(24)]), return_features=True).double().numpy()
    np.testing.assert_allclose(first.mu, feats.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(first.sigma, np.cov(feats, rowvar=False), rtol=1e-5, atol=1e-9)
    # The FID of a set with itself is ~0.
    assert abs(frechet_distance(feats.mean(axis=0), np.cov(feats, rowvar=False), first.mu, first.sigma)) < 1e-6
    # Another count, the mirror flag or another Inception file: another key.
    other = fid.reference_stats(net, "f" * 64, data, max_real=24, cache_dir=tmp_path)
    mirrored = fid.reference_stats(net, digest, data, max_real=24, mirror=True, cache_dir=tmp_path)
    assert not other.reused and not mirrored.reused and mirrored.num == 48 and len(calls) == 3
    assert len({first.path, other.path, mirrored.path}) == 3
    # A changed data set file (mtime) changes the key too.
    os.utime(data, ns=(mtime, os.stat(data).st_mtime_ns + 10**9))
    assert not fid.reference_stats(net, digest, data, max_real=24, cache_dir=tmp_path).reused


def test_fid_metrics_through_the_registry(inception, data, tmp_path):
    opts = metric_main.MetricOptions(G=PaintG(), F=ReadF(), data=str(data), inception=str(inception),
                                     cache_dir=str(tmp_path), extra={"num_gen": 40, "max_real": 30, "batch": 16})
    out = metric_main.calc_metric("fid30k_bitacc", opts)
    assert out["metric"] == "fid_watermark_accuracy_30k" and out["num_gen"] == 40 and out["num_real"] == 30
    assert out["bit_acc"] == 1.0 and out["bit_acc_min"] == 1.0 and out["p_value"] == pytest.approx(2 ** -8)
    assert np.isfinite(out["fid"]) and out["fid"] > 0
    assert metric_main.calc_metric("fid_watermark_accuracy_30k", opts)["fid"] == out["fid"]   # seeded
    full = metric_main.calc_metric("fid50k_full", metric_main.MetricOptions(
        G=PaintG(), data=str(data), inception=str(inception), cache_dir=str(tmp_path), extra={"num_gen": 40}))
    assert full["num_real"] == 64 and "bit_acc" not in full and full["fid"] > 0
    # The generated side: features of round((img + 1) * 127.5), the same seeded samples.
    net, _ = fid.load_inception(str(inception))
    st = FeatureStats()
    for _, _, img in fid.iter_samples(PaintG(), 40, seed=0, batch=32, noise_mode="random"):   # the default batch
        st.add(net(fid.to_uint8_nchw(img), return_features=True).detach().double().numpy())
    ref = fid.reference_stats(net, sha256_file(inception), data, max_real=None, cache_dir=tmp_path)
    assert ref.reused
    assert full["fid"] == pytest.approx(frechet_distance(*st.mean_cov(), ref.mu, ref.sigma), rel=1e-9)


def test_fid_metric_errors(inception, data, tmp_path):
    base = dict(G=PaintG(), F=ReadF(), data=str(data), cache_dir=str(tmp_path), extra={"num_gen": 4, "max_real": 4})
    with pytest.raises(FIDError, match="needs the Inception"):
        metric_main.calc_metric("fid50k_full", metric_main.MetricOptions(**base))
    with pytest.raises(FIDError, match="data set"):
        metric_main.calc_metric("fid50k_full", metric_main.MetricOptions(**{**base, "data": None},
                                                                         inception=str(inception)))
    with pytest.raises(ValueError, match="decoder F"):
        metric_main.calc_metric("fid30k_bitacc", metric_main.MetricOptions(**{**base, "F": None},
                                                                           inception=str(inception)))
    big = PaintG()
    big.img_resolution = 64
    with pytest.raises(ValueError, match="expected 64x64"):
        metric_main.calc_metric("fid50k_full", metric_main.MetricOptions(**{**base, "G": big},
                                                                         inception=str(inception)))
