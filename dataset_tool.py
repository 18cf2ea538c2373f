"""Prepare data sets for training: a zip of R x R PNGs plus dataset.json (or a folder, when --dest
has no .zip suffix).

Examples:

\b
  # CelebA as in the paper (first 30k aligned images, 128x128 box centred at (89, 121)):
  python dataset_tool.py create_celeba --source img_align_celeba --dest datasets/celeba128.zip
\b
  # Our half-size CelebA copy (89x109) at 32x32:
  python dataset_tool.py create_celeba --source ../shared/data/celeba_89x109 --dest datasets/celeba32.zip \\
      --cx 44.5 --cy 60.5 --size 64 --resolution 32
\b
  # LSUN Bedroom (first 30k at 128) and any folder of images:
  python dataset_tool.py create_lsun --source bedroom_train_lmdb --dest datasets/bedroom128.zip \\
      --resolution 128 --max-images 30000
  python dataset_tool.py create_from_images --source photos/ --dest datasets/photos64 --resolution 64
\b
  # The built-in toy faces (no download):
  python dataset_tool.py create_builtin --dest datasets/toyfaces32.zip

Every command writes atomically (nothing appears at --dest unless it succeeds) and refuses an
existing --dest unless --force is given; --force replaces only a data set this tool wrote (never
an input, a folder holding an input, a symbolic link, or a folder with other files in it), and
only once the new one is complete. Temporaries left beside --dest by a killed run are removed by
the next run for that --dest. Unreadable images, and images smaller than the crop box, are
reported one by one and skipped; the command fails if no image could be written.
"""

from __future__ import annotations

import errno
import signal
import sys
from pathlib import Path

import click
import numpy as np
from tqdm import tqdm

from data.dataset_writer import DatasetError
from data.prepare import Recipe, prepare_dataset
from data.sources import list_image_files, lmdb_num_entries, read_builtin, read_image_files, read_lsun_lmdb
from dnnlib.cli import fail
from dnnlib.util import OutputPathError, check_outputs


class PowerOfTwo(click.ParamType):
    """An integer power of two >= 4 (network resolutions)."""

    name = "power of two >= 4"

    def convert(self, value, param, ctx):
        try:
            v = int(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not an integer", param, ctx)
        if v < 4 or v & (v - 1):
            self.fail(f"{v} is not a power of two >= 4", param, ctx)
        return v


def dest_option(f):
    f = click.option("--force", is_flag=True,
                     help="Replace an existing --dest written by this tool (only once the new one is complete).")(f)
    return click.option("--dest", required=True, type=click.Path(path_type=Path),
                        help="Output: a .zip file, or a folder if the name has no .zip suffix.")(f)


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that the writer removes its temporary output."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def _write_hint(e: OSError) -> str:
    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return "free some space or choose a --dest on another disk"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "choose a --dest in a folder you can write to"
    return "check --dest and try again"


def run(items, dest: Path, recipe: Recipe, *, force: bool, inputs: dict | None = None, **kwargs) -> None:
    """Run the preparation, report skipped files on stderr and exit non-zero on failure.

    ``inputs`` (option -> path) may not be --dest, lie inside an existing --dest, or contain it.
    """
    def log(msg: str) -> None:
        tqdm.write(msg, file=sys.stderr)

    try:
        check_outputs({"--dest": dest}, inputs or {})
    except OutputPathError as e:
        fail(e)
    if (dest.exists() or dest.is_symlink()) and not force:
        raise click.UsageError(f"{dest} already exists; choose another --dest or pass --force to replace it")
    try:
        report = prepare_dataset(items, dest, recipe, force=force, log=log, **kwargs)
    except DatasetError as e:
        fail(e)
    except OSError as e:
        ours = e.filename and Path(e.filename).name.startswith(f".{dest.name}.")
        where = f" ({e.filename})" if e.filename and not ours else ""
        fail(f"cannot write {dest}: {e.strerror or e}{where}; nothing was written: {_write_hint(e)}")
    except Terminated:
        click.echo(f"error: stopped by SIGTERM; nothing was written to {dest}", err=True)
        sys.exit(128 + signal.SIGTERM)
    note = f"; skipped {len(report.skipped)} (listed above and in dataset.json)" if report.skipped else ""
    click.echo(f"wrote {report.num_images} images ({report.resolution}x{report.resolution}) to {dest}{note}")


@click.group(help=__doc__)
def cli() -> None:
    pass


@cli.command("create_celeba")
@click.option("--source", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder of aligned CelebA images (img_align_celeba, 178x218).")
@dest_option
@click.option("--cx", type=float, default=89.0, show_default=True, help="Crop box centre, x (may be fractional).")
@click.option("--cy", type=float, default=121.0, show_default=True, help="Crop box centre, y (may be fractional).")
@click.option("--size", type=click.IntRange(min=1), default=128, show_default=True, help="Crop box side.")
@click.option("--resolution", type=PowerOfTwo(), default=None, help="Resize the box to this.  [default: --size]")
@click.option("--max-images", type=click.IntRange(min=1), default=30000, show_default=True,
              help="Write the first N images (sorted names).")
@click.option("--skip", type=click.IntRange(min=0), default=0, show_default=True,
              help="Leave out the first N images (sorted names): a held-out split, e.g. --skip 8000 after "
                   "training on --max-images 8000.")
def create_celeba(source: Path, dest: Path, force: bool, cx: float, cy: float, size: int, resolution: int | None,
                  max_images: int, skip: int) -> None:
    """CelebA, the release's recipe: the first N aligned images in sorted order, the --size box
    centred at (--cx, --cy) (defaults: rows 57:185, cols 25:153 of 178x218), optionally resized.

    \b
    Examples:
      python dataset_tool.py create_celeba --source img_align_celeba --dest datasets/celeba128.zip
      python dataset_tool.py create_celeba --source ../shared/data/celeba_89x109 \\
          --dest datasets/celeba32.zip --cx 44.5 --cy 60.5 --size 64 --resolution 32
      # ... the 2,000 images after the first 8,000, held out from training:
      python dataset_tool.py create_celeba --source ../shared/data/celeba_89x109 \\
          --dest datasets/celeba32_heldout.zip --cx 44.5 --cy 60.5 --size 64 --resolution 32 \\
          --skip 8000 --max-images 2000
    """
    if resolution is None and (size < 4 or size & (size - 1)):
        raise click.BadParameter(f"the output side --size {size} is not a power of two >= 4; pass --resolution",
                                 param_hint="--resolution")
    recipe = Recipe("box", resolution or size, cx=cx, cy=cy, size=size)
    names = list_image_files(source)
    if skip >= len(names):
        raise click.BadParameter(f"--skip {skip} leaves none of the {len(names)} images of {source}",
                                 param_hint="--skip")
    names = names[skip:]
    run(read_image_files(source, names), dest, recipe, force=force, inputs={"--source": source},
        max_images=max_images, total=len(names), source={"kind": "celeba", "path": str(source)},
        selection={"skip": skip, "max_images": max_images, "order": "sorted"})


@cli.command("create_from_images")
@click.option("--source", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder of PNG/JPEG images (searched recursively; other files are ignored).")
@dest_option
@click.option("--resolution", type=PowerOfTwo(), required=True, help="Output side (power of two >= 4).")
@click.option("--max-images", type=click.IntRange(min=1), default=None, help="Write at most N images.  [default: all]")
@click.option("--shuffle", is_flag=True, help="Take images in a random order (from --seed) instead of sorted.")
@click.option("--seed", type=int, default=0, show_default=True, help="Shuffle seed.")
def create_from_images(source: Path, dest: Path, force: bool, resolution: int, max_images: int | None,
                       shuffle: bool, seed: int) -> None:
    """Any folder of PNG/JPEG images: non-square images are centre-cropped to their largest square,
    then resized to --resolution (LANCZOS down, BICUBIC up); the first N in sorted order, or
    shuffled with --seed.

    \b
    Example:
      python dataset_tool.py create_from_images --source photos/ --dest datasets/photos64.zip \\
          --resolution 64 --max-images 5000 --shuffle --seed 1
    """
    names = list_image_files(source)
    if shuffle:
        names = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    if not names:
        raise click.BadParameter(f"no .png/.jpg/.jpeg files under {source}", param_hint="--source")
    run(read_image_files(source, names), dest, Recipe("center", resolution), force=force, inputs={"--source": source},
        max_images=max_images, total=len(names), source={"kind": "folder", "path": str(source)},
        selection={"max_images": max_images, "order": f"shuffled (seed {seed})" if shuffle else "sorted"})


@cli.command("create_lsun")
@click.option("--source", required=True, type=click.Path(exists=True, path_type=Path),
              help="LSUN LMDB folder (holding data.mdb), e.g. bedroom_train_lmdb.")
@dest_option
@click.option("--resolution", type=PowerOfTwo(), required=True, help="Output side (power of two >= 4).")
@click.option("--max-images", type=click.IntRange(min=1), default=None,
              help="Write the first N images.  [default: all]")
def create_lsun(source: Path, dest: Path, force: bool, resolution: int, max_images: int | None) -> None:
    """An LSUN category (LMDB of encoded images), in key order: centre crop, resize to --resolution.

    \b
    Examples (the paper: Bedroom first 30k at 128, Cat first 50k at 256):
      python dataset_tool.py create_lsun --source bedroom_train_lmdb --dest datasets/bedroom128.zip \\
          --resolution 128 --max-images 30000
      python dataset_tool.py create_lsun --source cat --dest datasets/cat256.zip --resolution 256 --max-images 50000
    """
    try:
        total = lmdb_num_entries(source)
    except Exception as e:
        raise click.BadParameter(f"{source}: not a readable LMDB ({e})", param_hint="--source") from e
    run(read_lsun_lmdb(source), dest, Recipe("center", resolution), force=force, inputs={"--source": source},
        max_images=max_images, total=total, source={"kind": "lsun_lmdb", "path": str(source)},
        selection={"max_images": max_images, "order": "key"})


@cli.command("create_builtin")
@dest_option
@click.option("--resolution", type=PowerOfTwo(), default=32, show_default=True, help="Output side.")
@click.option("--max-images", type=click.IntRange(min=1), default=10000, show_default=True, help="Number of images.")
@click.option("--seed", type=int, default=0, show_default=True, help="Generator seed (image k depends on seed, k).")
def create_builtin(dest: Path, force: bool, resolution: int, max_images: int, seed: int) -> None:
    """The built-in data set: procedural toy faces (no download; deterministic from --seed).

    \b
    Example:
      python dataset_tool.py create_builtin --dest datasets/toyfaces32.zip --resolution 32 --max-images 10000
    """
    run(read_builtin(max_images, resolution, seed), dest, Recipe("center", resolution), force=force,
        max_images=max_images, total=max_images,
        source={"kind": "builtin", "generator": "toy_faces", "seed": seed}, selection={"max_images": max_images})


def main() -> None:
    """The command line; SIGTERM stops a run cleanly (no temporary output is left behind)."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    cli()


if __name__ == "__main__":
    main()
