"""FID with a user-supplied TorchScript Inception-v3, pinned by SHA-256; cached reference statistics.

The network is the TorchScript Inception-v3 of StyleGAN2-ADA's PyTorch release (the TF 2015-12-05 graph;
NVIDIA distributes it as ``inception-2015-12-05.pt``). It is called as
``detector(images, return_features=True)`` with uint8 images [N, 3, H, W] (it resizes internally) and
returns the 2048-d pool features [N, 2048]. This project never downloads it by itself: ``--inception``
(``MetricOptions.inception``) names it.

**Security.** A TorchScript archive holds code (its serialised TorchScript program), and
``torch.jit.load`` runs that code. So a downloaded file is loaded only when its SHA-256 equals a pin the
user gives:
  * ``PATH``: a local file, the user's own choice, loaded as it is (``PATH#sha256=HEX`` checks it too);
  * ``URL#sha256=HEX`` (or the URL plus ``extra["inception_sha256"]`` / ``calc_metrics.py
    --inception-sha256``): downloaded once into ``<cache>/downloads/`` — into a temporary file, hashed
    while it is written, renamed into place only when the hash matches; a mismatch deletes it and stops
    with an error naming both hashes. A cached copy is hashed again before every use. A URL without a pin
    is refused. ``file://`` URLs work like any other (the tests use them; no test touches the network).
The cache folder is ``MetricOptions.cache_dir``, else the environment variable ``SGF_CACHE_DIR``, else
``~/.cache/sgf``.

**Statistics.** Features are accumulated in float64 as count, sum and sum of outer products; mean and
the unbiased covariance (n - 1) come from those. The Fréchet distance
``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))`` takes the matrix square root with
``scipy.linalg.sqrtm`` in float64; when that is not finite (near-singular covariances, e.g. fewer
samples than features) both covariances get ``eps = 1e-6`` added on the diagonal and it is taken again,
and an imaginary part left by rounding is dropped when it is small (|imag| <= 1e-3 on the diagonal) and
an error otherwise: the common practice since the original TTUR code.

**Reference statistics** of the real images are cached in ``<cache>/fid-stats/`` under the SHA-256 of a
JSON key: the data set's identity (resolved path; size and mtime of a file; for a folder, relative path,
size and mtime of every file below it), the number of images requested and used, the mirror flag and
the Inception file's SHA-256. They are written atomically (temporary file + ``os.replace``) as ``.npz``
(read back with ``allow_pickle=False``, the key checked), and reused by the next call.

**Images.** Generated images go to the network as uint8, ``round((img + 1) * 127.5)`` clipped to
0..255; training images as stored. Generation: a fresh uniform c per sample (``metrics.fingerprint.
iter_samples``), z from the metric's seed, noise ``'random'`` (as the generator was trained; override with
``extra["noise_mode"]``). The generator's resolution must equal the data set's.

Registered metrics (settings in ``MetricOptions.extra``: ``num_gen``, ``max_real`` (None: all images),
``batch`` (default 32), ``workers`` (data loader processes, default 0), ``mirror`` (add x-flipped copies
of the reals, default False), ``noise_mode``, ``inception_sha256``):
  * ``fid_watermark_accuracy_30k`` (alias ``fid30k_bitacc``): the release's protocol. 30,000 G samples,
    each with a fresh random c, against the first 30,000 training images (sorted names); and F's bit
    accuracy on the same float images (threshold logit 0). Reports ``fid``, ``bit_acc``, ``bit_acc_min``,
    ``p_value`` (P[Binomial(n, 1/2) >= round(acc n)], the paper's table), ``num_gen``, ``num_real``. A plain
    StyleGAN2 generator (no fingerprint) gets the FID only; a baked generator needs its fingerprint
    (``extra["fingerprint"]``).
  * ``fid50k_full``: 50,000 generated images against all training images: ``fid``, ``num_gen``,
    ``num_real``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.linalg
import torch
from tqdm import tqdm

from dnnlib.util import atomic_path, sha256_file
from metrics.fingerprint import decoder_logits, generator_bits, iter_samples, needs_fingerprint_pair
from metrics.metric_registry import MetricOptions, register_metric

CACHE_ENV = "SGF_CACHE_DIR"
DEFAULT_CACHE = "~/.cache/sgf"
# Where StyleGAN2-ADA's release publishes the network (for the documentation; pin the hash of your copy).
RELEASE_INCEPTION_URL = ("https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/"
                         "inception-2015-12-05.pt")

_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_PIN_RE = re.compile(r"#sha256=([0-9A-Fa-f]{64})$")
_HEX_RE = re.compile(r"^[0-9A-Fa-f]{64}$")
_STATS_VERSION = 1


class FIDError(ValueError):
    """An unusable Inception network (missing, unpinned, wrong hash, wrong outputs) or FID input."""


def resolve_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$SGF_CACHE_DIR``, else ``~/.cache/sgf``."""
    return Path(cache_dir or os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


def is_url(spec: str) -> bool:
    return bool(_URL_RE.match(spec))


def split_pin(spec: str, sha256: str | None = None) -> tuple[str, str | None]:
    """``'X#sha256=HEX'`` -> (X, hex); a separate ``sha256`` must agree with an embedded one."""
    m = _PIN_RE.search(spec)
    pin = m.group(1).lower() if m else None
    if m:
        spec = spec[: m.start()]
    if sha256 is not None:
        if not _HEX_RE.match(sha256):
            raise FIDError(f"not a SHA-256 (64 hex digits): {sha256!r}")
        if pin is not None and pin != sha256.lower():
            raise FIDError(f"two different SHA-256 pins for {spec}: {pin} and {sha256.lower()}")
        pin = sha256.lower()
    return spec, pin


def download_pinned(url: str, sha256: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The file at ``url`` in ``<cache>/downloads``, downloaded once, only if its SHA-256 is ``sha256``."""
    sha256 = sha256.lower()
    name = Path(urllib.parse.urlparse(url).path).name or "download"
    dest = resolve_cache_dir(cache_dir) / "downloads" / f"{sha256[:16]}-{name}"
    if dest.is_file():
        if sha256_file(dest) == sha256:
            return dest
        dest.unlink()                        # a corrupted or tampered copy: fetch it again
    try:
        with atomic_path(dest) as tmp:       # removed on any error, renamed into place on success
            h = hashlib.sha256()
            with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as f:
                while block := response.read(1 << 20):
                    h.update(block)
                    f.write(block)
            got = h.hexdigest()
            if got != sha256:
                raise FIDError(f"{url}: the download has SHA-256 {got}, not the pinned {sha256}; it was deleted "
                               "and nothing was loaded")
    except (urllib.error.URLError, OSError) as e:
        raise FIDError(f"cannot download {url}: {e}") from e
    return dest


def resolve_inception(spec: str, sha256: str | None = None,
                      cache_dir: str | os.PathLike | None = None) -> tuple[Path, str]:
    """The local file behind ``--inception`` and its SHA-256 (downloading a pinned URL once)."""
    target, pin = split_pin(spec, sha256)
    if is_url(target):
        if pin is None:
            raise FIDError(f"{target}: a URL must be pinned by its SHA-256 (URL#sha256=HEX or --inception-sha256): "
                           "a TorchScript file runs code when loaded")
        return download_pinned(target, pin, cache_dir), pin
    path = Path(target).expanduser()
    if not path.is_file():
        raise FIDError(f"{path}: no such Inception file (a TorchScript .pt, e.g. StyleGAN2-ADA's "
                       "inception-2015-12-05.pt)")
    got = sha256_file(path)
    if pin is not None and got != pin:
        raise FIDError(f"{path}: SHA-256 {got} is not the pinned {pin}; not loaded")
    return path, got


_DETECTORS: dict[tuple[str, str, str], torch.jit.ScriptModule] = {}


def load_inception(spec: str, sha256: str | None = None, cache_dir: str | os.PathLike | None = None,
                   device: torch.device | str = "cpu") -> tuple[torch.jit.ScriptModule, str]:
    """(TorchScript detector in eval mode on ``device``, its file's SHA-256); loaded once per process."""
    path, digest = resolve_inception(spec, sha256, cache_dir)
    key = (str(path.resolve()), digest, str(device))
    if key not in _DETECTORS:
        try:
            with warnings.catch_warnings():   # TorchScript is deprecated in torch 2.x, but it is the file's format
                warnings.filterwarnings("ignore", message=".*torch.jit.load.*deprecated", category=DeprecationWarning)
                _DETECTORS[key] = torch.jit.load(str(path), map_location=device).eval()
        except (RuntimeError, ValueError) as e:
            raise FIDError(f"{path}: not a loadable TorchScript archive ({e})") from e
    return _DETECTORS[key], digest


# -- statistics ---------------------------------------------------------------------------------------

class FeatureStats:
    """Running count, sum and sum of outer products (float64) of feature rows."""

    def __init__(self) -> None:
        self.n = 0
        self.sum: np.ndarray | None = None
        self.outer: np.ndarray | None = None

    def add(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2:
            raise FIDError(f"features must be [N, D], got shape {x.shape}")
        if self.sum is None:
            self.sum = np.zeros(x.shape[1])
            self.outer = np.zeros((x.shape[1], x.shape[1]))
        if x.shape[1] != self.sum.shape[0]:
            raise FIDError(f"features changed width from {self.sum.shape[0]} to {x.shape[1]}")
        self.n += x.shape[0]
        self.sum += x.sum(axis=0)
        self.outer += x.T @ x

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        if self.n < 2:
            raise FIDError(f"FID needs at least 2 images per set, got {self.n}")
        mu = self.sum / self.n
        cov = (self.outer - self.n * np.outer(mu, mu)) / (self.n - 1)
        return mu, cov


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64 (module docstring)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise FIDError(f"mismatched statistics: {mu1.shape}, {s1.shape} vs {mu2.shape}, {s2.shape}")
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        offset = np.eye(d) * eps
        covmean = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        worst = float(np.abs(np.diagonal(covmean).imag).max())
        if worst > 1e-3:
            raise FIDError(f"the matrix square root has an imaginary part of {worst:.3g}: degenerate statistics")
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def to_uint8_nchw(img: torch.Tensor) -> torch.Tensor:
    """Float images in [-1, 1] -> uint8 [N, C, H, W]: round((img + 1) * 127.5), clipped to 0..255."""
    return ((img + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


@torch.no_grad()
def detector_features(detector, images: torch.Tensor, device: torch.device | str = "cpu") -> np.ndarray:
    """float64 [N, D] features of uint8 images [N, 3, H, W]."""
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise FIDError(f"the Inception network takes uint8 [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
    feats = detector(images.to(device), return_features=True)
    if not isinstance(feats, torch.Tensor) or feats.ndim != 2 or feats.shape[0] != images.shape[0]:
        shape = tuple(feats.shape) if isinstance(feats, torch.Tensor) else type(feats).__name__
        raise FIDError(f"the Inception network returned {shape} for {images.shape[0]} images; expected [N, D]")
    return feats.double().cpu().numpy()


# -- reference statistics -------------------------------------------------------------------------------

def dataset_identity(path: str | os.PathLike) -> dict:
    """What changes when a data set changes: path, size and mtime of the file, or of every file in a folder."""
    path = Path(path).resolve()
    if path.is_file():
        st = path.stat()
        return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    h = hashlib.sha256()
    count = 0
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = Path(root) / name
            st = full.stat()
            h.update(f"{full.relative_to(path).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            count += 1
    return {"path": str(path), "files": count, "listing_sha256": h.hexdigest()}


@dataclass
class ReferenceStats:
    mu: np.ndarray
    sigma: np.ndarray
    num: int
    path: Path            # the cache file
    reused: bool          # read from the cache (True) or computed now


def reference_stats(detector, inception_sha256: str, data: str | os.PathLike, *, max_real: int | None = None,
                    mirror: bool = False, cache_dir: str | os.PathLike | None = None, batch: int = 32,
                    workers: int = 0, device: torch.device | str = "cpu", progress: bool = False,
                    resolution: int | None = None) -> ReferenceStats:
    """Mean and covariance of the features of the first ``max_real`` images of ``data`` (cached)."""
    from data.dataset import ImageDataset

    ds = ImageDataset(data, max_size=max_real, xflip=mirror, resolution=resolution)
    key = {"kind": "fid-reference-stats", "version": _STATS_VERSION, "data": dataset_identity(data),
           "max_real": max_real, "num_images": len(ds), "mirror": bool(mirror), "inception_sha256": inception_sha256}
    key_json = json.dumps(key, sort_keys=True)
    digest = hashlib.sha256(key_json.encode()).hexdigest()
    stem = Path(data).name.split(".")[0] or "data"
    path = resolve_cache_dir(cache_dir) / "fid-stats" / f"{stem}-{digest[:24]}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as f:
                if str(f["key"]) == key_json:
                    ds.close()
                    return ReferenceStats(f["mu"], f["sigma"], int(f["num"]), path, True)
        except (OSError, ValueError, KeyError):
            pass                                # unreadable or foreign: recompute and replace it
    try:
        stats = dataset_feature_stats(detector, ds, batch=batch, workers=workers, device=device, progress=progress)
    finally:
        ds.close()
    mu, sigma = stats.mean_cov()
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, mu=mu, sigma=sigma, num=np.int64(stats.n), key=np.array(key_json))
    return ReferenceStats(mu, sigma, stats.n, path, False)


@torch.no_grad()
def dataset_feature_stats(detector, ds, *, batch: int = 32, workers: int = 0, device: torch.device | str = "cpu",
                          progress: bool = False) -> FeatureStats:
    """Feature statistics of every item of an ``ImageDataset``."""
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=False, num_workers=workers)
    stats = FeatureStats()
    for images, _ in tqdm(loader, desc="reals", unit="batch", disable=not progress, file=sys.stderr):
        stats.add(detector_features(detector, images, device))
    return stats


# -- the metrics ------------------------------------------------------------------------------------------

def _optional_int(value) -> int | None:
    return None if value is None else int(value)


@torch.no_grad()
def fid_metric(opts: MetricOptions, *, num_gen: int, max_real: int | None, with_bit_acc: bool) -> dict:
    """FID of ``num_gen`` samples against the first ``max_real`` training images (+ bit accuracy)."""
    from attribution.detection import binomial_tail

    extra = opts.extra
    num_gen = int(extra.get("num_gen", num_gen))
    max_real = _optional_int(extra.get("max_real", max_real))
    if opts.inception is None:
        raise FIDError("FID needs the Inception-v3 network: --inception PATH or URL#sha256=HEX "
                       f"(StyleGAN2-ADA's TorchScript file, e.g. {RELEASE_INCEPTION_URL})")
    if opts.data is None:
        raise FIDError("FID needs the training data set (--data)")
    bits, fixed = 0, None
    if with_bit_acc and generator_bits(opts.G) > 0:
        bits, fixed = needs_fingerprint_pair(opts, "fid_watermark_accuracy_30k")
    batch = int(extra.get("batch", 32))
    detector, digest = load_inception(opts.inception, extra.get("inception_sha256"), opts.cache_dir, opts.device)
    ref = reference_stats(detector, digest, opts.data, max_real=max_real, mirror=bool(extra.get("mirror", False)),
                          cache_dir=opts.cache_dir, batch=batch, workers=int(extra.get("workers", 0)),
                          device=opts.device, progress=opts.progress, resolution=int(opts.G.img_resolution))
    stats, acc = FeatureStats(), []
    for _, c, img in iter_samples(opts.G, num_gen, seed=opts.seed, batch=batch, device=opts.device,
                                  noise_mode=str(extra.get("noise_mode", "random")), fingerprint=fixed,
                                  progress=opts.progress, desc="fakes"):
        stats.add(detector_features(detector, to_uint8_nchw(img), opts.device))
        if bits:
            acc.append(((decoder_logits(opts.F, img) > 0).float() == c).float().mean(dim=1).cpu())
    mu, sigma = stats.mean_cov()
    out = {"fid": frechet_distance(mu, sigma, ref.mu, ref.sigma), "num_gen": num_gen, "num_real": ref.num}
    if bits:
        a = torch.cat(acc)
        mean = float(a.mean())
        out.update({"bit_acc": mean, "bit_acc_min": float(a.min()),
                    "p_value": float(binomial_tail(round(mean * bits), bits))})
    return out


@register_metric("fid_watermark_accuracy_30k", aliases=("fid30k_bitacc",), inception=True)
def fid_watermark_accuracy_30k(opts: MetricOptions) -> dict:
    """The release's metric: FID of 30k samples vs the first 30k reals, and bit accuracy on the same samples."""
    return fid_metric(opts, num_gen=30_000, max_real=30_000, with_bit_acc=True)


@register_metric("fid50k_full", inception=True)
def fid50k_full(opts: MetricOptions) -> dict:
    """FID of 50k samples against all training images."""
    return fid_metric(opts, num_gen=50_000, max_real=None, with_bit_acc=False)
