"""CUDA checks (skipped without a GPU): release parity, baking and a training step on the device."""

import numpy as np
import pytest
import torch

from networks import build_networks, load_network, save_network
from tests.op_oracles import no_tf32
from tests.shared_paths import ORACLE

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.skipif(not (ORACLE / "io.npz").is_file(), reason="shared/oracle is absent")
def test_release_parity_on_cuda():
    from interop.tf_import import convert_release
    from interop.tf_pickle import load_tf_pickle

    nets = {k: v.cuda() for k, v in convert_release(load_tf_pickle(ORACLE / "network-snapshot.pkl")).items()}
    io = np.load(ORACLE / "io.npz")

    def t(key):
        return torch.from_numpy(io[key]).cuda()

    with no_tf32(), torch.no_grad():
        outputs = {
            "Gs_images": nets["G_ema"](t("z"), t("c"), noise_mode="const"),
            "G_images": nets["G"](t("z"), t("c"), noise_mode="const"),
            "Gs_synthesis_images_from_w_rand": nets["G_ema"].synthesis(t("z"), t("w_rand"), noise_mode="const"),
            "D_scores_x_rand": nets["D"](t("x_rand")),
            "E_latents_Gs_images": nets["F"](t("Gs_images"))[0],
            "E_watermark_logits_Gs_images": nets["F"](t("Gs_images"))[1],
        }
    for key, got in outputs.items():
        err = (got.cpu() - torch.from_numpy(io[key])).abs().max().item()
        assert err <= 1e-4, (key, err)


def test_bake_on_cuda_matches_cpu_and_generator():
    torch.manual_seed(0)
    G = build_networks("celeba128", which=("G",))["G"].eval()
    c = torch.randint(0, 2, (1, G.n_bits)).float()
    z = torch.randn(1, G.z_dim)
    with no_tf32(), torch.no_grad():
        Gc = G.cuda()
        baked = Gc.bake(c.cuda())
        assert next(baked.parameters()).is_cuda
        err = (baked(z.cuda(), noise_mode="const") - Gc(z.cuda(), c.cuda(), noise_mode="const")).abs().max().item()
        assert err <= 1e-5
        cpu = G.cpu().bake(c)(z, noise_mode="const")
        assert (baked(z.cuda(), noise_mode="const").cpu() - cpu).abs().max().item() <= 1e-4


def test_training_step_and_files_on_cuda(tmp_path):
    torch.manual_seed(0)
    nets = {k: v.cuda() for k, v in build_networks("tiny32").items()}
    G, D, F = nets["G"], nets["D"], nets["F"]
    z = torch.randn(16, G.z_dim, device="cuda")
    c = torch.randint(0, 2, (16, G.n_bits), device="cuda").float()
    img = G(z, c)
    z_hat, logits = F(img)
    loss = D(img).mean() + (z_hat - z).square().mean() + torch.nn.functional.binary_cross_entropy_with_logits(logits, c)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in G.parameters())
    path = save_network(tmp_path / "snap.safetensors", G=G, G_ema=G, D=D, F=F)
    loaded = load_network(path, device="cuda")
    with torch.no_grad():
        assert torch.equal(loaded["G"](z, c, noise_mode="const"), G(z, c, noise_mode="const"))
