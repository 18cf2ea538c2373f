"""Detect fingerprinted images and attribute them to the registered user whose generator made them.

\b
Decide, per image, at a chosen false-positive rate (default 1e-6):
  python detect_attribute.py detect --network runs/.../network-snapshot-000052.safetensors \\
      --registry registry.sqlite --images suspicious/ more.zip one.png --out results.csv [--json results.json]
  ... --truth truth.csv     (columns path,label; label 'real', a registered user, or unknown*): accuracy, TPR at
                            FPR, ROC AUC
\b
Measure the decoder on real, non-fingerprinted images first; detection then uses the calibration
(stored beside the decoder as <decoder file>.calibration.json):
  python detect_attribute.py calibrate --network runs/.../network-snapshot-000052.safetensors --real real_faces/

\b
Decode the bits of every image, without a registry (--majority: also each folder's majority vote, the
fingerprint of a data set embedded by the autoencoder):
  python detect_attribute.py decode --network ae.safetensors --images fingerprinted/ --out bits.csv [--majority]
  ... --format release --out bits.txt   (the artificial-fingerprinting release's lines: <file name> <bits>)

The decoder comes from a training snapshot (F), a decoder or autoencoder file, or a baked generator
(the F of the snapshot it was issued from); it must be the file (by SHA-256) that the registry's
entries were issued from, unless --any-decoder. The tests and the meaning of each decision are
documented in attribution/detection.py and the README.
"""

from __future__ import annotations

import os

# Before torch and faiss load OpenMP: waiting threads yield the cores (torch_utils/ops/hamming.py says why).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import csv
import json
import sys
from pathlib import Path

import click
import numpy as np
import torch
from tqdm import tqdm

from attribution.detection import (
    CALIBRATION_JSON_KEYS,
    DECISIONS,
    REPORT_FPRS,
    CalibrationError,
    calibrate,
    calibration_path,
    decide,
    decisions_at,
    load_calibration,
    save_calibration,
    truth_metrics,
)
from attribution.registry import DEFAULT_PATH, Registry, RegistryError
from data.dataset_writer import DatasetError
from data.fingerprint_dataset import (
    DECODED_FORMATS,
    decoded_rows,
    is_decode_output,
    iter_inputs,
    prepare_for_decoder,
    write_decoded,
)
from data.prepare import SkipImage
from dnnlib.cli import FiniteFloat, device_param, fail
from dnnlib.util import OutputPathError, atomic_path, check_outputs, csv_header_is, json_starts_with, refuse_foreign
from networks.checkpoint import CheckpointError, LoadedDecoder, load_decoder

UNKNOWN_PREFIX = "unknown"   # truth labels of generators outside the registry (as in scripts/table3.sh: unknown00)
CSV_COLUMNS = ("path", "decision", "user", "matched_bits", "n_bits", "p_value", "p_attribution", "p_unknown",
               "nearest_user", "second_matched_bits", "bits")


class DetectError(ValueError):
    """Unreadable inputs, a malformed truth file, or an impossible request."""


def decode_logits(decoder: LoadedDecoder, paths: list[Path], *, resize: bool = False, skip_unreadable: bool = False,
                  batch: int = 64, device: str = "cpu", progress: bool = True,
                  max_images: int | None = None,
                  origins: list[int] | None = None) -> tuple[list[str], np.ndarray, list[tuple[str, str]]]:
    """Decode every image of ``paths``: (names, logits float [N, n], skipped (name, reason)).

    An unreadable image, or one of the wrong size without ``resize``, is an error unless
    ``skip_unreadable`` (then it is listed in ``skipped``). Nothing is decided here. ``origins``, when
    given, receives the index in ``paths`` of each decoded image's input.
    """
    names: list[str] = []
    chunks: list[np.ndarray] = []
    skipped: list[tuple[str, str]] = []
    pend_names: list[str] = []
    pend: list[np.ndarray] = []

    def flush():
        if pend:
            x = torch.from_numpy(np.stack(pend)).permute(0, 3, 1, 2).to(device).float() / 127.5 - 1
            chunks.append(decoder.logits(x).float().cpu().numpy())
            names.extend(pend_names)
            pend.clear()
            pend_names.clear()

    bar = tqdm(desc="decode", unit="img", disable=not progress, file=sys.stderr)
    try:
        for k, name, img in ((k, *item) for k, path in enumerate(paths) for item in iter_inputs([path])):
            try:
                if isinstance(img, Exception):
                    raise SkipImage(f"cannot decode ({type(img).__name__}: {img})")
                arr = prepare_for_decoder(img, decoder.resolution, resize)
            except SkipImage as e:
                if not skip_unreadable:
                    raise DetectError(f"{name}: {e} (--skip-unreadable goes on without such images)") from None
                skipped.append((name, str(e)))
                continue
            pend_names.append(name)
            pend.append(arr)
            if origins is not None:
                origins.append(k)
            bar.update(1)
            if len(pend) == batch:
                flush()
            if max_images is not None and len(names) + len(pend) >= max_images:
                break
        flush()
    finally:
        bar.close()
    if not names:
        raise DetectError(f"no readable images in {', '.join(map(str, paths))}"
                          f"{f' ({len(skipped)} skipped)' if skipped else ''}")
    return names, np.concatenate(chunks), skipped


def read_truth(path: Path, label_lines: dict[str, int] | None = None) -> dict[str, str]:
    """path -> label from a CSV with columns path,label (UTF-8, with or without a byte-order mark).

    Labels are checked against the registry by ``check_truth_labels``. ``label_lines``, when given, receives
    the line of each label's first row (for error messages).
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
                raise DetectError(f"{path}: a truth CSV needs the columns path,label; found {reader.fieldnames}")
            truth = {}
            for row in reader:
                i = reader.line_num
                if row.get(None):
                    raise DetectError(f"{path}, line {i}: {len(row[None])} field(s) more than the header's "
                                      f"{len(reader.fieldnames)} ({','.join(reader.fieldnames)}); a path with a comma "
                                      "must be quoted")
                p, label = (row.get("path") or "").strip(), (row.get("label") or "").strip()
                if not p or not label:
                    raise DetectError(f"{path}, line {i}: empty path or label")
                if p in truth and truth[p] != label:
                    raise DetectError(f"{path}, line {i}: {p} is labelled twice ({truth[p]!r}, {label!r})")
                truth[p] = label
                if label_lines is not None:
                    label_lines.setdefault(label, i)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DetectError(f"{path}: cannot read the truth CSV ({e})") from e
    if not truth:
        raise DetectError(f"{path}: no rows")
    return truth


def is_unknown_label(label: str) -> bool:
    """A truth label for an image of a generator outside the registry (the open world): unknown, unknown07, ..."""
    return label.startswith(UNKNOWN_PREFIX)


def check_truth_labels(truth: dict[str, str], reg: Registry, path: Path,
                       label_lines: dict[str, int] | None = None) -> set[str]:
    """The registered users among the truth's labels; any label that is neither 'real', a registered user, nor an
    unknown generator's (``is_unknown_label``; a registered user of such a name counts as that user) is an error."""
    labels = set(truth.values()) - {"real"}
    registered = {label for label in labels if reg.entry(label) is not None}
    bad = sorted(label for label in labels - registered if not is_unknown_label(label))
    if bad:
        lines = label_lines or {}
        counts = {label: 0 for label in bad}
        for label in truth.values():
            if label in counts:
                counts[label] += 1

        def show(label: str) -> str:
            hint = " (did you mean 'real'?)" if label.lower() == "real" else ""
            where = f"line {lines[label]}, " if label in lines else ""
            return f"{label!r}{hint} ({where}{counts[label]} row(s))"
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise DetectError(f"{path}: {len(bad)} label(s) are neither 'real', a user of {reg.path}, nor an unknown "
                          f"generator's ('{UNKNOWN_PREFIX}...'): {', '.join(show(b) for b in bad[:5])}{more}")
    return registered


def check_decoder(decoder: LoadedDecoder, network: Path, reg: Registry) -> bool:
    """Refuse a decoder that is not the file any registry entry was issued from (by SHA-256).

    Returns False (nothing to compare) when no entry records its issuing snapshot's SHA-256.
    """
    if reg.records_source(decoder.sha256):
        return True
    recorded = [(sha, src, n) for sha, src, n in reg.source_digests() if sha]
    if not recorded:
        return False
    shown = "; ".join(f"{src or '?'} (SHA-256 {sha[:16]}..., {n} entries)" for sha, src, n in recorded[:3])
    more = f"; and {len(recorded) - 3} more" if len(recorded) > 3 else ""
    via = f" (the issuing snapshot of {network})" if Path(decoder.file) != Path(network) else ""
    raise DetectError(f"the decoder {decoder.file}{via} has SHA-256 {decoder.sha256[:16]}..., but {reg.path}'s "
                      f"entries were issued from {shown}{more}: wrong decoder or wrong registry (--any-decoder "
                      "decides with this decoder anyway)")


def rate_metrics(d, cal, keep: list[int], labels: list[str]) -> dict[str, float | None]:
    """TPR and empirical FPR at each of REPORT_FPRS, every image re-decided at that rate (``decisions_at``), so
    the figures do not depend on the run's --fpr."""
    out = {}
    fingerprinted = np.asarray([labels[i] != "real" for i in keep], dtype=bool)
    for rate in REPORT_FPRS:
        _, _, decision = decisions_at(rate, d.p_attribution, d.p_unknown,
                                      None if cal is None else cal.min_unknown_pvalue)
        detected = np.asarray([decision[i] != "not-fingerprinted" for i in keep], dtype=bool)
        out[f"tpr_at_fpr_{rate:g}"] = float(detected[fingerprinted].mean()) if fingerprinted.any() else None
        out[f"empirical_fpr_at_{rate:g}"] = float(detected[~fingerprinted].mean()) if (~fingerprinted).any() else None
    return out


def _canonical(path: str) -> str:
    """A results path with its file part resolved: 'a/../x.zip:m.png' -> '/abs/x.zip:m.png'."""
    head, sep, member = path.partition(":") if not Path(path).exists() else (path, "", "")
    return str(Path(head).resolve()) + sep + member


def match_truth(names: list[str], truth: dict[str, str]) -> list[str | None]:
    """The label of each decoded image: by its path as shown in the results, else by the resolved path."""
    by_canonical = {_canonical(p): label for p, label in truth.items()}
    return [truth.get(name, by_canonical.get(_canonical(name))) for name in names]


RESULTS_JSON_KEYS = ("network", "decoder_file", "decoder_sha256")   # the first keys of detect's --json


def check_detect_outputs(out: Path, json_out: Path | None, **inputs) -> None:
    """Before any work: --out and --json are two files, neither an input (nor inside an input folder), and
    each is either new or a results file that detect wrote before (anything else is never overwritten)."""
    check_outputs({"--out": out, "--json": json_out}, {f"--{k}": v for k, v in inputs.items()})
    refuse_foreign(out, "--out", "results CSV of detect_attribute.py", csv_header_is(CSV_COLUMNS))
    refuse_foreign(json_out, "--json", "results JSON of detect_attribute.py", json_starts_with(*RESULTS_JSON_KEYS))


def _fmt_p(p: float) -> str:
    return f"{p:.3e}"


@click.group(help=__doc__)
def cli():
    pass


@cli.command(help="Decide per image: attributed (with the user), fingerprinted-unknown or not-fingerprinted.")
@click.option("--network", type=click.Path(path_type=Path), required=True,
              help="Training snapshot, decoder or autoencoder file, or a baked generator (its issuing snapshot's F).")
@click.option("--registry", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_PATH, show_default=True,
              help="Registry of issued fingerprints (read only; must exist).")
@click.option("--images", "image_paths", type=click.Path(path_type=Path), multiple=True, required=True,
              help="Image files, folders (recursive), dataset zips; repeat the option or list several.")
@click.argument("more_images", nargs=-1, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Per-image CSV.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write rows, summary, metrics and skipped images as JSON.")
@click.option("--fpr", type=FiniteFloat(0, 1, min_open=True, max_open=True), default=1e-6, show_default=True,
              help="False-positive rate of a fingerprinted decision on a real image (all tests together).")
@click.option("--truth", type=click.Path(dir_okay=False, path_type=Path),
              help="CSV path,label (UTF-8, a byte-order mark is fine): report accuracy, TPR at FPR 1e-6 / 1e-3 / 1e-2 "
              "(each re-decided at that rate, whatever --fpr), ROC AUC. A label is 'real', a registered user, or, "
              "for an image of a generator outside the registry (open world: should be attributed to nobody), "
              "any label starting with 'unknown' (unknown, unknown07, ...; a registered user of such a name is "
              "that user). Other labels (a typo such as 'Real') and rows with extra fields are errors.")
@click.option("--calibration", help="Calibration file (default: beside the decoder, used when present); "
              "'none' to use fair-coin tests only.")
@click.option("--resize", is_flag=True, help="Centre-crop and resize images to the decoder's resolution "
              "(default: a size mismatch is an error).")
@click.option("--skip-unreadable", is_flag=True, help="Go on without unreadable or wrong-sized images "
              "(listed on stderr and in --json).")
@click.option("--any-decoder", is_flag=True, help="Decide even when the decoder's file (for a baked generator: "
              "its issuing snapshot) is not, by SHA-256, the snapshot or autoencoder file any registry entry was "
              "issued from (e.g. a decoder exported or re-saved from it); by default that is an error.")
@click.option("--batch", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.pass_context
def detect(ctx, network, registry, image_paths, more_images, out, json_out, fpr, truth, calibration, resize,
           skip_unreadable, any_decoder, batch, device):
    device = device_param(device)
    images_in = list(image_paths) + list(more_images)
    try:
        check_detect_outputs(out, json_out, network=network, registry=registry, images=images_in, truth=truth,
                             calibration=None if calibration in (None, "none") else Path(calibration))
        if not registry.is_file():
            default = ctx.get_parameter_source("registry") == click.core.ParameterSource.DEFAULT
            raise DetectError(f"{registry}: no such registry{' (the default --registry)' if default else ''}; pass "
                              "--registry PATH, or issue generators with generate.py issue first")
        label_lines: dict[str, int] = {}
        truth_map = read_truth(truth, label_lines) if truth else None
        decoder = load_decoder(network, device)
        check_outputs({"--out": out, "--json": json_out}, {"the decoder file": decoder.file,
                                                          "its calibration": calibration_path(decoder.file)})
        cal = None
        cal_file = calibration_path(decoder.file) if calibration is None else (
            None if calibration == "none" else Path(calibration))
        if cal_file is not None and (calibration is not None or cal_file.is_file()):
            cal = load_calibration(cal_file, decoder.sha256)
        with Registry(registry, readonly=True) as reg:
            if len(reg) == 0:
                raise RegistryError(f"{registry}: the registry is empty; issue generators first")
            if reg.n_bits != decoder.n_bits:
                raise DetectError(f"the decoder of {network} reads {decoder.n_bits} bits; {registry} holds "
                                  f"{reg.n_bits}-bit fingerprints: wrong decoder or wrong registry")
            if any_decoder:
                decoder_check = "not checked (--any-decoder)"
            elif check_decoder(decoder, network, reg):
                decoder_check = "matches the registry's issuing snapshot"
            else:
                decoder_check = "not checked (the registry records no issuing snapshot)"
                click.echo(f"note: {registry} records no issuing snapshot's SHA-256; the decoder is not checked "
                           "against it", err=True)
            registered = check_truth_labels(truth_map, reg, truth, label_lines) if truth_map is not None else set()
            names, logits, skipped = decode_logits(decoder, images_in, resize=resize,
                                                   skip_unreadable=skip_unreadable, batch=batch, device=device)
            d = decide(logits, reg, fpr=fpr, calibration=cal)
            users = {e.id: e.user for e in reg.entries(set(d.nearest_id.tolist()))}
            size = len(reg)
    except (DetectError, RegistryError, CheckpointError, CalibrationError, DatasetError, OutputPathError,
            OSError) as e:
        fail(e)

    rows = []
    for i, name in enumerate(names):
        nearest = users[int(d.nearest_id[i])]
        rows.append({
            "path": name, "decision": d.decision[i], "user": nearest if d.decision[i] == "attributed" else "",
            "matched_bits": int(d.matched_bits[i]), "n_bits": decoder.n_bits, "p_value": float(d.p_value[i]),
            "p_attribution": float(d.p_attribution[i]),
            "p_unknown": "" if d.p_unknown is None else float(d.p_unknown[i]),
            "nearest_user": nearest, "second_matched_bits": int(d.second_matched_bits[i]),
            "bits": "".join(map(str, d.bits[i].tolist())),
        })
    summary = {k: sum(r["decision"] == k for r in rows) for k in DECISIONS}
    result = {"network": str(network), "decoder_file": str(decoder.file), "decoder_sha256": decoder.sha256,
              "decoder_check": decoder_check, "registry": str(registry),
              "registry_size": size, "fpr": fpr, "calibrated": cal is not None,
              "unknown_test_min_p": None if cal is None else cal.min_unknown_pvalue,
              "unknown_test_used": bool(d.unknown_test), "images": len(rows),
              "summary": summary, "skipped": [{"path": p, "reason": r} for p, r in skipped]}
    if truth_map is not None:
        labels = match_truth(names, truth_map)
        keep = [i for i, lab in enumerate(labels) if lab is not None]
        if not keep:
            fail(DetectError(f"{truth}: none of its paths is among the {len(names)} decoded images "
                              "(paths must be written as in the results' path column)"))
        result["truth_unmatched_images"] = len(names) - len(keep)
        result["metrics"] = truth_metrics([d.decision[i] for i in keep], [rows[i]["user"] or None for i in keep],
                                          d.p_value[keep], [labels[i] for i in keep], registered)
        result["metrics"].update(rate_metrics(d, cal, keep, labels))
    try:
        with atomic_path(out) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            for r in rows:
                writer.writerow({k: (_fmt_p(v) if k.startswith("p_") and v != "" else v) for k, v in r.items()})
        if json_out:
            with atomic_path(json_out) as tmp:
                tmp.write_text(json.dumps({**result, "rows": rows}, indent=1))
    except OSError as e:
        fail(e)

    for p, r in skipped:
        click.echo(f"skipped {p}: {r}", err=True)
    mode = "calibrated" if cal is not None else "fair-coin tests; calibrate for per-bit bias and fingerprinted-unknown"
    click.echo(f"{len(rows)} images, registry of {size}, FPR {fpr:g} ({mode})")
    click.echo(f"  {'decision':24s} images")
    for k in DECISIONS:
        click.echo(f"  {k:24s} {summary[k]:6d}")
    if skipped:
        click.echo(f"  {'skipped':24s} {len(skipped):6d}")
    if "metrics" in result:
        m = result["metrics"]
        click.echo(f"against {truth} ({m['images']} images: {m['real']} real, {m['registered_user_images']} of "
                   f"registered users, {m['unregistered_user_images']} of unregistered ones)")
        for key in ("detection_accuracy", "false_positives", "attribution_accuracy", "misattributed",
                    "unregistered_not_attributed", *[f"tpr_at_fpr_{f:g}" for f in REPORT_FPRS],
                    *[f"empirical_fpr_at_{f:g}" for f in REPORT_FPRS], "roc_auc"):
            v = m[key]
            click.echo(f"  {key:30s} {'n/a' if v is None else f'{v:.4f}' if isinstance(v, float) else v}")
    click.echo(f"wrote {out}{f' and {json_out}' if json_out else ''}")


@cli.command("calibrate", help="Measure the decoder on real, non-fingerprinted images; store the calibration.")
@click.option("--network", type=click.Path(path_type=Path), required=True,
              help="Training snapshot, decoder or autoencoder file, or a baked generator.")
@click.option("--real", "real_paths", type=click.Path(path_type=Path), multiple=True, required=True,
              help="Real images never used to train the networks: files, folders, zips (repeatable).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Calibration file (default: <decoder file>.calibration.json, where detect looks).")
@click.option("--max-images", type=click.IntRange(min=1), help="Use at most this many images.")
@click.option("--resize", is_flag=True, help="Centre-crop and resize images to the decoder's resolution.")
@click.option("--skip-unreadable", is_flag=True, help="Go on without unreadable or wrong-sized images.")
@click.option("--batch", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
def calibrate_cmd(network, real_paths, out, max_images, resize, skip_unreadable, batch, device):
    device = device_param(device)
    try:
        check_outputs({"--out": out}, {"--network": network, "--real": list(real_paths)})
        refuse_foreign(out, "--out", "calibration of detect_attribute.py", json_starts_with(*CALIBRATION_JSON_KEYS))
        decoder = load_decoder(network, device)
        dest = out or calibration_path(decoder.file)
        check_outputs({"--out": dest}, {"--network": network, "the decoder file": decoder.file,
                                        "--real": list(real_paths)})
        refuse_foreign(dest, "--out", "calibration of detect_attribute.py", json_starts_with(*CALIBRATION_JSON_KEYS))
        names, logits, skipped = decode_logits(decoder, list(real_paths), resize=resize,
                                               skip_unreadable=skip_unreadable, batch=batch, device=device,
                                               max_images=max_images)
        cal = calibrate(logits, decoder.sha256, source=", ".join(map(str, real_paths)))
        dest = save_calibration(cal, dest)
    except (DetectError, CheckpointError, CalibrationError, DatasetError, OutputPathError, OSError) as e:
        fail(e)
    rep = cal.report
    click.echo(f"calibrated {decoder.file} on {cal.num_images} real images ({len(skipped)} skipped)")
    lo, hi = rep["bit_one_rate_range"]
    click.echo(f"  rate of decoded 1s per bit: {lo:.3f} .. {hi:.3f}")
    click.echo(f"  agreement with random fingerprints: mean {rep['agreement_mean']:.2f} (fair {rep['fair_mean']:.1f}),"
               f" std {rep['agreement_std']:.2f} (fair {rep['fair_std']:.2f})")
    click.echo(f"  fingerprint-likeness (unknown) test: {rep['unknown_test_held_out']} held-out images, decides at "
               f"FPR >= {rep['unknown_test_min_fpr']:.1e}")
    click.echo(f"  {'target FPR':>10s} {'fair-coin':>10s} {'calibrated':>10s}   (empirical, attribution test)")
    for key, v in rep["empirical_fpr"].items():
        fair = "n/a" if v["fair_coin_fpr"] is None else f"{v['fair_coin_fpr']:.2e}"
        click.echo(f"  {key:>10s} {fair:>10s} {v['calibrated_fpr']:>10.2e}")
    click.echo(f"wrote {dest}")


@cli.command("decode", help="Write the bits every image decodes to (no registry, nothing decided); --majority "
             "adds each input's majority vote (a data set's fingerprint).")
@click.option("--network", type=click.Path(path_type=Path), required=True,
              help="Training snapshot, decoder or autoencoder file, or a baked generator (its issuing snapshot's F).")
@click.option("--images", "image_paths", type=click.Path(path_type=Path), multiple=True, required=True,
              help="Image files, folders (recursive), dataset zips; repeat the option or list several.")
@click.argument("more_images", nargs=-1, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="csv: path,kind,bits,mean_abs_logit,images,agreement; release: '<file name> <bits>' lines.")
@click.option("--format", "fmt", type=click.Choice(DECODED_FORMATS), default="csv", show_default=True,
              help="release: the artificial-fingerprinting release's text format (file names within each input).")
@click.option("--majority", is_flag=True, help="Also the majority vote of each input's images: printed, and rows "
              "of kind 'majority' (agreement: per-bit fraction of images that read the voted bit) in the CSV.")
@click.option("--resize", is_flag=True, help="Centre-crop and resize images to the decoder's resolution "
              "(default: a size mismatch is an error).")
@click.option("--skip-unreadable", is_flag=True, help="Go on without unreadable or wrong-sized images.")
@click.option("--batch", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
def decode_cmd(network, image_paths, more_images, out, fmt, majority, resize, skip_unreadable, batch, device):
    device = device_param(device)
    images_in = list(image_paths) + list(more_images)
    origins: list[int] = []
    try:
        check_outputs({"--out": out}, {"--network": network, "--images": images_in})
        refuse_foreign(out, "--out", "bits file of detect_attribute.py decode", is_decode_output)
        decoder = load_decoder(network, device)
        check_outputs({"--out": out}, {"the decoder file": decoder.file})
        names, logits, skipped = decode_logits(decoder, images_in, resize=resize, skip_unreadable=skip_unreadable,
                                               batch=batch, device=device, origins=origins)
        rows, votes = decoded_rows(names, logits, images_in, origins, majority=majority)
        write_decoded(out, rows, fmt)
    except (DetectError, CheckpointError, DatasetError, OutputPathError, OSError) as e:
        fail(e)
    for p, r in skipped:
        click.echo(f"skipped {p}: {r}", err=True)
    click.echo(f"decoded {len(names)} images ({decoder.n_bits} bits){f', {len(skipped)} skipped' if skipped else ''}")
    for v in votes:
        click.echo(f"majority of {v['path']} ({v['images']} images): {v['bits']}  agreement mean "
                   f"{v['agreement_mean']:.3f}, min {v['agreement_min']:.3f}")
    if votes and fmt == "release":
        click.echo("(the release format holds image lines only: the majority votes are not in the file)")
    click.echo(f"wrote {out}")


if __name__ == "__main__":
    cli()
