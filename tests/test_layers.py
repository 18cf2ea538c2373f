"""The layers point one way: CLIs -> training -> metrics -> attribution / interop -> networks / data ->
torch_utils -> dnnlib, with no import cycle between modules (docs/ARCHITECTURE.md draws the picture).

Every import counts, also one inside a function: a deferred import hides a cycle, it does not remove it.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Rank of each package; a module may import a module of another package only if that package ranks lower.
RANKS = {"dnnlib": 0, "torch_utils": 1, "networks": 2, "data": 2, "attribution": 3, "interop": 3, "metrics": 4,
         "training": 5}
TOP = 6  # the CLIs at the top level, scripts/, bench/, fig/, tests/


def source_modules() -> dict[str, Path]:
    mods = {}
    for path in REPO.rglob("*.py"):
        rel = path.relative_to(REPO)
        if rel.parts[0].startswith(".") or rel.parts[0] in ("tests",):
            continue
        name = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        mods[name] = path
    return mods


def imports_of(path: Path, mods: dict[str, Path]) -> set[str]:
    """The project modules ``path`` imports (``from pkg import mod`` counts as pkg.mod)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in mods}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module in mods:
                out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in mods}
    return out


def rank(module: str) -> int:
    return RANKS.get(module.split(".")[0], TOP)


def parents(module: str) -> set[str]:
    """A module's packages, imported before it in any case: ``a.b.c`` -> {a, a.b}."""
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def graph() -> dict[str, set[str]]:
    mods = source_modules()
    return {name: imports_of(path, mods) - {name} - parents(name) for name, path in mods.items()}


def test_no_import_points_up_or_sideways():
    bad = []
    for mod, deps in graph().items():
        for dep in deps:
            same_package = mod.split(".")[0] == dep.split(".")[0]
            if not same_package and rank(dep) >= rank(mod) and rank(mod) < TOP:
                bad.append(f"{mod} -> {dep}")
    assert not bad, "imports against the layers:\n" + "\n".join(sorted(bad))


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``g`` (as a list of modules, first = last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(g.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(g):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_checks_catch_what_they_look_for():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert rank("metrics.fid") > rank("attribution.registry") > rank("networks.stylegan2") > rank("dnnlib.util")
    assert rank("generate") == rank("scripts.table3_report") == TOP
