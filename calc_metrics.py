"""Compute metrics of a training snapshot (or a baked per-user generator) and add them to its run folder.

\b
  python calc_metrics.py --metrics swd,consistency,bit_acc --network runs/00003-.../network-snapshot-000052.safetensors
  python calc_metrics.py --metrics fid30k_bitacc,fid50k_full --network SNAPSHOT \\
      --inception inception-2015-12-05.pt                      # or URL#sha256=HEX (downloaded once, pinned)
  python calc_metrics.py --metrics uniqueness --network SNAPSHOT --registry registry.sqlite
  python calc_metrics.py --metrics bit_acc,swd --network issued/alice.safetensors --registry registry.sqlite

Each result is appended to <run-dir>/metric-<name>.jsonl (run dir: the network's folder) with the
snapshot's name and kimg; a table is printed and <run-dir>/metrics.png plots every metric file of the
run folder against kimg. The data set defaults to the one in the snapshot's training options. A baked
generator is measured with the F of the snapshot it was issued from; its fingerprint (for bit accuracy)
is looked up in --registry by the file's SHA-256. Inputs are checked before anything runs (a bad input
writes nothing); a metric that fails while running stops the run, keeping the results before it.
Metrics and their settings: metrics/fid.py, metrics/quality.py, metrics/fingerprint.py.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import click
import torch

from attribution.registry import Registry, RegistryError
from data.dataset import ImageDataset
from data.dataset_writer import DatasetError
from dnnlib.cli import device_param, fail
from dnnlib.util import OutputPathError, file_head, is_png, refuse_foreign, sha256_file
from metrics import metric_main
from metrics.fid import FIDError, is_url, load_inception, split_pin
from metrics.fingerprint import generator_bits
from metrics.report import BOOKKEEPING, plot_run
from networks.checkpoint import CheckpointError, load_decoder, load_network, read_header
from networks.stylegan2 import BakedGenerator

# What each metric needs, checked before any runs. data: a data set; inception: --inception; F: a decoder;
# fingerprint: known bits (a conditional G, or a baked G found in --registry); conditional: G takes c.
NEEDS = {
    "fid_watermark_accuracy_30k": {"data", "inception", "fingerprint"},
    "fid50k_full": {"data", "inception"},
    "swd": {"data"},
    "consistency": {"conditional"},
    "bit_acc": {"F", "fingerprint"},
    "fp_bit_acc1k": {"F", "conditional"},
    "uniqueness": {"F", "registry"},
    "robustness_image": {"F"},
    "robustness_model": {"F"},
}


class MetricsError(ValueError):
    """A bad --network, --data, --registry, --inception or metric list."""


@dataclass
class Subject:
    """What is measured: generator, decoder (or why there is none), provenance."""
    G: torch.nn.Module
    F: torch.nn.Module | None
    no_F: str                  # why F is None
    kimg: float | None
    data: str | None           # from the training options
    fingerprint: str | None    # a baked generator's registered bits
    no_fingerprint: str        # why it is unknown
    decoder_file: Path | None  # the file F comes from (its calibration lies beside it)


def _options_data(header: dict) -> str | None:
    options = header["extra"].get("options")
    return options.get("data") if isinstance(options, dict) else None


def load_subject(network: Path, registry: Path | None, device: str) -> Subject:
    header = read_header(network)
    nets, kind, extra = header["networks"], header["kind"], header["extra"]
    if kind == "baked_generator":
        G = load_network(network, device=device, names=["G"])["G"]
        source_header = None
        try:
            F, no_F = load_decoder(network, device).net, ""
            source_header = read_header(extra["source"])
        except CheckpointError as e:
            F, no_F = None, str(e)
        fingerprint, why = None, "a baked generator's fingerprint is in the registry only: pass --registry"
        if registry is not None:
            digest = sha256_file(network)
            with Registry(registry, readonly=True) as reg:
                match = [e for e in reg.entries() if e.file_sha256 == digest]
            if match:
                fingerprint = match[0].bits
            else:
                why = f"{network} is not registered in {registry} (no entry with its SHA-256)"
        src = source_header or {"extra": {}}
        return Subject(G, F, no_F, src["extra"].get("kimg"), _options_data(src), fingerprint, why,
                       Path(extra["source"]) if source_header is not None else None)
    name = "G_ema" if "G_ema" in nets else "G" if "G" in nets else None
    if name is None:
        raise MetricsError(f"{network}: holds no generator (kind {kind!r}, networks {list(nets)})")
    loaded = load_network(network, device=device, names=[name] + (["F"] if "F" in nets else []))
    F = loaded.get("F")
    return Subject(loaded[name], F, "" if F is not None else f"{network} holds no decoder F", extra.get("kimg"),
                   _options_data(header), None, "", network if F is not None else None)


def check_inputs(metrics: list[str], subject: Subject, data: str | None, inception: str | None,
                 inception_sha256: str | None, registry: Path | None) -> None:
    """Raise MetricsError naming the first metric whose inputs are missing."""
    for name in metrics:
        needs = NEEDS.get(name, set())
        if "data" in needs:
            if data is None:
                raise MetricsError(f"{name} needs the training data set: pass --data (the snapshot records none)")
            try:
                ds = ImageDataset(data)
            except DatasetError as e:
                raise MetricsError(f"{name}: {e} (pass --data)") from e
            if ds.resolution != subject.G.img_resolution:
                raise MetricsError(f"{name}: {data} holds {ds.resolution}x{ds.resolution} images, the generator "
                                   f"makes {subject.G.img_resolution}x{subject.G.img_resolution}")
        if "inception" in needs:
            if inception is None:
                raise MetricsError(f"{name} needs the Inception-v3 network: --inception PATH or URL#sha256=HEX")
            target, pin = split_pin(inception, inception_sha256)
            if is_url(target) and pin is None:
                raise MetricsError(f"{target}: pin the URL by its SHA-256 (URL#sha256=HEX or --inception-sha256)")
            if not is_url(target) and not Path(target).expanduser().is_file():
                raise MetricsError(f"--inception {target}: no such file")
        if "registry" in needs and registry is None:
            raise MetricsError(f"{name} needs the registry of issued generators: pass --registry")
        if "F" in needs and subject.F is None:
            raise MetricsError(f"{name} needs the fingerprint decoder F: {subject.no_F}")
        conditional = not isinstance(subject.G, BakedGenerator) and generator_bits(subject.G) > 0
        if "conditional" in needs and not conditional:
            raise MetricsError(f"{name} needs a generator with a fingerprint input (a training snapshot); this one "
                               "has none")
        if "fingerprint" in needs and generator_bits(subject.G) > 0:
            if subject.F is None:
                raise MetricsError(f"{name} needs the fingerprint decoder F: {subject.no_F}")
            if isinstance(subject.G, BakedGenerator) and subject.fingerprint is None:
                raise MetricsError(f"{name}: {subject.no_fingerprint}")


def _parse_strengths(items: tuple[str, ...]) -> dict[str, list[float]]:
    """('crop=128,88', 'jpeg=80') -> {'crop': [128.0, 88.0], 'jpeg': [80.0]}; MetricsError if malformed."""
    out = {}
    for item in items:
        name, sep, values = item.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            out[name.strip()] = [float(v) for v in values.split(",") if v.strip()]
        except ValueError:
            raise MetricsError(f"--strengths {item!r}: expected ATTACK=S1,S2,... e.g. crop=128,88,64") from None
        if not out[name.strip()]:
            raise MetricsError(f"--strengths {item!r} gives no strength")
    return out


def check_run_dir_files(run_dir: Path, names: list[str]) -> None:
    """Before any work: the files calc_metrics writes into --run-dir (metrics.png, replaced; metric-<name>.jsonl,
    appended to) are new or written by this project; anything else there of those names is never touched."""
    refuse_foreign(run_dir / "metrics.png", "--run-dir", "PNG image", is_png)
    for name in names:
        def is_metric_file(path: Path, name=name) -> bool:
            try:
                first = json.loads(file_head(path, 1 << 20).split(b"\n", 1)[0])
            except ValueError:
                return False
            return isinstance(first, dict) and first.get("metric") == name
        refuse_foreign(run_dir / f"metric-{name}.jsonl", "--run-dir", f"metric file of {name}", is_metric_file)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


@click.command(help=__doc__)
@click.option("--metrics", "metric_list", required=True, help="Comma-separated metric names (or aliases): "
              + ", ".join(metric_main.list_metrics()) + ".")
@click.option("--network", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Training snapshot (G_ema and F) or baked generator (with its issuing snapshot's F).")
@click.option("--data", help="Training data set (zip, folder, LMDB) [default: the snapshot's training data].")
@click.option("--inception", help="TorchScript Inception-v3 for FID: a file, or URL#sha256=HEX.")
@click.option("--inception-sha256", help="The SHA-256 pin of --inception (instead of #sha256= in it).")
@click.option("--registry", type=click.Path(dir_okay=False, path_type=Path),
              help="Registry of issued generators (uniqueness; a baked generator's fingerprint).")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where metric-<name>.jsonl and metrics.png go [default: the network's folder].")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Downloads and FID reference statistics [default: $SGF_CACHE_DIR or ~/.cache/sgf].")
@click.option("--num", type=click.IntRange(min=1), help="Samples of swd, consistency, bit_acc "
              "[defaults 2000, 1000, 1000].")
@click.option("--num-gen", type=click.IntRange(min=2), help="Generated images of the FID metrics [30000, 50000].")
@click.option("--max-real", type=click.IntRange(min=2), help="Real images of the FID metrics [30000, all].")
@click.option("--mirror", is_flag=True, help="FID reference statistics include x-flipped reals.")
@click.option("--per-generator", type=click.IntRange(min=1), help="Images per generator of uniqueness [15].")
@click.option("--max-generators", type=click.IntRange(min=2), help="Generators of uniqueness [all].")
@click.option("--batch", type=click.IntRange(min=1), help="Batch size of generation [32; bit_acc 50].")
@click.option("--attacks", help="Robustness metrics: the attacks to run [all of metrics/robustness.py's tables].")
@click.option("--strengths", "strength_list", multiple=True, metavar="ATTACK=S1,S2,...",
              help="Robustness metrics: strengths of one attack instead of its table's (repeatable).")
@click.option("--users", type=click.IntRange(min=1), help="Robustness metrics: registered users measured [8; 4].")
@click.option("--images-per-user", type=click.IntRange(min=1), help="Robustness metrics: images per user [16; 8].")
@click.option("--calibration", help="Robustness metrics: decoder calibration file, or 'none' (fair coins) "
              "[default: the one beside the decoder, if any].")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Data loader processes for the FID reference statistics.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--progress/--no-progress", default=True, show_default=True)
def main(metric_list, network, data, inception, inception_sha256, registry, run_dir, cache_dir, num, num_gen,
         max_real, mirror, per_generator, max_generators, batch, attacks, strength_list, users, images_per_user,
         calibration, workers, seed, device, progress):
    device = device_param(device)
    try:
        names = [metric_main.canonical_name(m.strip()) for m in metric_list.split(",") if m.strip()]
        if not names:
            raise MetricsError("--metrics names no metric")
        names = list(dict.fromkeys(names))
        if not network.is_file():
            raise MetricsError(f"{network}: no such file")
        if registry is not None and not registry.is_file():
            raise MetricsError(f"{registry}: no such registry")
        subject = load_subject(network, registry, device)
        data = data if data is not None else subject.data
        check_inputs(names, subject, data, inception, inception_sha256, registry)
        if any("inception" in NEEDS.get(n, ()) for n in names):
            load_inception(inception, inception_sha256, cache_dir, device)   # download and check the pin now
        run_dir = run_dir if run_dir is not None else network.parent
        if not run_dir.is_dir():
            raise MetricsError(f"--run-dir {run_dir}: no such folder")
        check_run_dir_files(run_dir, names)
        overrides = {"num": num, "num_gen": num_gen, "max_real": max_real, "per_generator": per_generator,
                     "max_generators": max_generators, "batch": batch, "workers": workers, "mirror": mirror,
                     "inception_sha256": inception_sha256, "fingerprint": subject.fingerprint,
                     "attacks": None if attacks is None else [a.strip() for a in attacks.split(",") if a.strip()],
                     "strengths": _parse_strengths(strength_list) or None, "users": users,
                     "images_per_user": images_per_user,
                     "decoder_file": None if subject.decoder_file is None else str(subject.decoder_file)}
        extra = {k: v for k, v in overrides.items() if v is not None}
        opts = metric_main.MetricOptions(G=subject.G, F=subject.F, data=data, device=device, seed=seed,
                                         inception=inception, cache_dir=None if cache_dir is None else str(cache_dir),
                                         registry=None if registry is None else str(registry), progress=progress,
                                         calibration=calibration, extra=extra)
        results = []
        for name in names:
            result = metric_main.calc_metric(name, opts)
            metric_main.report_metric(result, run_dir, network.name, kimg=subject.kimg)
            results.append(result)
    except (MetricsError, FIDError, CheckpointError, DatasetError, RegistryError, OutputPathError, ValueError,
            OSError) as e:
        fail(e)
    click.echo(f"{'metric':<28} {'result':<24} value")
    for result in results:
        for key, value in result.items():
            if key not in BOOKKEEPING and key != "metric" and isinstance(value, (int, float)):
                click.echo(f"{result['metric']:<28} {key:<24} {_fmt(value)}")
    figure = plot_run(run_dir)
    click.echo(f"appended to {run_dir}/metric-<name>.jsonl" + (f"; figure {figure}" if figure else ""))


if __name__ == "__main__":
    main()
