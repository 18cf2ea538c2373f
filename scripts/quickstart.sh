#!/usr/bin/env bash
# Quickstart (what runs today, about two minutes on 2 CPU cores): make the built-in data set,
# train the tiny32 fingerprinted StyleGAN2 on it for 1 kimg, then issue two per-user generators
# by baking fingerprints into the trained G, save them as network files, reload them and check
# that each reproduces G(z, c). With a release pickle as argument, convert it as well:
#   bash scripts/quickstart.sh [path/to/network-snapshot.pkl]
# Generation and detection CLIs arrive with the detection issue.
set -euo pipefail
cd "$(dirname "$0")/.."
out=out/quickstart
mkdir -p "$out"
[ -f "$out/builtin32.zip" ] || python dataset_tool.py create_builtin --dest "$out/builtin32.zip" --max-images 2000
python train_stylegan2_fp.py --data "$out/builtin32.zip" --outdir "$out/runs" --preset tiny32 \
  --total-kimg 1 --tick 0.5 --snap 2 --workers 1
snapshot=$(ls -t "$out"/runs/*/network-snapshot-*.safetensors | head -n 1)
python - "$out" "$snapshot" <<'PY'
import sys
import torch
from training import load_network, save_network

out, snapshot = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
G = load_network(snapshot, names=["G_ema"])["G_ema"]
print(f"{snapshot}: G_ema {sum(p.numel() for p in G.parameters()):,} params, {G.c_dim}-bit fingerprints")
z = torch.randn(4, G.z_dim)
for user in ("alice", "bob"):
    c = torch.randint(0, 2, (1, G.c_dim)).float()
    path = save_network(f"{out}/{user}.safetensors", G=G.bake(c))
    baked = load_network(path)["G"]
    err = (baked(z, noise_mode="const") - G(z, c.expand(4, -1), noise_mode="const")).abs().max().item()
    bits = "".join(str(int(b)) for b in c[0, :16])
    print(f"{user}: fingerprint {bits}... baked into {path} (batch of 4: max |G_c(z) - G(z, c)| = {err:.1e})")
PY
if [ "$#" -ge 1 ]; then
  python legacy.py --source "$1" --dest "$out/converted.safetensors"
fi
echo "quickstart finished: files in $out"
