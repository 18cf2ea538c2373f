"""The passive baseline rows of Table 3 (attribution/passive.py) on the images of scripts/table3.sh.

For each registry size N: a source classifier with N + 1 classes (the first N registered users' generators and
"real") is trained on the first half of each class's images (``generated/<user>/seed*.png`` in seed order; the
real images from the held-out zip) and tested on the other half: closed world = those test images; open world =
+ every image of the generators issued elsewhere (``unknown*``), whose right answer is "attributed to nobody".
A prediction of "real" is the decision not-fingerprinted, a prediction of a user is attributed to that user, and
the accuracies are scripts/table3_report.py's, so the rows sit beside the fingerprint's. Writes passive.json and
passive.md into --out.

    python scripts/table3_passive.py --out out/table3 --heldout out/table3/real_heldout.zip [--sizes 1,10,100]
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

import click
import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from table3_report import markdown, world_metrics  # noqa: E402  (scripts/ is this file's folder)

from attribution.passive import predict, train_classifier  # noqa: E402
from data.dataset import ImageDataset  # noqa: E402
from dnnlib.util import OutputPathError, atomic_path, refuse_foreign  # noqa: E402

HEADER = "| generators | world | method |"


def is_ours(path: Path) -> bool:
    """passive.json / passive.md as this script writes them (an existing one is replaced only then)."""
    try:
        text = path.read_text(encoding="utf-8")[: 1 << 20]
        if path.suffix == ".md":
            return text.startswith(HEADER)
        rows = json.loads(text)
        return isinstance(rows, list) and all(isinstance(r, dict) and r.get("method") == "passive classifier"
                                              for r in rows)
    except (OSError, ValueError):
        return False


def read_pngs(paths: list[Path]) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])).permute(0, 3, 1, 2)


def halves(n: int) -> tuple[slice, slice]:
    return slice(0, (n + 1) // 2), slice((n + 1) // 2, n)


@click.command()
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="scripts/table3.sh's output folder (generated/, registry_<N>.csv).")
@click.option("--heldout", required=True, type=click.Path(exists=True, path_type=Path), help="The real test images.")
@click.option("--sizes", default="1,10,100", show_default=True, help="Registry sizes N, comma-separated.")
@click.option("--epochs", type=click.IntRange(min=1), default=30, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
def main(out_dir: Path, heldout: Path, sizes: str, epochs: int, seed: int, device: str) -> None:
    try:
        ns = [int(n) for n in sizes.split(",")]
    except ValueError:
        raise click.BadParameter(f"{sizes!r}: give comma-separated whole numbers", param_hint="--sizes") from None
    try:
        for name in ("passive.json", "passive.md"):
            refuse_foreign(out_dir / name, "--out", f"{name} of this script", is_ours)
    except OutputPathError as e:
        raise click.UsageError(str(e)) from None
    generated = out_dir / "generated"
    by_user = {d.name: sorted(d.glob("seed*.png")) for d in sorted(generated.iterdir()) if d.is_dir()}
    real_set = ImageDataset(heldout)
    real = torch.stack([real_set[i][0] for i in range(len(real_set))])
    real_train, real_test = (real[s] for s in halves(len(real)))
    unknown = [u for u in by_user if u.startswith("unknown")]
    unknown_images = read_pngs([p for u in unknown for p in by_user[u]]) if unknown else None
    unknown_labels = [u for u in unknown for _ in by_user[u]]
    table = []
    for n in ns:
        users = [r["user"] for r in csv.DictReader(open(out_dir / f"registry_{n}.csv"))]
        missing = [u for u in users if not by_user.get(u)]
        if missing:
            raise click.ClickException(f"{generated}: no images of {missing[:3]}: run scripts/table3.sh first")
        train_x, train_y, test_x, test_labels = [real_train], [torch.zeros(len(real_train), dtype=torch.long)], \
            [real_test], ["real"] * len(real_test)
        for k, u in enumerate(users, start=1):
            images = read_pngs(by_user[u])
            tr, te = halves(len(images))
            train_x.append(images[tr])
            train_y.append(torch.full((len(images[tr]),), k, dtype=torch.long))
            test_x.append(images[te])
            test_labels += [u] * len(images[te])
        t0 = time.time()
        click.echo(f"N = {n}: training a {n + 1}-class source classifier on {sum(len(x) for x in train_x)} images")
        model = train_classifier(torch.cat(train_x), torch.cat(train_y), n + 1, epochs=epochs, seed=seed,
                                 device=device, log=click.echo)
        names = ["real", *users]
        closed = [names[k] for k in predict(model, torch.cat(test_x), device=device)]
        opened = closed + ([names[k] for k in predict(model, unknown_images, device=device)]
                           if unknown_images is not None else [])
        for world, labels, predicted in (("closed", test_labels, closed),
                                         ("open", test_labels + unknown_labels, opened)):
            decisions = ["not-fingerprinted" if p == "real" else "attributed" for p in predicted]
            attributed_to = ["" if p == "real" else p for p in predicted]
            m = world_metrics(labels, decisions, attributed_to, set(users))
            table.append({"generators": n, "world": world, "method": "passive classifier", "epochs": epochs,
                          "train_images": int(sum(len(x) for x in train_x)), **m})
        click.echo(f"  {time.time() - t0:.1f} s")
    lines = markdown(table, "method", lambda t: "passive classifier (half of each class's images to train)")
    for name, text in (("passive.json", json.dumps(table, indent=1)), ("passive.md", "\n".join(lines) + "\n")):
        with atomic_path(out_dir / name) as tmp:
            Path(tmp).write_text(text)
    click.echo("\n".join(lines))


if __name__ == "__main__":
    main()
