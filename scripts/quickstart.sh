#!/usr/bin/env bash
# Quickstart (what runs today): build the tiny32 fingerprinted StyleGAN2, issue two per-user
# generators by baking fingerprints into them, save them as network files, reload them and
# check that each reproduces G(z, c). With a release pickle as argument, convert it as well:
#   bash scripts/quickstart.sh [path/to/network-snapshot.pkl]
# Training, generation and detection CLIs arrive with the training and detection issues.
set -euo pipefail
cd "$(dirname "$0")/.."
out=out/quickstart
mkdir -p "$out"
python - "$out" <<'PY'
import sys
import torch
from training import build_networks, load_network, save_network

out = sys.argv[1]
torch.manual_seed(0)
nets = build_networks("tiny32")
G = nets["G"].eval()
save_network(f"{out}/snapshot-init.safetensors", G=G, G_ema=G, D=nets["D"], F=nets["F"])
print(f"tiny32: G {sum(p.numel() for p in G.parameters()):,} params, {G.c_dim}-bit fingerprints")
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
