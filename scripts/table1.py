"""Table 1 of the scalable-fingerprinting paper (ICLR 2022) for one data set, end to end.

Rows (FID lower is better, bit accuracy higher); every FID by the release's protocol
fid_watermark_accuracy_30k (calc_metrics.py): 30,000 G_ema samples against the first 30,000 clean training
images, Inception-v3 from the user's --inception file.

\b
  baseline    StyleGAN2 without fingerprint: train_stylegan2_fp.py --cfg paper --bits 0.
  scalable    scalable fingerprinting: --cfg paper, 128 bits (the release's flags); bit accuracy:
              F's on the same 30,000 float samples, with its binomial p-value.
  artificial  artificial fingerprinting: train_fingerprint_ae.py train (the autoencoder recipe at the
              data's resolution, 128 bits, on the same prepared images) -> embed one fingerprint (from
              --seed, or --fingerprint) into every training image -> the plain StyleGAN2 (--bits 0) on
              that copy -> FID against the clean data; bit accuracy: --bit-samples 8-bit samples decoded
              by the autoencoder's decoder against the embedded fingerprint (bench/ae_transfer.py).

Training lengths: the paper states none (the release's default, 88,000 kimg, is not what its models used).
Defaults here, this project's choice and not the paper's: 25,000 kimg for each GAN (StyleGAN2-ADA's default
length), the same for the three rows; the autoencoder 20 epochs of the data set (the artificial-fingerprinting
recipe). --kimg and --ae-epochs override them.

Steps run one after the other (commands from the repository root); each finished step is recorded in
<outdir>/steps/<step>.json and skipped by a rerun of the same command; an unfinished training run resumes
(its CLIs resume by default). A changed setting (e.g. a larger --kimg) reruns the steps it changes: the
training continues its run. The rows of --rows go to <outdir>/table1.csv and table1.md.

\b
  python scripts/table1.py --dataset celeba128 --source img_align_celeba --inception inception-2015-12-05.pt
  python scripts/table1.py --dataset cat256 --source cat_lmdb --dry-run      # commands, GPU-hours
  python scripts/table1.py --dataset celeba128 --data datasets/celeba128.zip --inception INC.pt \\
      --snapshot scalable=network-snapshot-celeba.pkl --snapshot baseline=runs/.../network-snapshot-025000.safetensors
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import random
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import click

REPO = Path(__file__).resolve().parents[1]
DEFAULT_KIMG = 25_000.0     # Not the paper's (unstated): StyleGAN2-ADA's default training length.
DEFAULT_AE_EPOCHS = 20.0    # The artificial-fingerprinting recipe (PAPER.md, section 2).
DEFAULT_AE_BITS = 128       # As the scalable row (the release's autoencoder defaults to 100).
METRIC = "fid_watermark_accuracy_30k"
ROWS = ("baseline", "scalable", "artificial")
SNAPSHOT_KEYS = (*ROWS, "ae")
TITLES = {"baseline": "StyleGAN2 without fingerprint", "scalable": "scalable fingerprinting",
          "artificial": "artificial fingerprinting (data)"}


@dataclass(frozen=True)
class Dataset:
    resolution: int
    images: int                 # The paper's count (first N of the source order).
    preset: str
    mod_range: str
    prepare: tuple[str, ...]    # dataset_tool.py arguments after --source/--dest ({source} marks the source).
    paper: dict = field(default_factory=dict)   # Row -> (FID, bit accuracy or None), Table 1.
    train_extra: tuple[str, ...] = ()
    ae_extra: tuple[str, ...] = ()
    eval_extra: tuple[str, ...] = ()
    batch: int = 16             # The release's global batch (2 GPUs x 8).
    kimg: float = DEFAULT_KIMG
    ae_epochs: float = DEFAULT_AE_EPOCHS
    bit_samples: int = 1000


_LSUN = ("create_lsun", "--source", "{source}")
DATASETS = {
    "celeba128": Dataset(128, 30_000, "celeba128", "4-128",
                         ("create_celeba", "--source", "{source}", "--cx", "89", "--cy", "121", "--size", "128",
                          "--max-images", "30000"),
                         {"baseline": (9.37, None), "scalable": (11.50, 0.991), "artificial": (14.13, 0.989)}),
    "bedroom128": Dataset(128, 30_000, "bedroom128", "4-128", (*_LSUN, "--resolution", "128", "--max-images", "30000"),
                          {"baseline": (19.24, None), "scalable": (20.50, 0.993), "artificial": (21.31, 0.983)}),
    "cat256": Dataset(256, 50_000, "cat256", "4-256", (*_LSUN, "--resolution", "256", "--max-images", "50000"),
                      {"baseline": (31.01, None), "scalable": (33.94, 0.996), "artificial": (32.60, 0.990)}),
    # The end-to-end test's configuration: the built-in toy faces, the narrow quick32 network, a step or two each.
    "tiny": Dataset(32, 64, "quick32", "4-32", ("create_builtin", "--resolution", "32", "--max-images", "64"),
                    batch=8, train_extra=("--tick", "0.008", "--workers", "0", "--metrics", "none"),
                    ae_extra=("--batch", "8", "--tick", "0.008", "--workers", "0", "--l2-wait-steps", "1",
                              "--l2-ramp-steps", "2"),
                    eval_extra=("--num-gen", "16", "--max-real", "64", "--batch", "16"),
                    kimg=0.008, ae_epochs=0.25, bit_samples=16),
}

# Measured training throughput, img/s: only measured entries, each with its source. GPU entries give the
# GPU-hours of --dry-run; none has been measured yet (bench/gpu_check.sh records them).
# (script, preset or AE resolution, fingerprinted, device, img/s, how, source)
THROUGHPUT = (
    ("train_stylegan2_fp.py", "celeba128", True, "cpu", 0.2, "fused, float32, batch 16, 2 CPU threads",
     "docs/results/throughput.md, entry of 2026-12-02 (row measured in session 2)"),
    ("train_stylegan2_fp.py", "tiny32", True, "cpu", 33.1, "float32 NCHW, batch 16, 2 CPU threads",
     "docs/results/throughput.md, entry of 2026-12-02"),
    ("train_fingerprint_ae.py", "64", True, "cpu", 37.7, "100 bits, batch 64, 2 CPU cores",
     "docs/results/autoencoder.md, entry of 2026-11-26"),
)
NOT_MEASURED = "not measured (run bench/gpu_check.sh)"


def run_command(argv: list[str], stdout: Path | None = None) -> int:
    """Run ``python ARGV`` from the repository root (stdout to a file if given); the exit status."""
    with open(stdout, "w") if stdout else contextlib.nullcontext() as out:
        return subprocess.run([sys.executable, *argv], cwd=REPO, stdout=out).returncode


def rel(path: Path) -> str:
    """A path as the commands name it: relative to the repository root when inside it."""
    path = Path(os.path.abspath(path))
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


def newest_snapshot(parent: Path, pattern: str) -> Path | None:
    runs = sorted(p for p in parent.glob("[0-9][0-9][0-9][0-9][0-9]-*") if p.is_dir()) if parent.is_dir() else []
    for run in reversed(runs):
        snaps = sorted(run.glob(pattern))
        if snaps:
            return snaps[-1]
    return None


def count_images(data: Path, planned: int) -> int:
    if data.is_file() and zipfile.is_zipfile(data):
        with zipfile.ZipFile(data) as z:
            return sum(n.lower().endswith(".png") for n in z.namelist())
    return planned


def binomial_tail(k: int, n: int) -> float:
    """P[Binomial(n, 1/2) >= k]."""
    return sum(math.comb(n, i) for i in range(max(k, 0), n + 1)) / 2 ** n


def estimate(script: str, key: str, fingerprinted: bool, kimg: float) -> str:
    images = kimg * 1000
    parts = [f"{kimg:g} kimg = {images:,.0f} images"]
    found = {dev: (v, how, src) for s, k, fp, dev, v, how, src in THROUGHPUT
             if (s, k, fp) == (script, key, fingerprinted)}
    gpu = found.get("gpu")
    parts.append(f"GPU: {images / gpu[0] / 3600:,.1f} GPU-hours at {gpu[0]} img/s ({gpu[1]}; {gpu[2]})"
                 if gpu else f"GPU: {NOT_MEASURED}")
    if "cpu" in found:
        v, how, src = found["cpu"]
        parts.append(f"CPU for comparison: {images / v / 3600:,.1f} CPU-hours at {v} img/s ({how}; {src})")
    return "; ".join(parts)


class Pipeline:
    """The steps of one table, run (or, dry, printed) in order; each returns its output."""

    def __init__(self, outdir: Path, dry_run: bool):
        self.outdir, self.dry_run = outdir, dry_run

    def record_path(self, name: str) -> Path:
        return self.outdir / "steps" / f"{name}.json"

    def done(self, name: str, argv: list[str]):
        path = self.record_path(name)
        if not path.is_file():
            return None
        record = json.loads(path.read_text())
        out = record.get("output")
        if record.get("command") != argv or (isinstance(out, str) and not (REPO / out).exists()):
            return None
        return out

    def step(self, name: str, argv: list[str], result, *, note: str = "", stdout: Path | None = None,
             force_if: Path | None = None):
        """Run ``python ARGV`` unless recorded as done with the same command; ``result()`` reads its output."""
        prior = self.done(name, argv)
        shown = " ".join(_quote(a) for a in ["python", *argv])
        if prior is not None:
            click.echo(f"[{name}] done, skipped: {shown}")
            return prior
        if self.dry_run:
            click.echo(f"[{name}] {shown}" + (f"\n    {note}" if note else ""))
            return f"<output of {name}>"
        run_argv = [*argv, "--force"] if force_if is not None and force_if.exists() else argv
        click.echo(f"[{name}] {shown}" + (f"\n    {note}" if note else ""), err=True)
        if stdout is not None:
            stdout.parent.mkdir(parents=True, exist_ok=True)
        status = run_command(run_argv, stdout)
        output = result() if status == 0 else None
        if output is None:
            why = f"exit status {status}" if status else "it wrote no output"
            stop(f"step {name} failed ({why}); see its messages above. Rerunning the same command resumes it.")
        path = self.record_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"step": name, "command": argv, "output": output}, indent=1) + "\n")
        return output


def _quote(a: str) -> str:
    return a if re.fullmatch(r"[\w@%+=:,./-]+", a) else "'" + a.replace("'", "'\\''") + "'"


def stop(message: str):
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def last_json_line(path: Path) -> dict | None:
    if not path.is_file():
        return None
    lines = [x for x in path.read_text().splitlines() if x.strip().startswith("{")]
    return json.loads(lines[-1]) if lines else None


def check_snapshot(key: str, path: Path, resolution: int) -> dict:
    """The header of a given network file, checked against its row (no tensor is read)."""
    sys.path.insert(0, str(REPO))
    from networks.checkpoint import CheckpointError, read_header
    try:
        header = read_header(path)
    except CheckpointError as e:
        raise click.BadParameter(str(e), param_hint=f"--snapshot {key}") from None
    nets, n_bits = header["networks"], int(header.get("n_bits") or 0)
    problem = None
    if int(header.get("resolution") or 0) != resolution:
        problem = f"it works at {header.get('resolution')}x{header.get('resolution')}, the data at {resolution}"
    elif key == "ae" and "decoder" not in nets:
        problem = "not a fingerprint autoencoder (train_fingerprint_ae.py, or legacy.py from *_encoder.pth)"
    elif key != "ae" and "G_ema" not in nets:
        problem = f"no G_ema (a training snapshot, or legacy.py from a release .pkl; it holds {', '.join(nets)})"
    elif key == "scalable" and (not n_bits or "F" not in nets):
        problem = "the row needs a fingerprinted generator and its decoder F"
    elif key in ("baseline", "artificial") and n_bits:
        problem = f"the row needs a plain StyleGAN2 (--bits 0); this one has {n_bits}-bit fingerprints"
    if problem:
        raise click.BadParameter(f"{path}: {problem}", param_hint=f"--snapshot {key}")
    return header


def parse_snapshots(values: tuple[str, ...]) -> dict[str, Path]:
    out = {}
    for value in values:
        key, sep, path = value.partition("=")
        if not sep or key not in SNAPSHOT_KEYS or not path:
            raise click.BadParameter(f"{value!r}: give ROW=PATH with ROW one of {', '.join(SNAPSHOT_KEYS)}",
                                     param_hint="--snapshot")
        if not Path(path).is_file():
            raise click.BadParameter(f"{path}: no such file", param_hint="--snapshot")
        out[key] = Path(path).resolve()
    return out


@click.command(help=__doc__)
@click.option("--dataset", required=True, type=click.Choice(list(DATASETS)),
              help="The data set (tiny: the built-in toy faces at 32x32 and a step of each training, for tests).")
@click.option("--source", type=click.Path(exists=True, path_type=Path),
              help="img_align_celeba folder (celeba128) or LSUN LMDB folder (bedroom128, cat256); not needed "
                   "when the data set's zip exists.")
@click.option("--data", type=click.Path(dir_okay=False, path_type=Path),
              help="The prepared data set zip [default: <outdir>/data/<dataset>.zip, made from --source].")
@click.option("--outdir", type=click.Path(file_okay=False, path_type=Path),
              help="Where everything goes [default: runs/table1/<dataset>].")
@click.option("--inception", type=click.Path(path_type=Path),
              help="TorchScript Inception-v3 file for FID (StyleGAN2-ADA's). Required unless --dry-run.")
@click.option("--kimg", type=click.FloatRange(min=0, min_open=True),
              help=f"Training length of each GAN [default: {DEFAULT_KIMG:,.0f}; the paper's is unstated].")
@click.option("--ae-epochs", type=click.FloatRange(min=0, min_open=True),
              help=f"Autoencoder epochs over the data set [default: {DEFAULT_AE_EPOCHS:g}, the release's recipe].")
@click.option("--bits", type=click.IntRange(1, 4096), default=128, show_default=True,
              help="Fingerprint bits of the scalable row.")
@click.option("--ae-bits", type=click.IntRange(1, 4096),
              help=f"Fingerprint bits of the autoencoder (artificial row) [default: {DEFAULT_AE_BITS}, or those "
                   "of --snapshot ae=PATH].")
@click.option("--fingerprint", help="The artificial row's data-set fingerprint, 0/1 text [default: drawn from --seed]."
              " Required with --snapshot artificial=PATH.")
@click.option("--snapshot", "snapshots", multiple=True, metavar="ROW=PATH",
              help="Take this snapshot instead of training ROW (baseline, scalable, artificial; ae: the "
                   "autoencoder). A release .pkl (or the companion release's *_encoder.pth for ae) is first "
                   "converted with legacy.py into the outdir. Repeatable.")
@click.option("--rows", default=",".join(ROWS), show_default=True, help="Rows to run, comma-separated.")
@click.option("--gpus", type=click.IntRange(min=1), default=1, show_default=True,
              help="Training processes (the release trained on 2 GPUs, global batch 16 either way).")
@click.option("--bit-samples", type=click.IntRange(min=1),
              help="Samples of the artificial row's bit accuracy [default: 1,000].")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--dry-run", is_flag=True, help="Print every command, the settings and the estimated GPU-hours.")
def main(dataset, source, data, outdir, inception, kimg, ae_epochs, bits, ae_bits, fingerprint, snapshots, rows,
         gpus, bit_samples, seed, dry_run):
    spec = DATASETS[dataset]
    outdir = (outdir or REPO / "runs" / "table1" / dataset).resolve()
    data = (data or outdir / "data" / f"{dataset}.zip").resolve()
    kimg_given, kimg = kimg is not None, kimg or spec.kimg
    ae_epochs = ae_epochs or spec.ae_epochs
    bit_samples = bit_samples or spec.bit_samples
    wanted = [r.strip() for r in rows.split(",") if r.strip()]
    if not wanted or set(wanted) - set(ROWS):
        raise click.BadParameter(f"{rows!r}: give rows among {', '.join(ROWS)}", param_hint="--rows")
    snaps = parse_snapshots(snapshots)

    # Everything checked before the first step.
    if inception is None and not dry_run:
        raise click.UsageError("--inception FILE is required (the TorchScript Inception-v3 of FID); "
                               "nothing was run")
    if inception is not None and not inception.is_file() and not dry_run:
        raise click.BadParameter(f"{inception}: no such file", param_hint="--inception")
    needs_data = not data.exists()
    if needs_data and dataset != "tiny" and source is None and not dry_run:
        raise click.UsageError(f"{rel(data)} does not exist: give --source (the raw data) or --data (a prepared zip)")
    if source is not None and (outdir == source.resolve() or source.resolve() in outdir.parents):
        raise click.BadParameter(f"{outdir} is inside the input {source}; choose another --outdir",
                                 param_hint="--outdir")
    if outdir.exists() and not outdir.is_dir():
        raise click.BadParameter(f"{outdir} is not a folder", param_hint="--outdir")
    if "artificial" in snaps and ("ae" not in snaps or fingerprint is None):
        raise click.UsageError("--snapshot artificial=PATH needs the autoencoder that fingerprinted its data "
                               "(--snapshot ae=PATH) and that data's --fingerprint")
    if fingerprint is not None and set(fingerprint) - {"0", "1"}:
        raise click.BadParameter("give 0/1 text, a character per bit", param_hint="--fingerprint")

    n_images = count_images(data, spec.images)
    ae_kimg = round(ae_epochs * n_images / 1000, 6)
    inc = rel(inception) if inception is not None else "<--inception FILE>"
    click.echo(f"Table 1, {dataset}: data {rel(data)} ({n_images:,} images at {spec.resolution}x{spec.resolution}), "
               f"outdir {rel(outdir)}\n  rows {', '.join(wanted)}; GAN length {kimg:g} kimg each "
               f"({'given' if kimg_given else 'default: this project, not the paper'}); scalable {bits} bits; "
               f"autoencoder {ae_epochs:g} epochs = {ae_kimg:g} kimg; FID {METRIC} with {inc}; seed {seed}")
    pipe = Pipeline(outdir, dry_run)

    # Given snapshots: converted (release files) and checked before anything trains.
    def convert(key: str, path: Path, dest: Path) -> str:
        if path.suffix not in (".pkl", ".pth"):
            return rel(path)
        if not dry_run:
            dest.parent.mkdir(parents=True, exist_ok=True)
        return pipe.step(f"convert-{key}", ["legacy.py", "--source", rel(path), "--dest", rel(dest)],
                         lambda: rel(dest) if dest.is_file() else None)

    given = {}
    for key, path in snaps.items():
        dest = outdir / "artificial" / "ae" / "release-ae.safetensors" if key == "ae" else \
            outdir / key / "release.safetensors"
        given[key] = convert(key, path, dest)
        if not given[key].startswith("<"):
            header = check_snapshot(key, REPO / given[key], spec.resolution)
            if key == "ae":
                found = int(header.get("n_bits") or 0)
                if ae_bits is not None and ae_bits != found:
                    raise click.BadParameter(f"{ae_bits}, but the autoencoder of --snapshot ae has {found} bits",
                                             param_hint="--ae-bits")
                ae_bits = found
    ae_bits = ae_bits or DEFAULT_AE_BITS
    fingerprint = fingerprint or f"{random.Random(seed).getrandbits(ae_bits):0{ae_bits}b}"
    if len(fingerprint) != ae_bits:
        raise click.BadParameter(f"{len(fingerprint)} bits; the autoencoder has {ae_bits}", param_hint="--fingerprint")
    if "artificial" in wanted and "ae" in given and given["ae"].startswith("<"):
        click.echo("  autoencoder: the bits of the converted --snapshot ae (dry run: not converted yet)")
    elif "artificial" in wanted:
        click.echo(f"  autoencoder {ae_bits} bits; the data set's fingerprint {fingerprint}")

    # 1. Data.
    if needs_data:
        src = rel(source) if source is not None else "<--source>"
        argv = ["dataset_tool.py", *[src if a == "{source}" else a for a in spec.prepare], "--dest", rel(data)]
        if dry_run:
            click.echo(f"[data] {' '.join(['python', *argv])}")
        else:
            data.parent.mkdir(parents=True, exist_ok=True)
            pipe.step("data", argv, lambda: rel(data) if data.is_file() else None)
            n_images = count_images(data, spec.images)      # the epochs count the images written
            ae_kimg = round(ae_epochs * n_images / 1000, 6)
    else:
        click.echo(f"[data] {rel(data)} exists, used as it is")

    def train_gan(row: str, n_bits: int, train_data: str):
        if row in snaps:
            click.echo(f"[train-{row}] skipped: --snapshot {row}={snaps[row]}")
            return given[row]
        step_dir = outdir / row / "gan"
        argv = ["train_stylegan2_fp.py", "--cfg", "paper", "--preset", spec.preset, "--data", train_data,
                "--outdir", rel(step_dir), "--bits", str(n_bits), "--batch", str(spec.batch), "--gamma", "100",
                "--total-kimg", f"{kimg:g}", "--gpus", str(gpus), "--seed", str(seed)]
        if n_bits:
            argv += ["--res-modulated-range", spec.mod_range, "--consistency-weight", "2", "--latent-rec-weight", "1",
                     "--fp-weight", "2"]
        argv += spec.train_extra
        found = lambda: (s := newest_snapshot(step_dir, "network-snapshot-*.safetensors")) and rel(s)  # noqa: E731
        return pipe.step(f"train-{row}", argv, found,
                         note=estimate("train_stylegan2_fp.py", spec.preset, n_bits > 0, kimg))

    def evaluate(row: str, network: str):
        eval_dir = outdir / row / "eval"
        argv = ["calc_metrics.py", "--metrics", METRIC, "--network", network, "--data", rel(data),
                "--inception", inc, "--run-dir", rel(eval_dir), "--seed", str(seed), "--no-progress",
                *spec.eval_extra]
        if not dry_run:
            eval_dir.mkdir(parents=True, exist_ok=True)
        return pipe.step(f"eval-{row}", argv, lambda: last_json_line(eval_dir / f"metric-{METRIC}.jsonl"))

    results = {}
    for row in wanted:
        if row in ("baseline", "scalable"):
            snap = train_gan(row, 0 if row == "baseline" else bits, rel(data))
            results[row] = {"snapshot": snap, "eval": evaluate(row, snap)}
            continue
        # Artificial fingerprinting: autoencoder -> fingerprinted copy -> plain GAN -> FID and decoded bits.
        art = outdir / "artificial"
        if "ae" in snaps:
            click.echo(f"[train-ae] skipped: --snapshot ae={snaps['ae']}")
            ae = given["ae"]
        else:
            ae_dir = art / "ae"
            argv = ["train_fingerprint_ae.py", "train", "--cfg", "paper", "--data", rel(data), "--outdir", rel(ae_dir),
                    "--resolution", str(spec.resolution), "--bits", str(ae_bits), "--total-kimg", f"{ae_kimg:g}",
                    "--gpus", str(gpus), "--seed", str(seed), *spec.ae_extra]
            ae = pipe.step("train-ae", argv, lambda d=ae_dir: (s := newest_snapshot(d, "ae-snapshot-*.safetensors"))
                           and rel(s), note=estimate("train_fingerprint_ae.py", str(spec.resolution), True, ae_kimg))
        if "artificial" in snaps:
            fp_csv = art / "fingerprint.csv"
            if not dry_run:
                fp_csv.parent.mkdir(parents=True, exist_ok=True)
                fp_csv.write_text(f"file,bits\n(given),{fingerprint}\n")
            gan = train_gan("artificial", 0, "")
        else:
            tag = "_".join(Path(ae).parts[-2:]).removesuffix(".safetensors")
            fp_dir = art / "fingerprinted" / (re.sub(r"[^\w.-]", "_", tag) if not ae.startswith("<") else "<ae>")
            if not dry_run:
                fp_dir.parent.mkdir(parents=True, exist_ok=True)
            argv = ["train_fingerprint_ae.py", "embed", "--network", ae, "--source", rel(data), "--dest", rel(fp_dir),
                    "--fingerprint", fingerprint]
            fp = pipe.step("embed", argv, lambda d=fp_dir: rel(d) if (d / "fingerprints.csv").is_file() else None,
                           force_if=fp_dir)
            fp_csv = REPO / fp / "fingerprints.csv" if not dry_run else Path(f"{fp}/fingerprints.csv")
            gan = train_gan("artificial", 0, fp)
        bits_out = art / "bit_accuracy.jsonl"
        argv = ["bench/ae_transfer.py", "--ae", ae, "--fingerprints", rel(fp_csv), "--num", str(bit_samples),
                "--seed", str(seed), gan]
        results["artificial"] = {"snapshot": gan, "eval": evaluate("artificial", gan),
                                 "bits": pipe.step("bits-artificial", argv, lambda f=bits_out: last_json_line(f),
                                                   stdout=bits_out)}
    if dry_run:
        click.echo("(dry run: nothing was run)")
        return
    write_table(outdir, dataset, spec, results, kimg)


def write_table(outdir: Path, dataset: str, spec: Dataset, results: dict, kimg: float) -> None:
    fields = ["dataset", "row", "method", "fid", "bit_acc", "p_value", "bit_acc_samples", "fid_num_gen",
              "fid_num_real", "kimg", "snapshot", "paper_fid", "paper_bit_acc"]
    table = []
    for row in ROWS:
        if row not in results:
            continue
        ev, bits = results[row]["eval"], results[row].get("bits")
        acc, p, samples = ev.get("bit_acc"), ev.get("p_value"), ev.get("num_gen") if "bit_acc" in ev else None
        if bits is not None:
            acc, samples = bits["bit_acc"], bits["num"]
            p = binomial_tail(round(acc * bits["bits"]), bits["bits"])
        paper = spec.paper.get(row, (None, None))
        table.append({"dataset": dataset, "row": row, "method": TITLES[row], "fid": ev["fid"], "bit_acc": acc,
                      "p_value": p, "bit_acc_samples": samples, "fid_num_gen": ev.get("num_gen"),
                      "fid_num_real": ev.get("num_real"), "kimg": ev.get("kimg"), "snapshot": results[row]["snapshot"],
                      "paper_fid": paper[0], "paper_bit_acc": paper[1]})
    with open(outdir / "table1.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(table)
    fmt = lambda v, spec=".4f": "–" if v is None else format(v, spec)  # noqa: E731
    lines = [f"Table 1, {dataset} ({METRIC}; GAN length {kimg:g} kimg)", "",
             "| method | FID | bit acc. | p-value | kimg | paper FID | paper bit acc. |",
             "|---|---|---|---|---|---|---|"]
    for t in table:
        lines.append(f"| {t['method']} | {fmt(t['fid'], '.2f')} | {fmt(t['bit_acc'])} | {fmt(t['p_value'], '.2g')} | "
                     f"{fmt(t['kimg'], 'g')} | {fmt(t['paper_fid'], '.2f')} | {fmt(t['paper_bit_acc'], '.3f')} |")
    notes = {"scalable": "F on the FID's {n} float samples",
             "artificial": "{n} samples, quantised to 8 bits, decoded by the autoencoder's decoder against the data "
                           "set's fingerprint"}
    said = [f"{t['method']}: {notes[t['row']].format(n=t['bit_acc_samples'])}" for t in table if t["row"] in notes]
    lines += ["", f"FID: {table[0]['fid_num_gen'] if table else ''} samples against the first "
              f"{table[0]['fid_num_real'] if table else ''} clean training images. Bit accuracy: "
              + "; ".join(said) + ". p-value: P[Binomial(n, 1/2) >= correct bits]. Paper: Table 1 of Yu et al., "
              "ICLR 2022."]
    (outdir / "table1.md").write_text("\n".join(lines) + "\n")
    click.echo("\n".join(lines))
    click.echo(f"wrote {rel(outdir / 'table1.csv')} and {rel(outdir / 'table1.md')}")


if __name__ == "__main__":
    main()
