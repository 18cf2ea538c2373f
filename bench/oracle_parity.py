"""Report: how closely converted release networks reproduce the release's own outputs.

Usage: python bench/oracle_parity.py [--oracle ../shared/oracle/A] [--device cpu]
Prints the max absolute error of every output in io.npz (const noise), as a Markdown table.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from interop.tf_import import convert_release  # noqa: E402
from interop.tf_pickle import load_tf_pickle  # noqa: E402


@click.command()
@click.option("--oracle", default=str(Path(__file__).resolve().parents[2] / "shared" / "oracle" / "A"),
              type=click.Path(exists=True, file_okay=False, path_type=Path), show_default=True)
@click.option("--device", default="cpu", show_default=True)
def main(oracle: Path, device: str) -> None:
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    nets = {k: v.to(device) for k, v in convert_release(load_tf_pickle(oracle / "network-snapshot.pkl")).items()}
    io = np.load(oracle / "io.npz")

    def t(key: str) -> torch.Tensor:
        return torch.from_numpy(io[key]).to(device)

    rows = {}
    with torch.no_grad():
        for tf, role in (("G", "G"), ("Gs", "G_ema")):
            G = nets[role]
            ws = G.embed(t("c")).unsqueeze(1).repeat(1, G.num_ws, 1)
            rows[f"{tf}_mapping_dlatents"] = ws
            rows[f"{tf}_images"] = G(t("z"), t("c"), noise_mode="const")
            rows[f"{tf}_synthesis_images_from_mapping"] = G.synthesis(t("z"), ws, noise_mode="const")
            rows[f"{tf}_synthesis_images_from_w_rand"] = G.synthesis(t("z"), t("w_rand"), noise_mode="const")
        for src in ("Gs_images", "G_images", "x_rand"):
            rows[f"D_scores_{src}"] = nets["D"](t(src))
            rows[f"E_latents_{src}"], rows[f"E_watermark_logits_{src}"] = nets["F"](t(src))
    print("| output | max abs error | max abs value |\n|---|---|---|")
    for key, got in rows.items():
        want = io[key]
        err = float(np.abs(got.cpu().numpy() - want).max())
        print(f"| `{key}` | {err:.2e} | {np.abs(want).max():.3g} |")


if __name__ == "__main__":
    main()
