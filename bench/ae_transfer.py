"""Does a data set's fingerprint transfer to a GAN trained on it? (artificial fingerprinting's claim, issue 4)

Decodes 8-bit samples of each generator's G_ema with the autoencoder's decoder and compares them with
the fingerprint every training image carried (``metrics.fingerprint.transfer_metrics``); one JSON line
per network. Give the network trained on clean data too, as the control (~0.5 expected).

    python bench/ae_transfer.py --ae AE.safetensors --fingerprints DATA_FP/fingerprints.csv \
        runs/transfer/.../network-snapshot-000036.safetensors runs/base32/.../network-snapshot-000036.safetensors
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data.fingerprint_dataset import parse_bits  # noqa: E402
from dnnlib.cli import device_param  # noqa: E402
from metrics.fingerprint import transfer_metrics  # noqa: E402
from networks import load_network  # noqa: E402


def one_fingerprint(csv_path: Path) -> str:
    with open(csv_path, newline="", encoding="utf-8") as f:
        bits = {row["bits"] for row in csv.DictReader(f)}
    if len(bits) != 1:
        raise click.BadParameter(f"{csv_path} holds {len(bits)} different fingerprints; the check needs one",
                                 param_hint="--fingerprints")
    return bits.pop()


@click.command()
@click.argument("networks", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--ae", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Autoencoder snapshot whose decoder reads the fingerprint.")
@click.option("--fingerprints", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="fingerprints.csv written by train_fingerprint_ae.py embed (one fingerprint for all images).")
@click.option("--num", default=1000, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
def main(networks, ae, fingerprints, num, seed, device):
    device = device_param(device)
    decoder = load_network(ae, device=device, names=["decoder"])["decoder"]
    fingerprint = parse_bits(one_fingerprint(fingerprints), decoder.n_bits)
    for path in networks:
        G = load_network(path, device=device, names=["G_ema"])["G_ema"]
        result = transfer_metrics(G, decoder, fingerprint, num=num, seed=seed, device=device)
        print(json.dumps({"network": str(path), **result}), flush=True)


if __name__ == "__main__":
    main()
