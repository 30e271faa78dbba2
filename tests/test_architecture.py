"""The package's import graph: no cycles, and no layer imports one above it.

Every ``import``/``from ... import`` of a ``vlsm`` module is read from the source (function-level
imports included, since they are dependencies too), so this fails on a cycle hidden in a function.
"""
from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# What each part may import (besides itself and the standard/third-party libraries). Lower layers
# come first; a part may import only the parts listed for it.
BASE = {"vlsm.utils", "vlsm.errors", "vlsm.devices"}
ALLOWED = {
    "vlsm.utils": set(),
    "vlsm.errors": set(),
    "vlsm.devices": set(),
    "vlsm.text": BASE,
    "vlsm.data": BASE | {"vlsm.text"},
    "vlsm.models": BASE | {"vlsm.text"},
    # experiment files: their model section is a models.ModelSpec
    "vlsm.config": BASE | {"vlsm.models"},
    # model cards are written from a run's summary and config (the recipe rendered from the schema)
    "vlsm.model_card": BASE | {"vlsm.text", "vlsm.data", "vlsm.models", "vlsm.config"},
    # run folders by job (names, layout, results, checkpoints, loading, staging, claims)
    "vlsm.runs": BASE | {"vlsm.text", "vlsm.config", "vlsm.data", "vlsm.models", "vlsm.model_card"},
    # the older import name of vlsm.runs.claims
    "vlsm.claims": BASE | {"vlsm.runs"},
    "vlsm.predictor": BASE | {"vlsm.text", "vlsm.config", "vlsm.data", "vlsm.models", "vlsm.runs"},
    "vlsm.evaluation": BASE | {"vlsm.text", "vlsm.config", "vlsm.data", "vlsm.models", "vlsm.runs",
                               "vlsm.predictor"},
    "vlsm.training": BASE | {"vlsm.text", "vlsm.config", "vlsm.data", "vlsm.models", "vlsm.runs",
                             "vlsm.claims", "vlsm.predictor", "vlsm.evaluation", "vlsm.model_card"},
}
# The applications built on the library, side by side (none imports another)...
_LIBRARY = set(ALLOWED)
# (vlsm.tuning: the hyperparameter search, whose trials are vlsm.training runs)
for _app in ("vlsm.export", "vlsm.bench", "vlsm.serve", "vlsm.tuning"):
    ALLOWED[_app] = set(_LIBRARY)
# ...the Python API, one function per command, above them...
ALLOWED["vlsm.api"] = _LIBRARY | {"vlsm.export", "vlsm.bench", "vlsm.serve", "vlsm.tuning"}
# ...the commands, which parse arguments, call the API and print, and the command line on top.
ALLOWED["vlsm.commands"] = ALLOWED["vlsm.api"] | {"vlsm.api"}
ALLOWED["vlsm.cli"] = ALLOWED["vlsm.commands"] | {"vlsm.commands", "vlsm"}
# the package's own namespace re-exports the public names (lazily)
ALLOWED["vlsm"] = {"vlsm.models", "vlsm.predictor", "vlsm.api"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path, modules: set) -> set:
    """The vlsm modules ``path`` imports (``from vlsm.x import y`` counts as vlsm.x.y if that is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                     for a in node.names]
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
              == "import_module" and node.args and isinstance(node.args[0], ast.Constant)):
            names = [str(node.args[0].value)]  # importlib.import_module("vlsm.x") hides an import
        else:
            continue
        found.update(n for n in names if n == "vlsm" or n.startswith("vlsm."))
    return found


def graph() -> dict:
    files = {module_name(p): p for p in SRC.joinpath("vlsm").rglob("*.py")}
    modules = set(files)
    return {m: {i for i in imports_of(p, modules) if i != m} for m, p in files.items()}


def part_of(module: str) -> str:
    for part in sorted(ALLOWED, key=len, reverse=True):
        if module == part or (part != "vlsm" and module.startswith(part + ".")):
            return part
    return module


def test_every_module_belongs_to_a_known_layer():
    unknown = sorted(m for m in graph() if part_of(m) not in ALLOWED)
    assert not unknown, f"modules outside the layer table in {__file__}: {unknown}"


def test_no_import_cycles():
    g = graph()
    # Tarjan's strongly connected components: any component with more than one module is a cycle.
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in g.get(v, ()):
            if w not in g:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_no_upward_imports():
    bad = []
    for module, deps in sorted(graph().items()):
        part = part_of(module)
        for dep in sorted(deps):
            target = part_of(dep)
            if target != part and target not in ALLOWED[part]:
                bad.append(f"{module} imports {dep} ({part} may import only {sorted(ALLOWED[part]) or 'nothing'})")
    assert not bad, "imports against the layering:\n" + "\n".join(bad)
