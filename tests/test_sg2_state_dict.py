"""NVlabs state dicts in and out (interop/sg2ada_state_dict.py, legacy.py): the exported layout loads into a
standard StyleGAN2 of the same shapes with ``load_state_dict(strict=True)``; importing reads the configuration from
the shapes and reproduces every tensor; bad files give one line and execute nothing."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import legacy
from interop.sg2ada_state_dict import StateDictImportError, export_state_dicts, import_state_dicts
from networks import SG2FingerprintedGenerator, load_network, read_header, save_network
from networks.stylegan2_ada import SG2Discriminator, SG2Generator
from tests.release_fakes import Reduce
from tests.test_legacy_cli import assert_one_error_line

SENTINEL = "state_dict_payload_ran"
KWARGS = dict(z_dim=16, w_dim=24, img_resolution=16, mapping_layers=3, mapping_hidden=20, channel_base=256,
              channel_max=32)


def _trained(seed: int = 0) -> dict[str, torch.nn.Module]:
    """G, G_ema, D with every tensor (buffers too) away from its initial value."""
    torch.manual_seed(seed)
    nets = {"G": SG2Generator(**KWARGS), "G_ema": SG2Generator(**KWARGS),
            "D": SG2Discriminator(img_resolution=16, channel_base=256, channel_max=32, mbstd_num_channels=2)}
    with torch.no_grad():
        for net in nets.values():
            for t in list(net.parameters()) + list(net.buffers()):
                t.add_(0.1 * torch.randn_like(t))
    return nets


def invoke(*args) -> object:
    return CliRunner().invoke(legacy.main, [str(a) for a in args])


def _same(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_round_trip_reads_the_configuration_from_the_shapes(tmp_path: Path) -> None:
    nets = _trained()
    path = export_state_dicts(nets, tmp_path / "all.pt")
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"G", "G_ema", "D"}
    fresh = SG2Generator(**KWARGS)
    fresh.load_state_dict(raw["G_ema"])           # strict: NVlabs' keys and shapes
    back = import_state_dicts(path)
    for name in nets:
        _same(nets[name], back[name])
    assert back["D"].init_kwargs["mbstd_num_channels"] == 2
    for key in ("z_dim", "w_dim", "img_resolution", "mapping_layers", "mapping_hidden", "channel_max"):
        assert back["G"].init_kwargs[key] == KWARGS[key], key
    z = torch.randn(3, 16)
    assert torch.equal(back["G_ema"](z, noise_mode="const"), nets["G_ema"](z, noise_mode="const"))
    img = torch.randn(4, 3, 16, 16)
    assert torch.equal(back["D"](img), nets["D"](img))

    # One generator is a flat state dict (G.load_state_dict(torch.load(path))) and imports as G_ema.
    flat = export_state_dicts({"G": nets["G_ema"]}, tmp_path / "user.pt")
    assert "mapping.fc0.weight" in torch.load(flat, weights_only=True)
    assert list(import_state_dicts(flat)) == ["G_ema"]


def test_a_fingerprinted_generator_is_refused_until_baked(tmp_path: Path) -> None:
    G = SG2FingerprintedGenerator.from_plain(_trained()["G_ema"], n_bits=8)
    with pytest.raises(TypeError, match="bake a fingerprinted generator"):
        export_state_dicts({"G": G}, tmp_path / "no.pt")
    export_state_dicts({"G": G.bake(torch.ones(1, 8))}, tmp_path / "yes.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["yes.pt"]


def test_legacy_exports_and_reimports(tmp_path: Path) -> None:
    nets = _trained()
    ours = save_network(tmp_path / "sg2.safetensors", **nets)
    assert invoke("--source", ours, "--dest", tmp_path / "sg2.pt").exit_code == 0
    result = invoke("--source", tmp_path / "sg2.pt", "--dest", tmp_path / "back.safetensors")
    assert result.exit_code == 0, result.output
    back = load_network(tmp_path / "back.safetensors")
    for name in nets:
        _same(nets[name], back[name])
    extra = read_header(tmp_path / "back.safetensors")["extra"]
    assert extra["converted_from"] == "nvlabs-state-dict" and "mapping_lr_multiplier 0.01" in extra["assumed"]
    # Replacing a file of the kind written is allowed (atomically); a fingerprinted file says to bake first.
    assert invoke("--source", ours, "--dest", tmp_path / "sg2.pt").exit_code == 0
    save_network(tmp_path / "fp.safetensors", G=SG2FingerprintedGenerator.from_plain(nets["G"], n_bits=8))
    assert_one_error_line(invoke("--source", tmp_path / "fp.safetensors", "--dest", tmp_path / "fp.pt"),
                          "bake it for a user first")
    assert_one_error_line(invoke("--source", ours, "--dest", tmp_path / "again.safetensors"), "--dest NAME.pt")
    assert not (tmp_path / "fp.pt").exists() and not (tmp_path / "again.safetensors").exists()


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good = {k: v.clone() for k, v in _trained()["G_ema"].state_dict().items()}
    files: dict[str, tuple[Path, str]] = {}

    def write(name: str, obj, says: str) -> None:
        path = tmp_path / f"{name.replace(' ', '_')}.pt"
        torch.save(obj, path)
        files[name] = (path, says)

    write("missing key", {k: v for k, v in good.items() if k != "synthesis.b8.conv0.weight"}, "missing")
    write("extra key", {**good, "synthesis.b8.extra": torch.zeros(1)}, "not used")
    write("wrong shape", {**good, "synthesis.b8.conv0.affine.bias": torch.zeros(3)}, "expected float")
    write("nan", {**good, "synthesis.b8.torgb.bias": torch.full((3,), float("nan"))}, "NaN")
    write("nested junk", {"G": good, "D": {"b4.conv.weight": torch.zeros(1)}}, "D: not a discriminator")
    bad = tmp_path / "malicious.pt"
    bad.write_bytes(pickle.dumps(Reduce(os.system, (f"touch {tmp_path / SENTINEL}",)), protocol=2))
    files["malicious"] = (bad, "refused by weights-only loading")
    return files


@pytest.mark.parametrize("case", ["missing key", "extra key", "wrong shape", "nan", "nested junk", "malicious"])
def test_bad_state_dicts_give_one_line_and_write_nothing(tmp_path: Path, case: str) -> None:
    source, says = _bad_files(tmp_path)[case]
    if case == "malicious":   # not a state dict at all: the autoencoder reader says what --source must be
        with pytest.raises(StateDictImportError, match=says):
            import_state_dicts(source)
        assert_one_error_line(invoke("--source", source, "--dest", tmp_path / "out.safetensors"), "refused")
    else:
        assert_one_error_line(invoke("--source", source, "--dest", tmp_path / "out.safetensors"), source.name, says)
    assert not (tmp_path / SENTINEL).exists(), "the file's payload ran"
    assert not (tmp_path / "out.safetensors").exists()
