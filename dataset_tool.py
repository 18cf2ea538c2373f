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

The release's forms are accepted too (positional OUT IN, the output first; --max_images, --num_images,
--shuffle 0/1; README, "The releases' commands"). Held-out splits: --skip N leaves out the first N
images of the source order.

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
from PIL import Image
from tqdm import tqdm

from data.dataset_writer import DatasetError
from data.prepare import Recipe, prepare_dataset
from data.sources import list_image_files, lmdb_num_entries, read_builtin, read_image_files, read_lsun_lmdb
from dnnlib.cli import fail
from dnnlib.release_cli import Positional, ReleaseGroup, flag, rename
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


class Count(click.ParamType):
    """A number of images: a positive integer, or 'all' for every image (None)."""

    name = "count or all"

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, int) and value > 0:
            return value
        if str(value).strip().lower() == "all":
            return None
        try:
            v = int(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of images (or 'all': every image)", param, ctx)
        if v < 1:
            self.fail(f"{v} is not a positive number of images; 'all' writes every image", param, ctx)
        return v


class ResolutionOrAuto(PowerOfTwo):
    """A power of two >= 4, or 'auto' (0): the side of the source's first image."""

    name = "power of two >= 4 or auto"

    def convert(self, value, param, ctx):
        if str(value).strip().lower() == "auto":
            return 0
        return super().convert(value, param, ctx)


def count_option(default: int | None, what: str):
    shown = "all" if default is None else default
    return click.option("--max-images", type=Count(), default=default, show_default=str(shown),
                        help=f"Write the first N images ({what}; 'all': every image). The release's "
                             "--max_images and --num_images are aliases.")


def skip_option(f):
    return click.option("--skip", type=click.IntRange(min=0), default=0, show_default=True,
                        help="Leave out the first N images of the source order: a held-out split, e.g. --skip 30000 "
                             "after a data set of --max-images 30000.")(f)


def check_skip(skip: int, total: int, source) -> None:
    if skip and skip >= total:
        raise click.BadParameter(f"--skip {skip} leaves none of the {total} images of {source}", param_hint="--skip")


# The release's forms (dnnlib/release_cli.py): `create_celeba OUT IN` (its output first), --num_images.
RELEASE_COUNT = {"--num-images": rename("--max-images")}


def release_positional(why: str = "", **defaults: str) -> Positional:
    return Positional(("--dest", "--source"), defaults, why)


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


@click.group(cls=ReleaseGroup, help=__doc__)
def cli() -> None:
    pass


@cli.command("create_celeba", release_forms=RELEASE_COUNT, release_positional=release_positional(
    "the output first, as the release; by default the first 30,000 sorted images, the paper's data set: "
    "--max-images all for every image, as the release's create_celeba"))
@click.option("--source", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder of aligned CelebA images (img_align_celeba, 178x218).")
@dest_option
@click.option("--cx", type=float, default=89.0, show_default=True, help="Crop box centre, x (may be fractional).")
@click.option("--cy", type=float, default=121.0, show_default=True, help="Crop box centre, y (may be fractional).")
@click.option("--size", type=click.IntRange(min=1), default=128, show_default=True, help="Crop box side.")
@click.option("--resolution", type=PowerOfTwo(), default=None, help="Resize the box to this.  [default: --size]")
@count_option(30000, "sorted names; the paper's 30,000")
@skip_option
def create_celeba(source: Path, dest: Path, force: bool, cx: float, cy: float, size: int, resolution: int | None,
                  max_images: int | None, skip: int) -> None:
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
    check_skip(skip, len(names), source)
    if not names:
        raise click.BadParameter(f"no .png/.jpg/.jpeg files under {source}", param_hint="--source")
    names = names[skip:]
    run(read_image_files(source, names), dest, recipe, force=force, inputs={"--source": source},
        max_images=max_images, total=len(names), source={"kind": "celeba", "path": str(source)},
        selection={"skip": skip, "max_images": max_images, "order": "sorted"})


@cli.command("create_from_images", release_forms={
    **RELEASE_COUNT,
    "--shuffle": flag(["--shuffle"], [], "this port's shuffled order, from --seed: the same images as the release's "
                      "--shuffle 1, in another order", "sorted names, this port's default order")},
    release_positional=release_positional("sorted names unless --shuffle; the release shuffled by default: the "
                                          "same images in another order", **{"--resolution": "auto"}))
@click.option("--source", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder of PNG/JPEG images (searched recursively; other files are ignored).")
@dest_option
@click.option("--resolution", type=ResolutionOrAuto(), required=True, help="Output side (power of two >= 4), or "
              "'auto': the side of the first image, when it is square and a power of two (the release's rule).")
@count_option(None, "of the order below")
@click.option("--shuffle", is_flag=True, help="Take images in a random order (from --seed) instead of sorted "
              "(the release's --shuffle 0 / 1 are accepted).")
@click.option("--seed", type=int, default=0, show_default=True, help="Shuffle seed.")
@skip_option
def create_from_images(source: Path, dest: Path, force: bool, resolution: int, max_images: int | None,
                       shuffle: bool, seed: int, skip: int) -> None:
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
    check_skip(skip, len(names), source)
    names = names[skip:]
    if not resolution:
        resolution = _own_resolution(source, names[0])
    run(read_image_files(source, names), dest, Recipe("center", resolution), force=force, inputs={"--source": source},
        max_images=max_images, total=len(names), source={"kind": "folder", "path": str(source)},
        selection={"skip": skip, "max_images": max_images, "order": f"shuffled (seed {seed})" if shuffle else "sorted"})


def _own_resolution(source: Path, name: str) -> int:
    """The side of ``source / name`` when it is square and a power of two >= 4 (the release's rule)."""
    try:
        with Image.open(source / name) as img:
            w, h = img.size
    except Exception as e:
        raise click.BadParameter(f"cannot read {source / name} to take its size ({e}); give --resolution",
                                 param_hint="--resolution") from e
    if w != h or w < 4 or w & (w - 1):
        raise click.BadParameter(f"{source / name} is {w}x{h}, not a square power of two: give --resolution",
                                 param_hint="--resolution")
    return w


@cli.command("create_lsun", release_forms=RELEASE_COUNT,
             release_positional=release_positional(**{"--resolution": "256"}))
@click.option("--source", required=True, type=click.Path(exists=True, path_type=Path),
              help="LSUN LMDB folder (holding data.mdb), e.g. bedroom_train_lmdb.")
@dest_option
@click.option("--resolution", type=PowerOfTwo(), required=True, help="Output side (power of two >= 4).")
@count_option(None, "key order")
@skip_option
def create_lsun(source: Path, dest: Path, force: bool, resolution: int, max_images: int | None, skip: int) -> None:
    """An LSUN category (LMDB of encoded images), in key order: centre crop, resize to --resolution.

    \b
    Examples (the paper: Bedroom first 30k at 128, Cat first 50k at 256):
      python dataset_tool.py create_lsun --source bedroom_train_lmdb --dest datasets/bedroom128.zip \\
          --resolution 128 --max-images 30000
      python dataset_tool.py create_lsun --source cat --dest datasets/cat256.zip --resolution 256 --max-images 50000
      # ... and the 10,000 Bedroom images after the first 30k, held out from training:
      python dataset_tool.py create_lsun --source bedroom_train_lmdb --dest datasets/bedroom128_heldout.zip \\
          --resolution 128 --skip 30000 --max-images 10000
    """
    try:
        total = lmdb_num_entries(source)
    except Exception as e:
        raise click.BadParameter(f"{source}: not a readable LMDB ({e})", param_hint="--source") from e
    check_skip(skip, total, source)
    run(read_lsun_lmdb(source, skip=skip), dest, Recipe("center", resolution), force=force, inputs={"--source": source},
        max_images=max_images, total=total - skip, source={"kind": "lsun_lmdb", "path": str(source)},
        selection={"skip": skip, "max_images": max_images, "order": "key"})


@cli.command("create_builtin", release_forms=RELEASE_COUNT)
@dest_option
@click.option("--resolution", type=PowerOfTwo(), default=32, show_default=True, help="Output side.")
@click.option("--max-images", type=click.IntRange(min=1), default=10000, show_default=True, help="Number of images.")
@click.option("--seed", type=int, default=0, show_default=True, help="Generator seed (image k depends on seed, k).")
@click.option("--skip", type=click.IntRange(min=0), default=0, show_default=True,
              help="Start at image N (a held-out split: images N, N+1, ... of the same --seed).")
def create_builtin(dest: Path, force: bool, resolution: int, max_images: int, seed: int, skip: int) -> None:
    """The built-in data set: procedural toy faces (no download; deterministic from --seed).

    \b
    Example:
      python dataset_tool.py create_builtin --dest datasets/toyfaces32.zip --resolution 32 --max-images 10000
    """
    items = read_builtin(max_images, resolution, seed, **({"skip": skip} if skip else {}))
    run(items, dest, Recipe("center", resolution), force=force,
        max_images=max_images, total=max_images,
        source={"kind": "builtin", "generator": "toy_faces", "seed": seed},
        selection={"skip": skip, "max_images": max_images} if skip else {"max_images": max_images})


def main() -> None:
    """The command line; SIGTERM stops a run cleanly (no temporary output is left behind)."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    cli()


if __name__ == "__main__":
    main()
