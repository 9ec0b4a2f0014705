"""The layering of docs/architecture.md holds: imports (module-level or inside functions) only go down
the list of layers, the cross-cutting modules and the package root import no layer, every package is in a
layer, and no two modules import each other in a circle. Imports under ``if TYPE_CHECKING:`` are for type
checkers only (never run) and do not count."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "longadapt"
#: docs/architecture.md "Layers", bottom first.
LAYERS = ["data", "tokenizers", "modeling", "interop", "vocab", "evaluation", "training", "recipes", "study", "bench"]
CROSS_CUTTING = {"errors", "config", "io", "faults", "cache", "dataroot", "sources", "runinfo", "languages",
                 "launch", "_lazy", "progress", "precision"}
# the command-line entry points: they dispatch to every layer's cli.py, nothing imports them
ENTRY_POINTS = {"cli", "__main__"}
ROOT_MAY_IMPORT = CROSS_CUTTING | {"modeling"}  # the root registers the core with the Auto classes


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}


def _type_checking_only(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for n in ast.walk(node)}
    return skip


def _imported_modules(path: Path) -> set[str]:
    """The longadapt modules ``path`` imports at run time (a name imported from a package counts as its
    submodule when it is one)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_only(tree)
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("longadapt"):
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.add(sub if sub in MODULES else node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("longadapt")}
    return {m for m in out if m in MODULES} - {_module(path)}


def _home(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""  # "" is the package root


def test_imports_only_go_down_the_layers():
    wrong = []
    for module, path in sorted(MODULES.items()):
        home = _home(module)
        for target in {_home(m) for m in _imported_modules(path)} - {home}:
            if home in LAYERS and target in LAYERS and LAYERS.index(target) > LAYERS.index(home):
                wrong.append(f"{module} ({home}) imports {target}, a layer above it")
            if home in CROSS_CUTTING and target in LAYERS:
                wrong.append(f"{module} is cross-cutting but imports the layer {target}")
            if home == "" and target not in ROOT_MAY_IMPORT:
                wrong.append(f"the package root imports {target or 'itself'}; export it lazily (longadapt._lazy)")
    assert not wrong, "\n".join(wrong)


def test_every_package_and_module_has_a_place():
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert packages == set(LAYERS), f"packages in no layer: {sorted(packages - set(LAYERS))}"
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert top <= CROSS_CUTTING | ENTRY_POINTS, f"top-level modules in no group: {sorted(top - CROSS_CUTTING - ENTRY_POINTS)}"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                elif nxt in on:
                    low[v] = min(low[v], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_no_circle_of_imports():
    graph = {m: _imported_modules(p) for m, p in MODULES.items()}
    assert not _cycles(graph), "modules that import each other in a circle:\n" + "\n".join(
        " <-> ".join(c) for c in _cycles(graph))


def test_the_checks_catch_what_they_are_for():
    """The checker itself: a circle, an upward import and the root importing a layer are all seen."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import longadapt.study\n")
    assert len(_type_checking_only(tree)) > 0


# inner imports of a module the file already imports at its top, kept on purpose: the reason beside each
INNER_REPEATS_ALLOWED = {
    # a test replaces the module-level name; validate reads the registry's own function
    ("longadapt/recipes/adapt.py", "longadapt.recipes.strategies"),
    # Predictor loads its heavy modules (transformers, the windows) when a model is loaded, not on import
    ("longadapt/evaluation/predict.py", "longadapt.evaluation"),
}


def test_no_function_imports_again_what_its_module_imports_at_the_top():
    """Imports sit at the top of a module; a function repeats one only for a stated reason (above)."""
    repeats = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = {a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names}
        top |= {n.module for n in tree.body if isinstance(n, ast.ImportFrom) and n.module}
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                             [node.module] if isinstance(node, ast.ImportFrom) else [])
                    repeats |= {(path.relative_to(PACKAGE.parent).as_posix(), n) for n in names if n in top}
    assert repeats <= INNER_REPEATS_ALLOWED, sorted(repeats - INNER_REPEATS_ALLOWED)
