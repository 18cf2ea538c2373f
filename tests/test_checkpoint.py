"""Network files: round trips, kinds, and clear errors for wrong, truncated or foreign files."""

import json
import re
import struct

import pytest
import torch
from safetensors.torch import save_file

from dnnlib.util import sha256_file
from networks import CheckpointError, build_networks, load_network, read_header, save_network
from networks.autoencoder import AutoencoderDecoder, DecoderWithLatent, FingerprintEncoder
from networks.checkpoint import _finite, load_decoder
from networks.checkpoint_checks import check_kwargs, json_depth
from networks.presets import PRESETS
from tests.crafted_networks import CASES, baked_file, crafted_network, network_file, rewrite_header


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    return build_networks("tiny32")


@pytest.fixture()
def snapshot(tmp_path, nets):
    return save_network(tmp_path / "snap.safetensors", extra={"kimg": 12.5},
                        G=nets["G"], G_ema=nets["G"], D=nets["D"], F=nets["F"])


def test_snapshot_round_trip(snapshot, nets):
    header = read_header(snapshot)
    assert header["kind"] == "snapshot"
    assert header["extra"] == {"kimg": 12.5}
    assert header["n_bits"] == "128" and header["resolution"] == "32"
    assert header["networks"]["G"]["class"] == "Generator"
    loaded = load_network(snapshot)
    assert set(loaded) == {"G", "G_ema", "D", "F"}
    for name, ref in [("G", nets["G"]), ("G_ema", nets["G"]), ("D", nets["D"]), ("F", nets["F"])]:
        ref_state, got_state = ref.state_dict(), loaded[name].state_dict()
        assert ref_state.keys() == got_state.keys()
        assert all(torch.equal(ref_state[k], got_state[k]) for k in ref_state)
    z = torch.randn(2, 128)
    c = torch.randint(0, 2, (2, 128)).float()
    assert torch.equal(loaded["G_ema"](z, c, noise_mode="const"), nets["G"](z, c, noise_mode="const"))


def test_load_a_subset_and_kinds(tmp_path, snapshot, nets):
    only_f = load_network(snapshot, names=["F"])
    assert set(only_f) == {"F"}
    with pytest.raises(CheckpointError, match="no network"):
        load_network(snapshot, names=["encoder"])
    assert read_header(save_network(tmp_path / "f.safetensors", F=nets["F"]))["kind"] == "decoder"
    assert read_header(save_network(tmp_path / "g.safetensors", G_ema=nets["G"]))["kind"] == "generator"


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_network(tmp_path / "nope.safetensors")


@pytest.mark.parametrize("cut", [0, 7, 100, 0.5, -1])
def test_truncated_file(tmp_path, snapshot, cut):
    data = snapshot.read_bytes()
    n = int(len(data) * cut) if isinstance(cut, float) else (len(data) + cut if cut < 0 else cut)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(data[:n])
    with pytest.raises(CheckpointError, match="truncated or foreign|not a network file"):
        load_network(bad)


def test_foreign_files(tmp_path):
    pkl = tmp_path / "model.pkl"
    pkl.write_bytes(b"\x80\x04\x95garbage")
    with pytest.raises(CheckpointError, match="truncated or foreign"):
        load_network(pkl)
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="not a network file"):
        load_network(other)


def _rewrite_metadata(src, dest, edit):
    """Copy a safetensors file with its JSON header edited by ``edit(header_dict)``."""
    data = src.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    edit(header)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    dest.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n:])
    return dest


def _set_class(nets):
    nets["G"]["class"] = "os.system"


def _shrink_d(nets):
    nets["D"]["kwargs"]["channel_max"] = 32


def _unknown_kwarg(nets):
    nets["G"]["kwargs"]["no_such_option"] = 1


@pytest.mark.parametrize("edit_networks,match", [
    (_set_class, "unknown class 'os.system'"),
    (_shrink_d, "do not fit Discriminator"),
    (_unknown_kwarg, "cannot build G"),
], ids=["unknown-class", "kwargs-do-not-fit-tensors", "unknown-kwarg"])
def test_tampered_network_header(tmp_path, snapshot, edit_networks, match):
    def edit(h):
        nets = json.loads(h["__metadata__"]["networks"])
        edit_networks(nets)
        h["__metadata__"]["networks"] = json.dumps(nets)
    bad = _rewrite_metadata(snapshot, tmp_path / "bad.safetensors", edit)
    with pytest.raises(CheckpointError, match=match):
        load_network(bad)


def test_newer_format_version_is_refused(tmp_path, snapshot):
    def edit(h):
        h["__metadata__"]["format_version"] = "99"
    bad = _rewrite_metadata(snapshot, tmp_path / "bad.safetensors", edit)
    with pytest.raises(CheckpointError, match="newer"):
        load_network(bad)


def test_missing_and_extra_tensors(tmp_path, nets):
    G = nets["G"]
    meta = {"format": "sgf-network", "format_version": "1", "kind": "generator",
            "networks": json.dumps({"G": {"class": "Generator", "kwargs": G.init_kwargs}})}
    state = {f"G.{k}": v.clone() for k, v in G.state_dict().items()}
    missing = dict(state)
    missing.pop("G.synthesis.b8.conv0.weight")
    save_file(missing, str(tmp_path / "missing.safetensors"), metadata=meta)
    with pytest.raises(CheckpointError, match=r"b8\.conv0\.weight"):
        load_network(tmp_path / "missing.safetensors")
    extra = dict(state)
    extra["G.synthesis.b8.conv0.sneaky"] = torch.zeros(1)
    save_file(extra, str(tmp_path / "extra.safetensors"), metadata=meta)
    with pytest.raises(CheckpointError, match="sneaky"):
        load_network(tmp_path / "extra.safetensors")
    wrong_dtype = dict(state)
    wrong_dtype["G.synthesis.latent.bias"] = wrong_dtype["G.synthesis.latent.bias"].double()
    save_file(wrong_dtype, str(tmp_path / "dtype.safetensors"), metadata=meta)
    with pytest.raises(CheckpointError, match="dtype"):
        load_network(tmp_path / "dtype.safetensors")


def test_save_is_atomic(tmp_path, nets, monkeypatch):
    dest = tmp_path / "snap.safetensors"
    dest.write_bytes(b"previous")

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("networks.checkpoint.save_file", boom)
    with pytest.raises(KeyboardInterrupt):
        save_network(dest, G=nets["G"])
    assert dest.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snap.safetensors"]


def test_save_refuses_unregistered_modules(tmp_path):
    with pytest.raises(ValueError, match="not a registered network class"):
        save_network(tmp_path / "x.safetensors", G=torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="at least one"):
        save_network(tmp_path / "x.safetensors")


def test_n_bits_zero_round_trip(tmp_path):
    nets = build_networks("tiny32", n_bits=0)
    path = save_network(tmp_path / "base.safetensors", G=nets["G"], G_ema=nets["G"], D=nets["D"], F=nets["F"])
    loaded = load_network(path)
    z = torch.randn(2, 128)
    c = torch.zeros(2, 0)
    assert torch.equal(loaded["G"](z, c, noise_mode="const"), nets["G"](z, c, noise_mode="const"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_load_to_cuda(snapshot):
    loaded = load_network(snapshot, device="cuda")
    assert next(loaded["G"].parameters()).is_cuda


# Crafted headers (issue 14): refused before anything is built, with a message naming the field.

@pytest.mark.parametrize("case", sorted(CASES))
def test_crafted_header_is_refused_naming_the_field(tmp_path, case):
    bad = crafted_network(tmp_path / "bad.safetensors", case)
    with pytest.raises(CheckpointError, match=re.escape(CASES[case].match)) as info:
        load_network(bad)
    assert str(bad) in str(info.value)
    with pytest.raises(CheckpointError, match=re.escape(CASES[case].match)):  # what generate/detect/metrics call
        read_header(bad)


def test_real_configurations_pass_the_schema():
    for preset in PRESETS:
        for net in build_networks(preset).values():
            check_kwargs(type(net).__name__, json.loads(json.dumps(net.init_kwargs)))
    G = build_networks("tiny32", which=("G",))["G"]
    check_kwargs("BakedGenerator", json.loads(json.dumps(G.bake(torch.zeros(1, G.n_bits)).init_kwargs)))
    for net in (FingerprintEncoder(n_bits=128, img_resolution=256), AutoencoderDecoder(n_bits=128, img_resolution=1024),
                DecoderWithLatent(z_dim=512, n_bits=128, img_resolution=128)):
        check_kwargs(type(net).__name__, json.loads(json.dumps(net.init_kwargs)))


@pytest.mark.parametrize("tensor", ["G_ema.synthesis.b8.conv0.weight", "G_ema.synthesis.b16.conv1.noise_const"])
def test_non_finite_weights_are_refused(tmp_path, tensor):
    bad = network_file(tmp_path / "nan.safetensors", nan_in=tensor)
    with pytest.raises(CheckpointError, match=re.escape(tensor) + " holds NaN or infinite values"):
        load_network(bad)


def test_declared_shapes_are_checked_before_reading(tmp_path, monkeypatch):
    path = network_file(tmp_path / "g.safetensors")
    rewrite_header(path, kwargs={"channel_max": 8})
    monkeypatch.setattr("networks.checkpoint._read_tensors", lambda *a: pytest.fail("tensors were read"))
    with pytest.raises(CheckpointError, match=r"do not fit Generator: .* has shape \[\d+(, \d+)*\], expected"):
        load_network(path)


def test_baked_generator_issued_from_itself_is_refused(tmp_path):
    baked = baked_file(tmp_path / "baked.safetensors", source=tmp_path / "baked.safetensors")
    with pytest.raises(CheckpointError, match="itself a baked generator"):
        load_decoder(baked)


def test_chain_of_baked_generators_is_refused(tmp_path):
    snap = network_file(tmp_path / "snap.safetensors", names=("G", "G_ema", "D", "F"))
    first = baked_file(tmp_path / "first.safetensors", source=snap, source_sha256=sha256_file(snap))
    assert load_decoder(first).file == snap
    second = baked_file(tmp_path / "second.safetensors", source=first, source_sha256=sha256_file(first))
    with pytest.raises(CheckpointError, match="first.safetensors as the snapshot .* itself a baked generator"):
        load_decoder(second)


@pytest.mark.parametrize("error", [RuntimeError("boom"), OverflowError("big"), MemoryError(), RecursionError()])
def test_build_failures_become_checkpoint_errors(tmp_path, monkeypatch, error):
    path = network_file(tmp_path / "g.safetensors")

    def explode(*args, **kwargs):
        raise error

    monkeypatch.setattr("networks.checkpoint.empty_module", explode)
    with pytest.raises(CheckpointError, match="cannot build G_ema"):
        load_network(path)


def test_save_refuses_networks_that_loading_would_refuse(tmp_path):
    G = build_networks("tiny32", which=("G",), embed_layers=33)["G"]
    with pytest.raises(ValueError, match=r"G \(Generator\) is outside .* embed_layers must be an integer in \[1, 32\]"):
        save_network(tmp_path / "g.safetensors", G=G)
    assert not (tmp_path / "g.safetensors").exists()


@pytest.mark.parametrize("values,finite", [
    ([1.0, -2.0], True),
    ([], True),
    ([3e38] * 10, True),                          # the sum overflows; the values are finite
    ([1.0, float("nan")], False),
    ([float("inf"), float("-inf")], False),       # the sum is NaN
    ([3e38, 3e38, float("inf")], False),
])
def test_finiteness_check(values, finite):
    assert _finite(torch.tensor(values, dtype=torch.float32)) is finite


@pytest.mark.parametrize("text,depth", [
    ("1", 0),
    ("[[]]", 2),
    ('{"a": [1, {"b": "[[[["}]}', 3),             # brackets inside strings do not count
    ('{"c\\"]]]": {"d": "\\\\"}}', 2),             # nor do escaped quotes end a string
    ("[" * 100_000, 100_000),
])
def test_json_depth(text, depth):
    assert json_depth(text) == depth


def test_files_written_before_the_vocabulary_change_still_load(tmp_path):
    """Older files call the bit count c_dim (G, F), fingerprint_bits (a baked G) or bits (the autoencoder), and
    the autoencoder's decoder class ImageDecoder: they load as today's networks, with the same weights."""
    import json

    from networks.autoencoder import AutoencoderDecoder
    from tests.crafted_networks import rewrite_header

    torch.manual_seed(0)
    nets = build_networks("tiny32", n_bits=8)
    cases = {"G": (nets["G"], "Generator", "c_dim"), "F": (nets["F"], "FingerprintDecoder", "c_dim"),
             "baked": (nets["G"].bake(torch.ones(1, 8)), "BakedGenerator", "fingerprint_bits"),
             "decoder": (AutoencoderDecoder(n_bits=8, img_resolution=32), "ImageDecoder", "bits")}
    for name, (net, old_class, old_kwarg) in cases.items():
        path = save_network(tmp_path / f"{name}.safetensors", **{name: net})
        kwargs = dict(net.init_kwargs)
        kwargs[old_kwarg] = kwargs.pop("n_bits")
        rewrite_header(path, metadata={"networks": json.dumps({name: {"class": old_class, "kwargs": kwargs}})})
        loaded = load_network(path)[name]
        assert type(loaded) is type(net) and loaded.n_bits == 8
        for key, value in net.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), (name, key)
