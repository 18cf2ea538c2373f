"""The two releases' command-line forms, accepted by this port's tools (README, "The releases' commands").

A release form is rewritten into this port's before click parses the command line, and each one used is
named once on stderr with what it became::

    note: release form --config=config-e-Gskip-Dresnet; this port's form: (nothing: the only architecture)

``ReleaseCommand`` and ``ReleaseGroup`` (click classes, ``cls=``) do it for a command of ours. For each of
its boolean flags they take the release's ``--flag=True`` / ``--flag=False`` (also ``--flag False``, and
0/1, yes/no), and ``--a_b`` for an option ``--a-b``; a command adds its own forms (``release_forms``: option
name -> ``Form``) and the release's positional arguments (``release_positional``). The release's entry
points (run_training.py, run_generator.py, run_metrics.py, train.py, embed_fingerprints.py,
detect_fingerprints.py) rewrite a whole command line with ``translate`` and run ours; they alone take the
release's metric name fid50k (this port's tools refuse it as an unknown metric). A form that this port
cannot honour ends the command with one ``error:`` line, before anything runs.
"""

from __future__ import annotations

import contextlib
import shlex
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import click

from dnnlib.cli import fail

BOOL_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


class ReleaseFormError(ValueError):
    """A release form that this port refuses (the message is one line)."""


@dataclass
class Item:
    """One option (``name``, with ``value`` or None for a flag) or positional argument (``name`` None) of a
    command line, with the tokens it was given as."""

    name: str | None
    value: str | None
    raw: list[str]

    @property
    def text(self) -> str:
        return shlex.join(self.raw)


@dataclass(frozen=True)
class Form:
    """A release option: ``apply(value)`` gives this port's tokens and a note (why, or what differs);
    it raises ``ReleaseFormError`` to refuse the value."""

    takes_value: bool
    apply: Callable[[str | None], tuple[list[str], str]]
    optional_bool: bool = False     # a flag that may be followed by a bool word (--shuffle 0)


def rename(modern: str, convert: Callable[[str], str] | None = None, why: str = "", takes_value: bool = True) -> Form:
    """The release's option under this port's name (its value through ``convert``)."""
    if not takes_value:
        return Form(False, lambda _: ([modern], why))
    return Form(True, lambda v: ([modern, convert(v) if convert else v], why))


def dropped(why: str, accept: Callable[[str | None], None] | None = None, takes_value: bool = True) -> Form:
    """Accepted and left out (``accept`` may refuse some values)."""
    def apply(value):
        if accept is not None:
            accept(value)
        return [], why
    return Form(takes_value, apply)


def flag(on: Sequence[str], off: Sequence[str], why_on: str = "", why_off: str = "") -> Form:
    """A flag of the release given a bool (``--shuffle 0``, ``--check=True``): ``on`` or ``off`` (plain ``--x``
    is ``on`` without a note when ``on`` is ``[--x]``)."""
    def apply(value):
        if value is None or bool_value("flag", value):
            return list(on), why_on
        return list(off), why_off
    return Form(False, apply, optional_bool=True)


def refused(message: str, takes_value: bool = True) -> Form:
    def apply(value):
        raise ReleaseFormError(message)
    return Form(takes_value, apply)


@dataclass(frozen=True)
class Positional:
    """The release's positional arguments as this port's options (``names``, in the release's order), and the
    release's defaults of options (``defaults``) that it applies when the positional form is used."""

    names: tuple[str, ...]
    defaults: Mapping[str, str] = field(default_factory=dict)
    why: str = ""


# --- parsing and rewriting a command line -----------------------------------------------------------------

def parse(args: Sequence[str], takes_value: Callable[[str], bool], bool_flags: Callable[[str], bool] = lambda n: False,
          bool_word_after_flag: bool = True) -> list[Item]:
    """Split ``args`` into options and positional arguments. ``--x=v`` is always an option with a value; ``--x v``
    when ``takes_value('--x')``; a boolean flag may be followed by a bool word (``--flag False``)."""
    items, i, args = [], 0, list(args)
    while i < len(args):
        tok = args[i]
        if tok == "--":
            items += [Item(None, a, [a]) for a in args[i + 1:]]
            break
        if tok.startswith("--") and len(tok) > 2:
            name, eq, value = tok.partition("=")
            if eq:
                items.append(Item(name, value, [tok]))
            elif takes_value(name) and i + 1 < len(args):
                items.append(Item(name, args[i + 1], [tok, args[i + 1]]))
                i += 1
            elif (bool_flags(name) and bool_word_after_flag and i + 1 < len(args)
                  and args[i + 1].lower() in BOOL_WORDS):
                items.append(Item(name, args[i + 1], [tok, args[i + 1]]))
                i += 1
            else:
                items.append(Item(name, None, [tok]))
        elif tok.startswith("-") and len(tok) > 1:
            items.append(Item(tok, None, [tok]))
        else:
            items.append(Item(None, tok, [tok]))
        i += 1
    return items


@dataclass
class Translation:
    args: list[str]
    notes: list[str]


def note(release: str, modern: Sequence[str], why: str = "") -> str:
    """``note: release form A; this port's form: B`` (``(nothing: why)`` when B is empty)."""
    if modern:
        text = shlex.join(modern) + (f" ({why})" if why else "")
    else:
        text = f"(nothing: {why})" if why else "(nothing)"
    return f"note: release form {release}; this port's form: {text}"


def bool_value(name: str, value: str) -> bool:
    v = BOOL_WORDS.get(value.lower())
    if v is None:
        raise ReleaseFormError(f"{name}={value}: expected True or False")
    return v


def translate(args: Sequence[str], forms: Mapping[str, Form], *, options: set[str] = frozenset(),
              flags: Mapping[str, tuple[str, str | None]] | None = None, positional: Positional | None = None,
              bool_word_after_flag: bool = True) -> Translation:
    """Rewrite the release forms in ``args`` into this port's; untouched tokens stay as given.

    ``options``: this port's options that take a value; ``flags``: this port's boolean flags, name -> (the flag
    that turns it on, the one that turns it off or None); ``positional``: the release's positional arguments.
    Raises ``ReleaseFormError`` for a refused form.
    """
    flags = flags or {}
    known = set(options) | set(flags)

    def canon(name: str) -> str:
        """``name``, or its other spelling (``--a_b`` / ``--a-b``) when only that one is an option or a form."""
        if name in known or name in forms:
            return name
        for alt in ("--" + name[2:].replace("_", "-"), "--" + name[2:].replace("-", "_")):
            if alt in known or alt in forms:
                return alt
        return name

    items = parse(args, takes_value=lambda n: (canon(n) in options or (canon(n) in forms
                                                                       and forms[canon(n)].takes_value)),
                  bool_flags=lambda n: ((canon(n) in flags and canon(n) not in forms)
                                        or (canon(n) in forms and forms[canon(n)].optional_bool)),
                  bool_word_after_flag=bool_word_after_flag)
    out: list[str] = []
    notes: list[str] = []
    given = {canon(it.name) for it in items if it.name}
    rest = [it for it in items if it.name is not None or positional is None]
    pos = [it for it in items if it.name is None] if positional is not None else []
    if pos:
        if len(pos) != len(positional.names):
            raise ReleaseFormError(f"{len(pos)} positional arguments ({shlex.join(p.value for p in pos)}); the "
                                   f"release's form takes {len(positional.names)}, this port's options for them: "
                                   f"{' '.join(positional.names)}")
        twice = [n for n in positional.names if n in given]
        if twice:
            raise ReleaseFormError(f"{twice[0]} is given twice: as a positional argument (the release's form) and "
                                   "as an option; give one")
        tokens = [t for n, p in zip(positional.names, pos) for t in (n, p.value)]
        notes.append(note(shlex.join(p.value for p in pos), tokens, positional.why))
        out += tokens
        for name, value in positional.defaults.items():
            if name not in given:
                out += [name, value]
                notes.append(note(f"(no {name})", [name, value], "the release's default"))
    for it in rest:
        if it.name is None:
            out += it.raw
            continue
        name = canon(it.name)
        if name in forms:
            form = forms[name]
            if form.takes_value and it.value is None:
                out += it.raw       # click reports the missing value
                continue
            try:
                tokens, why = form.apply(it.value)
            except ReleaseFormError as e:
                raise ReleaseFormError(str(e).replace("flag=", f"{it.name}=")) from None
            if tokens != [it.name] + ([] if it.value is None else [it.value]):
                notes.append(note(it.text, tokens, why))
            out += tokens
        elif name in flags and it.value is not None:
            on, off = flags[name]
            tokens = [on] if bool_value(it.name, it.value) else [off] if off else []
            notes.append(note(it.text, tokens, "" if tokens else f"leave out {on}"))
            out += tokens
        elif name != it.name:
            tokens = [name] if it.value is None else [name, it.value]
            notes.append(note(it.text, tokens))
            out += tokens
        else:
            out += it.raw
    return Translation(out, list(dict.fromkeys(notes)))


def echo_notes(notes: Sequence[str]) -> None:
    for line in notes:
        click.echo(line, err=True)


def command_translate(command: click.Command, args: Sequence[str]) -> Translation:
    """``translate`` with what ``command``'s parameters say (its value options, its boolean flags)."""
    options, flags = set(), {}
    for p in command.params:
        if not isinstance(p, click.Option):
            continue
        if p.is_flag and p.is_bool_flag:
            off = p.secondary_opts[0] if p.secondary_opts else None
            flags.update({name: (p.opts[0], off) for name in p.opts})
        elif not p.is_flag and not p.count:
            options.update(p.opts + p.secondary_opts)
    has_arguments = any(isinstance(p, click.Argument) for p in command.params)
    return translate(args, getattr(command, "release_forms", {}), options=options, flags=flags,
                     positional=getattr(command, "release_positional", None),
                     bool_word_after_flag=not has_arguments)


class ReleaseCommand(click.Command):
    """A click command that takes the releases' forms (``release_forms``, ``release_positional``) and the
    ``--flag=False`` forms of its flags, naming each release form used once on stderr."""

    def __init__(self, *args, release_forms: Mapping[str, Form] | None = None,
                 release_positional: Positional | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.release_forms = dict(release_forms or {})
        self.release_positional = release_positional

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not ctx.resilient_parsing:
            try:
                t = command_translate(self, args)
            except ReleaseFormError as e:
                fail(e)
            echo_notes(t.notes)
            args = t.args
        return super().parse_args(ctx, args)


class ReleaseGroup(click.Group):
    """A click group whose commands are ``ReleaseCommand``s."""

    command_class = ReleaseCommand


# --- the forms that several tools share -------------------------------------------------------------------

RELEASE_CONFIGS = ("config-e-Gskip-Dresnet", "config-e")


def check_config(value: str | None) -> None:
    if value not in RELEASE_CONFIGS:
        raise ReleaseFormError(f"--config={value}: this port has the release's one architecture, config-e with a "
                               f"skip G and a resnet D (--config={RELEASE_CONFIGS[0]} or config-e); its size is "
                               "--preset")


CONFIG = dropped("the only architecture; its size is --preset", check_config)

# The release's metric names that this port computes under another name.
RELEASE_METRICS = {"fid50k": "fid50k_full"}


def release_metrics(value: str) -> str:
    return ",".join(RELEASE_METRICS.get(m.strip(), m.strip()) for m in value.split(","))


METRICS = rename("--metrics", release_metrics, "fid50k_full: 50,000 generated images against all the reals, the "
                 "release's fid50k on a data set of at most 50,000 images")


def metrics_form(value: str | None) -> tuple[list[str], str]:
    """``--metrics``: noted only when it names a release metric."""
    if value is None or release_metrics(value) == value:
        return ["--metrics"] + ([] if value is None else [value]), ""
    return METRICS.apply(value)


METRICS_FORMS = {"--metrics": Form(True, metrics_form)}


def crop_refused(tool: str) -> Form:
    """The artificial-fingerprints release's --use_celeba_preprocessing, for a tool that takes images as they are."""
    return refused(f"--use_celeba_preprocessing: this port's {tool} centre-crops the largest square; prepare the "
                   "release's crop first (python dataset_tool.py create_celeba --source DIR --dest DIR148 --cx 89 "
                   "--cy 109 --size 148 --resolution R --max-images all) and give --data_dir DIR148",
                   takes_value=False)


# --- the release entry points -------------------------------------------------------------------------------

def pop(args: list[str], name: str) -> str | None:
    """Remove every ``name VALUE`` pair from ``args`` (as ``translate`` writes them); the last value, or None."""
    found = None
    while name in args:
        i = args.index(name)
        found = args[i + 1] if i + 1 < len(args) else None
        del args[i:i + 2]
    return found


def peek(args: Sequence[str], name: str) -> str | None:
    """The last value of ``name VALUE`` in ``args``, left in place; None if absent."""
    found = None
    for i, a in enumerate(args[:-1]):
        if a == name:
            found = args[i + 1]
    return found


def take(args: list[str], flag_name: str) -> bool:
    """Remove the flag ``flag_name`` from ``args``; whether it was there."""
    there = flag_name in args
    while flag_name in args:
        args.remove(flag_name)
    return there


def data_dir_dataset(data_dir: str, dataset: str) -> str:
    """``DIR/NAME``, or ``DIR/NAME.zip`` when only that exists (as train_stylegan2_fp.py resolves them)."""
    path = Path(data_dir) / dataset
    if not path.exists() and path.with_suffix(".zip").exists():
        path = path.with_suffix(".zip")
    return str(path)


def take_data(args: list[str], notes: list[str]) -> None:
    """The release's ``--data-dir DIR --dataset NAME`` in ``args`` -> ``--data DIR/NAME`` (noted)."""
    data_dir, dataset = pop(args, "--data-dir"), pop(args, "--dataset")
    if data_dir is not None and dataset is not None:
        data = data_dir_dataset(data_dir, dataset)
        args += ["--data", data]
        notes.append(note(f"--data-dir={data_dir} --dataset={dataset}", ["--data", data]))
    elif data_dir is not None or dataset is not None:
        fail("give --data-dir=DIR with --dataset=NAME (the data set DIR/NAME, a folder or a .zip)")


def entry_translate(argv: Sequence[str], forms: Mapping[str, Form], **kwargs) -> Translation:
    """``translate`` for a release entry point: a refused form ends the command with one line."""
    try:
        return translate(argv, forms, **kwargs)
    except ReleaseFormError as e:
        fail(e)


def run_entry_point(release: Sequence[str], modern: Sequence[str], notes: Sequence[str], main: click.Command,
                    prog_name: str, shown: Sequence[str] | None = None) -> None:
    """Name the release forms used and then the release command with this port's, once each on stderr; run
    ``main`` with ``modern``'s arguments (``shown``: the same as the user would write them, when they differ)."""
    echo_notes(notes)
    click.echo(note(f"python {shlex.join(release)}", ["python", prog_name, *(modern if shown is None else shown)]),
               err=True)
    main.main(args=list(modern), prog_name=prog_name)


@contextlib.contextmanager
def converted(source: str, suffixes: tuple[str, ...], convert: Callable[[Path, Path], None],
              extra: Sequence[str] = ()) -> Iterator[str]:
    """``source`` itself, or (a release file with one of ``suffixes``) a temporary conversion of it by ``convert``,
    removed afterwards: nothing is written beside the user's file. The conversion is noted as this port's
    ``legacy.py`` command (with ``extra`` arguments)."""
    if Path(source).suffix not in suffixes:
        yield source
        return
    with tempfile.TemporaryDirectory(prefix="release-") as tmp:
        dest = Path(tmp) / (Path(source).stem + ".safetensors")
        try:
            convert(Path(source), dest)
        except (ValueError, OSError) as e:
            fail(" ".join(str(e).splitlines()))
        click.echo(note(source, ["python", "legacy.py", "--source", source, "--dest", dest.name, *extra],
                        "once, then give --dest's file; here into a temporary file"), err=True)
        yield str(dest)
