"""Secrecy: can someone without the decoder tell a fingerprinted generator's images from the plain generator's?

A steganalysis test with the passive baseline's classifier (attribution/passive.py): two classes, the plain
generator's images and the fingerprinted generators' images, trained on the first half of each folder's images
(in file order) and tested on the other halves, so every generator is seen in training. Accuracy 0.5 means the
classifier sees no fingerprint; 1.0 means that with examples of both, anybody can tell fingerprinted images apart,
decoder or not. The images are folders written by ``generate.py images`` (for example the baseline's and the
issued users' of scripts/table3.sh or the quickstart).

    python scripts/secrecy.py --plain out/baseline_images --fingerprinted out/generated/alice \\
        --fingerprinted out/generated/bob --out out/secrecy.json [--epochs 30]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click
import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from attribution.passive import predict, train_classifier  # noqa: E402
from dnnlib.util import OutputPathError, atomic_path, check_outputs, refuse_foreign  # noqa: E402


def is_secrecy_result(path: Path) -> bool:
    """A result this script wrote (an existing --out is replaced only then)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.loads(f.read(1 << 20))
        return isinstance(data, dict) and {"accuracy", "plain_called_plain"} <= set(data)
    except (OSError, ValueError):
        return False


def images_in(folders: tuple[Path, ...]) -> list[Path]:
    return [p for f in folders for p in sorted(f.glob("*.png"))]


def read(paths: list[Path]) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])).permute(0, 3, 1, 2)


@click.command(help=__doc__)
@click.option("--plain", "plain", multiple=True, required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path), help="Folder of the plain generator's "
              "images (repeatable).")
@click.option("--fingerprinted", multiple=True, required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path), help="Folder of a fingerprinted "
              "generator's images (repeatable).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Result (JSON).")
@click.option("--epochs", type=click.IntRange(min=1), default=30, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
def main(plain: tuple[Path, ...], fingerprinted: tuple[Path, ...], out: Path, epochs: int, seed: int,
         device: str) -> None:
    try:
        check_outputs({"--out": out}, {"--plain": list(plain), "--fingerprinted": list(fingerprinted)})
        refuse_foreign(out, "--out", "result of scripts/secrecy.py", is_secrecy_result)
    except OutputPathError as e:
        raise click.UsageError(str(e)) from None
    for name, folders in (("--plain", plain), ("--fingerprinted", fingerprinted)):
        for f in folders:
            if len(images_in((f,))) < 2:
                raise click.BadParameter(f"{f}: fewer than 2 PNG images; give at least 2 in each folder",
                                         param_hint=name)
    train_x, train_y, test_x, test_y = [], [], [], []
    for label, folders in enumerate((plain, fingerprinted)):
        for f in folders:
            x = read(images_in((f,)))
            half = (len(x) + 1) // 2
            train_x.append(x[:half])
            test_x.append(x[half:])
            train_y.append(torch.full((half,), label, dtype=torch.long))
            test_y.append(torch.full((len(x) - half,), label, dtype=torch.long))
    t0 = time.time()
    model = train_classifier(torch.cat(train_x), torch.cat(train_y), 2, epochs=epochs, seed=seed, device=device,
                             log=click.echo)
    predicted, truth = predict(model, torch.cat(test_x), device=device), torch.cat(test_y).numpy()
    per_class = [float((predicted[truth == k] == k).mean()) for k in (0, 1)]
    counts = [[int((torch.cat(ys) == k).sum()) for k in (0, 1)] for ys in (train_y, test_y)]
    result = {"accuracy": float(np.mean(per_class)), "plain_called_plain": per_class[0],
              "fingerprinted_called_fingerprinted": per_class[1], "train_images": counts[0],
              "test_images": counts[1], "epochs": epochs, "seed": seed,
              "seconds": round(time.time() - t0, 1), "plain": [str(f) for f in plain],
              "fingerprinted": [str(f) for f in fingerprinted]}
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        Path(tmp).write_text(json.dumps(result, indent=1) + "\n")
    click.echo(f"secrecy: balanced accuracy {result['accuracy']:.4f} (0.5: the classifier sees no fingerprint) on "
               f"{sum(result['test_images'])} held-out images; wrote {out}")


if __name__ == "__main__":
    main()
