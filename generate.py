"""Generate images, and issue per-user fingerprinted generators recorded in a registry.

\b
Images from a training snapshot (G_ema; a random fingerprint per seed unless --fingerprint) or a
baked per-user generator, one PNG per seed:
  python generate.py images --network runs/.../network-snapshot-000052.safetensors --seeds 0-99 --outdir out/images
  python generate.py images --network issued/alice.safetensors --seeds 0-15 --outdir out/alice
\b
Issue generators (a fresh fingerprint each, baked into the weights, recorded in the registry):
  python generate.py issue --network runs/.../network-snapshot-000052.safetensors --registry registry.sqlite \\
      --users alice,bob --outdir issued
  python generate.py issue --network SNAPSHOT --registry registry.sqlite --count 100 --outdir issued
\b
Check a registry (schema, rules and, in full, every pair of fingerprints against the minimum distance):
  python generate.py check-registry --registry registry.sqlite
\b
The registry as CSV (export, or import: all rows or none):
  python generate.py export-registry --registry registry.sqlite --out registry.csv
  python generate.py import-registry --registry other.sqlite --csv registry.csv
"""

from __future__ import annotations

import os

# Before torch and faiss load OpenMP: waiting threads yield the cores (torch_utils/ops/hamming.py says why).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import csv
import re
import sys
from pathlib import Path

import click
import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from attribution.registry import CSV_FIELDS, DEFAULT_PATH, MAX_ISSUE, Registry, RegistryError, check_user_name
from data.fingerprint_dataset import bits_to_str, parse_bits
from dnnlib.cli import FiniteFloat, device_param, fail
from dnnlib.release_cli import ReleaseGroup
from dnnlib.util import (
    OutputPathError,
    atomic_dir,
    check_outputs,
    csv_header_is,
    refuse_foreign,
    sha256_file,
)
from networks.checkpoint import CheckpointError, load_network, read_header, save_network
from networks.stylegan2 import BakedGenerator, takes_fingerprint
from networks.stylegan2_ada import SG2Generator
from torch_utils.images import to_uint8

MAX_SEEDS = 1_000_000            # images of one generate.py images call (split larger jobs)
IMAGES_CSV_COLUMNS = ("seed", "file", "fingerprint")


class GenerateError(ValueError):
    """A bad --network, --seeds, --fingerprint or --users."""


def parse_seeds(text: str, max_seeds: int = MAX_SEEDS) -> list[int]:
    """'0-3,7' -> [0, 1, 2, 3, 7] (ranges inclusive, order kept, duplicates dropped); at most ``max_seeds``."""
    ranges: list[tuple[int, int]] = []
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise GenerateError(f"bad seed list {text!r}: use numbers and ranges such as 0-99,120")
        lo, hi = int(m.group(1)), int(m.group(2) if m.group(2) is not None else m.group(1))
        if hi < lo:
            raise GenerateError(f"bad seed range {part!r}: the end is below the start")
        if hi >= 2 ** 32:
            raise GenerateError(f"seed {hi} is too large (seeds are below 2**32)")
        ranges.append((lo, hi))
    total = sum(hi - lo + 1 for lo, hi in ranges)  # counted before anything is built
    if total > max_seeds:
        raise GenerateError(f"--seeds {text!r} names {total:,} seeds; at most {max_seeds:,} per call: split the "
                            "range over several calls (image k depends only on seed k)")
    return list(dict.fromkeys(s for lo, hi in ranges for s in range(lo, hi + 1)))


def load_generator(path: str | os.PathLike, device: str = "cpu") -> torch.nn.Module:
    """G_ema of a snapshot or generator file, or the G of a baked generator."""
    header = read_header(path)
    nets = header["networks"]
    name = "G_ema" if "G_ema" in nets else "G" if "G" in nets else None
    if name is None:
        raise CheckpointError(f"{path}: holds no generator (kind {header['kind']!r}, networks {list(nets)})")
    return load_network(path, device=device, names=[name])[name]


def fingerprint_input_bits(path: str | os.PathLike) -> int:
    """The fingerprint input length of ``load_generator(path)``'s network, read from the header (0: baked or plain)."""
    header = read_header(path)
    nets = header["networks"]
    name = "G_ema" if "G_ema" in nets else "G" if "G" in nets else None
    if name is None:
        raise CheckpointError(f"{path}: holds no generator (kind {header['kind']!r}, networks {list(nets)})")
    spec = nets[name]
    if spec["class"] == "BakedGenerator":
        return 0
    if "n_bits" in spec["kwargs"]:
        return int(spec["kwargs"]["n_bits"])
    return int(load_generator(path).n_bits) if takes_fingerprint(load_generator(path)) else 0


def latent_and_fingerprint(seed: int, z_dim: int, n_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """The release's draw: RandomState(seed) gives z ~ N(0, I), then c ~ uniform bits."""
    rs = np.random.RandomState(seed)
    z = rs.randn(z_dim)
    c = rs.randint(0, 2, size=n_bits) if n_bits else np.zeros(0)
    return z, c


@torch.no_grad()
def generate_images(G, seeds: list[int], outdir: Path, *, fingerprint: np.ndarray | None = None,
                    identical_latent: bool = False, identical_fingerprint: bool = False, noise_mode: str = "const",
                    device: str = "cpu", progress: bool = True, truncation_psi: float = 1.0) -> int:
    """Write ``outdir/seed%04d.png`` per seed and ``outdir/images.csv`` (seed, file, fingerprint), row by row;
    returns the number of images. ``outdir`` is a folder of its own (the CLI writes into a temporary one).

    Image k depends only on seed k (and the flags): every image is computed alone (batch 1), from z and c
    drawn on the CPU by ``latent_and_fingerprint``, so the seed list and its order change nothing; CPU and
    CUDA agree up to float rounding (an 8-bit level here and there). ``truncation_psi`` applies to an imported
    standard StyleGAN2 (``SG2Generator``: w = w_avg + psi (w - w_avg)); the fingerprinted networks have no mapping.
    """
    outdir.mkdir(parents=True, exist_ok=True)
    n_bits = int(G.n_bits) if takes_fingerprint(G) else 0
    first_z, first_c = latent_and_fingerprint(seeds[0], G.z_dim, n_bits)
    with open(outdir / "images.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=IMAGES_CSV_COLUMNS)
        writer.writeheader()
        for seed in tqdm(seeds, desc="images", unit="img", disable=not progress, file=sys.stderr):
            z, c = latent_and_fingerprint(seed, G.z_dim, n_bits)
            if identical_latent:
                z = first_z
            if identical_fingerprint:
                c = first_c
            if fingerprint is not None:
                c = fingerprint
            zt = torch.from_numpy(z).float()[None].to(device)
            if isinstance(G, SG2Generator):         # an imported standard StyleGAN2 (NVlabs pickle)
                img = G(zt, truncation_psi=truncation_psi, noise_mode=noise_mode)
            elif isinstance(G, BakedGenerator):     # its fingerprint is in its weights
                img = G(zt, noise_mode=noise_mode)
            else:                                   # a snapshot's G_ema: c of n_bits (none for a plain run)
                img = G(zt, torch.from_numpy(np.asarray(c)).float()[None].to(device), noise_mode=noise_mode)
            name = f"seed{seed:04d}.png"
            Image.fromarray(to_uint8(img)[0]).save(outdir / name, format="PNG")
            writer.writerow({"seed": seed, "file": name, "fingerprint": bits_to_str(c) if n_bits else ""})
    return len(seeds)


def _is_images_folder(folder: Path) -> bool:
    """A folder written by ``generate.py images``: images.csv with our columns and seed*.png files only, or
    (several --network) subfolders of that kind."""
    entries = list(folder.iterdir())
    if (folder / "images.csv").is_file():
        return (csv_header_is(IMAGES_CSV_COLUMNS)(folder / "images.csv")
                and all(p.name == "images.csv" or (re.fullmatch(r"seed\d{4,}\.png", p.name) and p.is_file()
                                                    and not p.is_symlink()) for p in entries))
    return bool(entries) and all(p.is_dir() and not p.is_symlink() and (p / "images.csv").is_file()
                                 and _is_images_folder(p) for p in entries)


def check_images_outdir(outdir: Path, force: bool, networks) -> None:
    """--outdir is new, empty, or (with --force) a folder that generate.py images wrote; never holds an input."""
    check_outputs({"--outdir": outdir}, {"--network": list(networks)})
    if outdir.is_symlink() or (outdir.exists() and not outdir.is_dir()):
        raise OutputPathError(f"--outdir {outdir} exists and is not a folder; refusing to replace it: choose "
                              "another --outdir")
    if not outdir.exists() or not any(outdir.iterdir()):
        return
    if not force:
        raise OutputPathError(f"--outdir {outdir} is not empty; choose another --outdir, or pass --force to "
                              "replace a folder that generate.py images wrote (as a whole, once the new one is "
                              "complete)")
    if not _is_images_folder(outdir):
        raise OutputPathError(f"--outdir {outdir} holds files that generate.py images did not write; refusing to "
                              "replace it: choose another --outdir")


def issue_generators(network: Path, registry: Registry, users: list[str], outdir: Path, *,
                     min_distance: int | None = None, device: str = "cpu", log=print) -> list[dict]:
    """Bake a fresh registered fingerprint into G_ema for each new user; users already registered are kept.

    Each generator is written to ``outdir/<user>.safetensors`` inside the registry transaction that
    records it (``Registry.issue``): a failure leaves neither a row without its file nor a half-written
    file. The file records the user and the issuing snapshot (path and SHA-256), not the fingerprint.
    A new user's destination file must not exist yet (it would belong to another registry, or to nobody):
    that is refused before anybody is issued, and the registry records the file's absolute path.
    """
    G = load_generator(network, device)
    if not takes_fingerprint(G):
        raise GenerateError(f"{network}: its generator takes no fingerprint (a baked or plain StyleGAN2 "
                            "generator); issue from a fingerprinted training snapshot")
    source = str(Path(network).resolve())
    source_sha = sha256_file(network)

    def destination(user: str) -> Path:
        return (outdir / f"{user}.safetensors").resolve()

    def refuse_existing(dest: Path, user: str) -> None:
        if dest.exists() or dest.is_symlink():
            raise GenerateError(f"{dest} already exists, but {registry.path} holds no generator for {user!r} (a "
                                "file issued from another registry?); refusing to overwrite it: pass another "
                                "--outdir or move the file away (nothing was issued)")

    for user in users:  # Every destination is checked before anybody is issued.
        if registry.entry(user) is None:
            refuse_existing(destination(user), user)
    outdir.mkdir(parents=True, exist_ok=True)
    done = []
    for user in users:
        existing = registry.entry(user)
        if existing is not None:
            log(f"{user}: already issued on {existing.issued_at} ({existing.file}); kept, not reissued")
            done.append({"user": user, "status": "kept", "file": existing.file, "bits": existing.bits})
            continue

        def write_file(bits: np.ndarray, user=user) -> tuple[str, str]:
            c = torch.from_numpy(bits.astype(np.float32))[None].to(device)
            dest = destination(user)
            refuse_existing(dest, user)  # Again inside the transaction: another process may have written it since.
            save_network(dest, extra={"issued_to": user, "source": source, "source_sha256": source_sha},
                         G=G.bake(c))
            return str(dest), sha256_file(dest)

        entry = registry.issue(user, G.n_bits, write_file, source=source, source_sha256=source_sha,
                               min_distance=min_distance)
        log(f"{user}: issued {entry.file} (fingerprint {entry.bits[:16]}..., registry id {entry.id})")
        done.append({"user": user, "status": "issued", "file": entry.file, "bits": entry.bits})
    return done


@click.group(cls=ReleaseGroup, help=__doc__)
def cli():
    pass


@cli.command(help="Generate one PNG per seed (seed0000.png, ...) and images.csv; with several --network, into "
             "one subfolder each, named after the file.")
@click.option("--network", "networks", type=click.Path(path_type=Path), required=True, multiple=True,
              help="Training snapshot or generator file (G_ema), or a baked per-user generator (repeatable).")
@click.option("--seeds", required=True, help="Seeds, e.g. 0-99 or 0,5,10-12.")
@click.option("--outdir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="New or empty folder (with --force: a folder generate.py images wrote, replaced as a whole).")
@click.option("--force", is_flag=True, help="Replace an --outdir that generate.py images wrote before (only once "
              "the new images are complete; a folder holding anything else is never replaced).")
@click.option("--fingerprint", help="One fingerprint for all images: 0/1 characters, or 'random' (per seed, the "
              "default). Not for baked generators, whose fingerprint is fixed.")
@click.option("--identical-latent", is_flag=True, help="Every image uses the first seed's latent z.")
@click.option("--identical-fingerprint", "--identical-watermark", "identical_fingerprint", is_flag=True,
              help="Every image uses the first seed's fingerprint c.")
@click.option("--noise-mode", type=click.Choice(["const", "random", "none"]), default="const", show_default=True,
              help="Per-pixel noise: the stored buffers ('const', deterministic), fresh draws, or none.")
@click.option("--trunc", "truncation_psi", type=FiniteFloat(), default=1.0, show_default=True,
              help="Truncation psi of an imported standard StyleGAN2 (legacy.py on an NVlabs pickle); the "
                   "fingerprinted networks have no mapping to truncate.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
def images(networks, seeds, outdir, force, fingerprint, identical_latent, identical_fingerprint, noise_mode,
           truncation_psi, device):
    device = device_param(device)
    try:
        seed_list = parse_seeds(seeds)
        check_images_outdir(outdir, force, networks)
        stems = [Path(n).name.removesuffix(".safetensors") for n in networks]
        if len(set(stems)) != len(stems):
            raise GenerateError("several --network files share a name; their subfolders would collide")
        fixed_of = []
        for network in networks:  # Check every file, and --fingerprint against it, before writing anything.
            n_bits = fingerprint_input_bits(network)
            fixed = None
            if fingerprint is not None and fingerprint != "random":
                if n_bits == 0:
                    raise GenerateError(f"{network}: this generator takes no fingerprint input (baked or plain); "
                                        "leave out --fingerprint")
                try:
                    fixed = parse_bits(fingerprint, n_bits).numpy()
                except ValueError as e:
                    raise GenerateError(f"{network}: {e}") from None
            fixed_of.append(fixed)
            nets = read_header(network)["networks"]
            if truncation_psi != 1.0 and nets.get("G_ema", nets.get("G", {})).get("class") != "SG2Generator":
                raise GenerateError(f"{network}: --trunc applies to an imported standard StyleGAN2 only (this "
                                    "network has no mapping network to truncate); leave it out")
        many = len(networks) > 1
        with atomic_dir(outdir) as tmp:  # --outdir appears, or is replaced, only once every image is written.
            for network, stem, fixed in tqdm(list(zip(networks, stems, fixed_of)), desc="generators", unit="net",
                                             disable=not many, file=sys.stderr):
                G = load_generator(network, device)
                generate_images(G, seed_list, tmp / stem if many else tmp, fingerprint=fixed,
                                identical_latent=identical_latent, identical_fingerprint=identical_fingerprint,
                                noise_mode=noise_mode, device=device, progress=not many,
                                truncation_psi=truncation_psi)
    except (GenerateError, CheckpointError, OutputPathError, ValueError, OSError) as e:
        fail(e)
    if many:
        click.echo(f"wrote {len(seed_list)} images each for {len(networks)} generators into {outdir}")
    else:
        click.echo(f"wrote {len(seed_list)} images to {outdir}")


@cli.command(help="Issue per-user generators: a fresh fingerprint each, baked in, recorded in the registry.")
@click.option("--network", type=click.Path(path_type=Path), required=True,
              help="Fingerprinted training snapshot (its G_ema is baked).")
@click.option("--registry", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_PATH, show_default=True,
              help="Registry file (created when missing).")
@click.option("--users", help="Comma-separated user names (letters, digits, . _ @ + -).")
@click.option("--count", type=click.IntRange(1, MAX_ISSUE), help="Issue this many, named user000001, user000002, "
              f"... (at most {MAX_ISSUE:,} per call).")
@click.option("--outdir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for <user>.safetensors (a new user's file must not exist there yet; the registry "
              "records its absolute path).")
@click.option("--min-distance", type=click.IntRange(min=0), default=None,
              help="Smallest Hamming distance between two registered fingerprints (fixed when the registry is "
              "created; default a quarter of the bits, 32 of 128).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
def issue(network, registry, users, count, outdir, min_distance, device):
    if (users is None) == (count is None):
        raise click.UsageError("give exactly one of --users a,b,c and --count N")
    device = device_param(device)
    try:
        if not network.is_file():
            raise GenerateError(f"{network}: no such file")
        check_outputs({"--registry": registry}, {"--network": network})
        named = None if users is None else [u.strip() for u in users.split(",") if u.strip()]
        if named is not None and not named:
            raise GenerateError("--users names nobody: give comma-separated user names, e.g. --users alice,bob")
        if named is not None and len(named) > MAX_ISSUE:
            raise GenerateError(f"--users names {len(named):,} users; at most {MAX_ISSUE:,} per call: issue in several "
                                "calls")
        with Registry(registry) as reg:
            names = named if named is not None else reg.next_user_names(count)
            for name in names:
                check_user_name(name)
            if len(set(names)) != len(names):
                raise GenerateError("--users names somebody twice")
            done = issue_generators(network, reg, names, outdir, min_distance=min_distance, device=device,
                                    log=lambda m: click.echo(m, err=True))
            total = len(reg)
    except (GenerateError, RegistryError, CheckpointError, OutputPathError, ValueError, OSError) as e:
        fail(e)
    issued = sum(d["status"] == "issued" for d in done)
    click.echo(f"issued {issued} generator(s) into {outdir} ({len(done) - issued} already issued); "
               f"{registry} holds {total}")


@cli.command("export-registry", help="Write the registry as CSV (user, bits, file, ...).")
@click.option("--registry", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_PATH, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="New CSV file, or one export-registry wrote before (replaced atomically).")
def export_registry(registry, out):
    try:
        check_outputs({"--out": out}, {"--registry": registry})
        refuse_foreign(out, "--out", "registry CSV of export-registry", csv_header_is(CSV_FIELDS))
        with Registry(registry, readonly=True) as reg:
            n = reg.export_csv(out)
    except (RegistryError, OutputPathError, OSError) as e:
        fail(e)
    click.echo(f"wrote {n} entries to {out}")


@cli.command("check-registry", help="Check a registry: its schema and rules (as every open does) and, in full, "
             "SQLite's integrity check and every pair of fingerprints against the minimum distance.")
@click.option("--registry", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_PATH, show_default=True)
@click.option("--quick", is_flag=True, help="Only the checks every open runs (schema, rules, lengths, duplicates).")
def check_registry(registry, quick):
    try:
        with Registry(registry, readonly=True) as reg:
            report = reg.check(full=not quick)
    except (RegistryError, OSError) as e:
        fail(e)
    click.echo(report.summary())
    for problem in report.problems:
        click.echo(f"  {problem}")
    if not report.ok:
        fail(report.error())


@cli.command("import-registry", help="Add the entries of a CSV to a registry (all or none).")
@click.option("--registry", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_PATH, show_default=True)
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="CSV with columns user and bits (0/1 text), optionally file, file_sha256, source, "
              "source_sha256, issued_at.")
@click.option("--min-distance", type=click.IntRange(min=0), default=None,
              help="For a new registry: its minimum distance (default a quarter of the bits).")
@click.option("--check-distance/--no-check-distance", default=True, show_default=True,
              help="Check the minimum distance among the new entries and to the registered ones (exact duplicates "
              "are always refused).")
def import_registry(registry, csv_path, min_distance, check_distance):
    try:
        if not csv_path.is_file():
            raise RegistryError(f"{csv_path}: no such file")
        check_outputs({"--registry": registry}, {"--csv": csv_path})
        with Registry(registry) as reg:
            n = reg.import_csv(csv_path, min_distance=min_distance, check_distance=check_distance)
            total = len(reg)
    except (RegistryError, OutputPathError, OSError) as e:
        fail(e)
    click.echo(f"added {n} entries; {registry} holds {total}")


if __name__ == "__main__":
    cli()
