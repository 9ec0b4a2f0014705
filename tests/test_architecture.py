"""The layering of docs/architecture.md holds: imports (module-level or inside functions) only go down
the list of layers, and the cross-cutting modules import no layer."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "longadapt"
#: docs/architecture.md "Layers", bottom first.
LAYERS = ["data", "tokenizers", "modeling", "interop", "vocab", "evaluation", "training", "recipes", "study"]
CROSS_CUTTING = {"errors", "config", "io", "faults", "cache", "dataroot", "sources", "runinfo", "languages",
                 "launch", "_lazy", "progress"}


def _imports(path: Path) -> set[str]:
    """The top-level longadapt modules ``path`` imports."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        out |= {n.split(".")[1] for n in names if n.startswith("longadapt.")}
    return out


def test_imports_only_go_down_the_layers():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        home = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        for target in _imports(path) - {home}:
            if home in LAYERS and target in LAYERS and LAYERS.index(target) > LAYERS.index(home):
                wrong.append(f"{rel} ({home}) imports {target}, a layer above it")
            if home in CROSS_CUTTING and target in LAYERS:
                wrong.append(f"{rel} is cross-cutting but imports the layer {target}")
    assert not wrong, "\n".join(wrong)
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()} >= set(LAYERS)
