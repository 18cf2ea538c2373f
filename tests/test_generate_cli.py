"""generate.py end to end on tiny networks: images (per-seed determinism, flags), issue (files, registry,
re-runs, two processes at once), registry export/import, bad inputs."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import generate
from attribution.registry import Registry
from dnnlib.util import sha256_file
from networks import build_networks, load_network, save_network
from torch_utils.images import to_uint8

REPO = Path(__file__).resolve().parents[1]


def cli(*args):
    return CliRunner().invoke(generate.cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory) -> Path:
    """An untrained tiny32 snapshot with 32-bit fingerprints."""
    torch.manual_seed(0)
    nets = build_networks("tiny32", n_bits=32)
    path = tmp_path_factory.mktemp("snap") / "network-snapshot-000000.safetensors"
    return save_network(path, G=nets["G"], G_ema=nets["G"], D=nets["D"], F=nets["F"])


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_parse_seeds():
    assert generate.parse_seeds("0-3,7,2") == [0, 1, 2, 3, 7]
    for bad in ("a-b", "3-1", "", "1,,2", str(2 ** 32)):
        with pytest.raises(generate.GenerateError):
            generate.parse_seeds(bad)


def test_images_depend_only_on_their_seed(tmp_path, snapshot):
    r = cli("images", "--network", snapshot, "--seeds", "0-4", "--outdir", tmp_path / "a", "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["images.csv"] + [f"seed{i:04d}.png" for i in range(5)]
    assert pixels(tmp_path / "a" / "seed0000.png").shape == (32, 32, 3)
    r = cli("images", "--network", snapshot, "--seeds", "3", "--outdir", tmp_path / "b", "--device", "cpu")
    assert r.exit_code == 0
    np.testing.assert_array_equal(pixels(tmp_path / "a" / "seed0003.png"), pixels(tmp_path / "b" / "seed0003.png"))
    rows = list(csv.DictReader(open(tmp_path / "a" / "images.csv")))
    z, c = generate.latent_and_fingerprint(2, 128, 32)
    assert rows[2]["fingerprint"] == "".join(map(str, c)) and len({r["fingerprint"] for r in rows}) == 5
    # The image is G_ema(z, c) of the release's draw, quantised.
    G = load_network(snapshot, names=["G_ema"])["G_ema"]
    img = G(torch.from_numpy(z).float()[None], torch.from_numpy(c).float()[None], noise_mode="const")
    want = ((img[0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    np.testing.assert_array_equal(pixels(tmp_path / "a" / "seed0002.png"), want)


def test_identical_latent_fingerprint_and_fixed_fingerprint(tmp_path, snapshot):
    bits = "01" * 16
    assert cli("images", "--network", snapshot, "--seeds", "0-2", "--outdir", tmp_path / "fp",
               "--fingerprint", bits).exit_code == 0
    assert {r["fingerprint"] for r in csv.DictReader(open(tmp_path / "fp" / "images.csv"))} == {bits}
    assert cli("images", "--network", snapshot, "--seeds", "5-7", "--outdir", tmp_path / "w",
               "--identical-watermark").exit_code == 0
    assert len({r["fingerprint"] for r in csv.DictReader(open(tmp_path / "w" / "images.csv"))}) == 1
    assert cli("images", "--network", snapshot, "--seeds", "5-7", "--outdir", tmp_path / "z",
               "--identical-latent", "--fingerprint", bits).exit_code == 0
    imgs = [pixels(tmp_path / "z" / f"seed{i:04d}.png") for i in (5, 6, 7)]
    assert all(np.array_equal(imgs[0], x) for x in imgs)          # same z and c: same image


def test_issue_bakes_registers_and_never_reissues(tmp_path, snapshot):
    reg_path, out = tmp_path / "reg.sqlite", tmp_path / "issued"
    r = cli("issue", "--network", snapshot, "--registry", reg_path, "--users", "alice,bob", "--outdir", out,
            "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ["alice.safetensors", "bob.safetensors"]
    with Registry(reg_path, readonly=True) as reg:
        entries = {e.user: e for e in reg.entries()}
        assert reg.min_distance == 8 and reg.n_bits == 32
    G = load_network(snapshot, names=["G_ema"])["G_ema"]
    z = torch.randn(2, G.z_dim)
    for user, e in entries.items():
        assert e.file_sha256 == sha256_file(out / f"{user}.safetensors") and e.source == str(snapshot.resolve())
        baked = load_network(out / f"{user}.safetensors")["G"]
        c = torch.tensor([[float(b) for b in e.bits]])
        torch.testing.assert_close(baked(z, noise_mode="const"), G(z, c.expand(2, -1), noise_mode="const"),
                                   atol=1e-5, rtol=0)
    assert sum(a != b for a, b in zip(entries["alice"].bits, entries["bob"].bits)) >= 8
    # Re-running keeps alice (same file, same fingerprint) and issues carol; --count continues the numbering.
    before = sha256_file(out / "alice.safetensors")
    r = cli("issue", "--network", snapshot, "--registry", reg_path, "--users", "alice,carol", "--outdir", out)
    assert r.exit_code == 0 and "alice: already issued" in r.output and "issued 1 generator(s)" in r.output
    assert sha256_file(out / "alice.safetensors") == before
    r = cli("issue", "--network", snapshot, "--registry", reg_path, "--count", "2", "--outdir", out)
    assert r.exit_code == 0, r.output
    assert (out / "user000004.safetensors").is_file() and (out / "user000005.safetensors").is_file()
    # The baked generator generates (its fingerprint is fixed).
    r = cli("images", "--network", out / "bob.safetensors", "--seeds", "0-1", "--outdir", tmp_path / "b")
    assert r.exit_code == 0 and (tmp_path / "b" / "seed0001.png").is_file()
    r = cli("images", "--network", out / "bob.safetensors", "--network", out / "alice.safetensors", "--seeds", "0-2",
            "--outdir", tmp_path / "many")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == ["alice", "bob"]
    np.testing.assert_array_equal(pixels(tmp_path / "many" / "bob" / "seed0001.png"),
                                  pixels(tmp_path / "b" / "seed0001.png"))
    r = cli("images", "--network", out / "bob.safetensors", "--seeds", "0", "--outdir", tmp_path / "b2",
            "--fingerprint", "1" * 32)
    assert r.exit_code == 1 and "takes no fingerprint input" in r.output


def test_export_import_registry(tmp_path, snapshot):
    reg_path = tmp_path / "reg.sqlite"
    assert cli("issue", "--network", snapshot, "--registry", reg_path, "--count", "3", "--outdir",
               tmp_path / "g").exit_code == 0
    r = cli("export-registry", "--registry", reg_path, "--out", tmp_path / "reg.csv")
    assert r.exit_code == 0 and "wrote 3 entries" in r.output
    r = cli("import-registry", "--registry", tmp_path / "copy.sqlite", "--csv", tmp_path / "reg.csv")
    assert r.exit_code == 0 and "holds 3" in r.output
    r = cli("import-registry", "--registry", tmp_path / "copy.sqlite", "--csv", tmp_path / "reg.csv")
    assert r.exit_code == 1 and "nothing added" in r.output
    r = cli("export-registry", "--registry", tmp_path / "missing.sqlite", "--out", tmp_path / "x.csv")
    assert r.exit_code == 1 and "no such registry" in r.output and not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize("args,message,code", [
    (["--users", "a", "--count", "2"], "exactly one of", 2),
    ([], "exactly one of", 2),
    (["--users", "a/b"], "not allowed", 1),
    (["--users", "a,a"], "twice", 1),
])
def test_issue_bad_inputs(tmp_path, snapshot, args, message, code):
    r = cli("issue", "--network", snapshot, "--registry", tmp_path / "r.sqlite", "--outdir", tmp_path / "o", *args)
    assert r.exit_code == code and message in r.output
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


def test_images_of_a_plain_snapshot(tmp_path):
    """A plain run's G (--bits 0) is sampled like any other: the same seed, the same z as a user's image."""
    plain = build_networks("tiny32", n_bits=0, which=("G",))["G"]
    path = save_network(tmp_path / "plain.safetensors", G_ema=plain)
    r = cli("images", "--network", path, "--seeds", "3,5", "--outdir", tmp_path / "out")
    assert r.exit_code == 0, r.output
    with open(tmp_path / "out" / "images.csv", newline="") as f:
        assert [(row["seed"], row["fingerprint"]) for row in csv.DictReader(f)] == [("3", ""), ("5", "")]
    z = torch.from_numpy(generate.latent_and_fingerprint(5, plain.z_dim, 0)[0]).float()[None]
    want = to_uint8(plain(z, torch.zeros(1, 0), noise_mode="const"))[0]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "seed0005.png")), want)


def test_issue_refuses_networks_without_fingerprints(tmp_path, snapshot):
    plain = build_networks("tiny32", n_bits=0, which=("G",))["G"]
    path = save_network(tmp_path / "plain.safetensors", G=plain)
    r = cli("issue", "--network", path, "--registry", tmp_path / "r.sqlite", "--users", "a", "--outdir", tmp_path / "o")
    assert r.exit_code == 1 and "takes no fingerprint" in r.output
    r = cli("issue", "--network", tmp_path / "none.safetensors", "--registry", tmp_path / "r.sqlite", "--users", "a",
            "--outdir", tmp_path / "o")
    assert r.exit_code == 1 and "no such file" in r.output
    with Registry(tmp_path / "r.sqlite", readonly=True) as reg:
        assert len(reg) == 0


def test_two_issuing_processes_at_once(tmp_path, snapshot):
    reg_path = tmp_path / "reg.sqlite"
    procs = [subprocess.Popen([sys.executable, "generate.py", "issue", "--network", str(snapshot), "--registry",
                               str(reg_path), "--users", ",".join(f"{p}{i}" for i in range(6)), "--outdir",
                               str(tmp_path / "out"), "--device", "cpu"], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for p in ("a", "b")]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    with Registry(reg_path, readonly=True) as reg:
        entries = reg.entries()
    assert len(entries) == 12 and len({e.bits for e in entries}) == 12
    bits = np.array([[int(b) for b in e.bits] for e in entries])
    d = (bits[:, None] != bits[None]).sum(-1) + np.eye(12, dtype=int) * 99
    assert d.min() >= 8
    assert all(sha256_file(e.file) == e.file_sha256 for e in entries)


def test_issue_refuses_a_file_it_does_not_own_and_records_absolute_paths(tmp_path, snapshot, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = cli("issue", "--network", snapshot, "--registry", "a.sqlite", "--users", "alice", "--outdir", "issued")
    assert r.exit_code == 0, r.output
    with Registry(tmp_path / "a.sqlite", readonly=True) as reg:
        alice = reg.entry("alice")
    assert alice.file == str((tmp_path / "issued" / "alice.safetensors").resolve()) and Path(alice.file).is_absolute()
    before = sha256_file(tmp_path / "issued" / "alice.safetensors")
    # Another registry issuing into the same folder: refused before anybody is issued, the file left alone.
    for args in (["--users", "carol,alice"], ["--count", "1"]):
        name = "alice" if "--users" in args else "user000001"
        if name == "user000001":
            (tmp_path / "issued" / "user000001.safetensors").write_bytes(b"someone else's")
        r = cli("issue", "--network", snapshot, "--registry", "b.sqlite", *args, "--outdir", "issued")
        assert r.exit_code == 1, r.output
        assert f"{(tmp_path / 'issued' / f'{name}.safetensors').resolve()} already exists" in r.output
        assert "holds no generator" in r.output and "nothing was issued" in r.output
        with Registry(tmp_path / "b.sqlite", readonly=True) as reg:
            assert len(reg) == 0
        assert not (tmp_path / "issued" / "carol.safetensors").exists()
    assert sha256_file(tmp_path / "issued" / "alice.safetensors") == before == alice.file_sha256
    # Its own registry keeps alice (same file) and issues carol; a file appearing between the check and the
    # write (another process) is refused inside the transaction, which then records nothing.
    r = cli("issue", "--network", snapshot, "--registry", "a.sqlite", "--users", "alice,carol", "--outdir", "issued")
    assert r.exit_code == 0 and "alice: already issued" in r.output
    with Registry(tmp_path / "a.sqlite") as reg:
        late = tmp_path / "issued" / "dave.safetensors"
        refuse = generate.Registry.issue

        def issue_after_someone_wrote(self, user, *a, **k):
            late.write_bytes(b"written meanwhile")
            return refuse(self, user, *a, **k)
        monkeypatch.setattr(generate.Registry, "issue", issue_after_someone_wrote)
        with pytest.raises(generate.GenerateError, match="already exists"):
            generate.issue_generators(snapshot, reg, ["dave"], tmp_path / "issued", log=lambda m: None)
        assert reg.entry("dave") is None and late.read_bytes() == b"written meanwhile"


def test_images_checks_every_network_before_writing(tmp_path, snapshot):
    r = cli("issue", "--network", snapshot, "--registry", tmp_path / "r.sqlite", "--users", "bob", "--outdir",
            tmp_path / "issued")
    assert r.exit_code == 0, r.output
    bits = "01" * 16
    # The snapshot would take --fingerprint, the baked generator after it cannot: nothing is written.
    r = cli("images", "--network", snapshot, "--network", tmp_path / "issued" / "bob.safetensors", "--seeds", "0-1",
            "--outdir", tmp_path / "out", "--fingerprint", bits)
    assert r.exit_code == 1 and "bob.safetensors: this generator takes no fingerprint input" in r.output
    assert not (tmp_path / "out").exists()
    # A fingerprint of the wrong length for the second network: named, nothing written.
    nets16 = build_networks("tiny32", n_bits=16, which=("G",))
    g16 = save_network(tmp_path / "g16.safetensors", G=nets16["G"])
    r = cli("images", "--network", snapshot, "--network", g16, "--seeds", "0-1", "--outdir", tmp_path / "out",
            "--fingerprint", bits)
    assert r.exit_code == 1 and "g16.safetensors: a fingerprint must be 16 characters" in r.output, r.output
    assert not (tmp_path / "out").exists()
    assert generate.fingerprint_input_bits(snapshot) == 32 and generate.fingerprint_input_bits(g16) == 16
    assert generate.fingerprint_input_bits(tmp_path / "issued" / "bob.safetensors") == 0


def tree_state(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative name -> bytes): to show that a refused command changed nothing."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def site(tmp_path, snapshot):
    """A folder with a registry, a foreign text file, a folder of images written before, a folder holding
    the network, and a thesis folder with unrelated files."""
    r = cli("issue", "--network", snapshot, "--registry", tmp_path / "reg.sqlite", "--users", "bob", "--outdir",
            tmp_path / "issued")
    assert r.exit_code == 0, r.output
    (tmp_path / "notes.txt").write_text("my notes\n")
    assert cli("images", "--network", snapshot, "--seeds", "0-2", "--outdir", tmp_path / "old").exit_code == 0
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "chapter1.tex").write_text("\\chapter{One}\n")
    return tmp_path


@pytest.mark.parametrize("args, message", [
    (["export-registry", "--registry", "{t}/reg.sqlite", "--out", "{t}/reg.sqlite"], "is the input --registry"),
    (["export-registry", "--registry", "{t}/reg.sqlite", "--out", "{t}/notes.txt"], "not a registry CSV"),
    (["import-registry", "--registry", "{t}/notes.txt", "--csv", "{t}/notes.txt"], "is the input --csv"),
    (["images", "--network", "{snap}", "--seeds", "0-1", "--outdir", "{t}/old"], "is not empty"),
    (["images", "--network", "{snap}", "--seeds", "0-1", "--outdir", "{t}/thesis", "--force"], "did not write"),
    (["images", "--network", "{t}/issued/bob.safetensors", "--seeds", "0", "--outdir", "{t}/issued", "--force"],
     "contains the input --network"),
    (["images", "--network", "{snap}", "--seeds", "0", "--outdir", "{t}/notes.txt", "--force"], "is a file"),
    (["images", "--network", "{snap}", "--seeds", "0-4294967295", "--outdir", "{t}/new"], "at most 1,000,000"),
    (["issue", "--network", "{snap}", "--registry", "{snap}", "--users", "x", "--outdir", "{t}/o"],
     "is the input --network"),
    (["issue", "--network", "{snap}", "--registry", "{t}/reg.sqlite", "--users", "", "--outdir", "{t}/o"],
     "--users names nobody"),
    (["issue", "--network", "{snap}", "--registry", "{t}/reg.sqlite", "--users", " , ", "--outdir", "{t}/o"],
     "--users names nobody"),
])
def test_refused_outputs_leave_every_file_as_it_was(site, snapshot, args, message):
    before, snap_before = tree_state(site), snapshot.read_bytes()
    r = cli(*[a.format(t=site, snap=snapshot) for a in args])
    assert r.exit_code in (1, 2) and message in r.output, r.output                # 2: click's usage error
    assert r.exit_code == 2 or (r.output.count("\n") == 1 and r.output.startswith("error: "))  # one line
    assert tree_state(site) == before and snapshot.read_bytes() == snap_before
    assert not (site / "new").exists() and not (site / "o").exists()
    assert not [p for p in site.iterdir() if p.name.startswith(".")]             # no temporary left behind


def test_images_force_replaces_a_folder_it_wrote_as_a_whole(site, snapshot):
    r = cli("images", "--network", snapshot, "--seeds", "5-6", "--outdir", site / "old", "--force")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (site / "old").iterdir()) == ["images.csv", "seed0005.png", "seed0006.png"]
    assert [row["seed"] for row in csv.DictReader(open(site / "old" / "images.csv"))] == ["5", "6"]
    # An empty folder is used as it is; a failure half-way leaves the old folder untouched.
    (site / "empty").mkdir()
    assert cli("images", "--network", snapshot, "--seeds", "0", "--outdir", site / "empty").exit_code == 0
    before = tree_state(site / "old")
    r = cli("images", "--network", snapshot, "--network", site / "notes.txt", "--seeds", "0", "--outdir", site / "old",
            "--force")
    assert r.exit_code == 1 and tree_state(site / "old") == before
    assert not [p for p in site.iterdir() if p.name.startswith(".")]


def test_issue_count_is_bounded_before_any_work(tmp_path, snapshot):
    r = cli("issue", "--network", snapshot, "--registry", tmp_path / "r.sqlite", "--count", "1000000000",
            "--outdir", tmp_path / "o")
    assert r.exit_code == 2 and "1000000000 is not in the range" in r.output
    r = cli("issue", "--network", snapshot, "--registry", tmp_path / "r.sqlite", "--users",
            ",".join(f"u{i}" for i in range(generate.MAX_ISSUE + 1)), "--outdir", tmp_path / "o")
    assert r.exit_code == 1 and "at most 10,000 per call" in r.output
    assert not (tmp_path / "r.sqlite").exists() and not (tmp_path / "o").exists()


def test_check_registry(tmp_path, snapshot):
    reg_path = tmp_path / "reg.sqlite"
    assert cli("issue", "--network", snapshot, "--registry", reg_path, "--count", "3", "--outdir",
               tmp_path / "g").exit_code == 0
    r = cli("check-registry", "--registry", reg_path)
    assert r.exit_code == 0 and "full check passed" in r.output, r.output
    # Two fingerprints 1 bit apart (imported without the distance check) break the registry's own rule.
    rows = ["user,bits", "a," + "0" * 32, "b," + "0" * 31 + "1"]
    (tmp_path / "close.csv").write_text("\n".join(rows) + "\n")
    assert cli("import-registry", "--registry", tmp_path / "close.sqlite", "--csv", tmp_path / "close.csv",
               "--min-distance", "8", "--no-check-distance").exit_code == 0
    assert cli("check-registry", "--registry", tmp_path / "close.sqlite", "--quick").exit_code == 0
    r = cli("check-registry", "--registry", tmp_path / "close.sqlite")
    assert r.exit_code == 1 and "error: " in r.output and "'a'" in r.output and "'b'" in r.output, r.output
    assert sorted(p.name for p in tmp_path.iterdir() if "close" in p.name) == ["close.csv", "close.sqlite"]
