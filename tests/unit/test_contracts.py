"""Architecture contracts, read from the source (no imports run): who may import ray, mlflow
and orchestrator; the driver's layers (``LAYERS``: a module imports only from its own layer
or those below); no private name crosses a module; no import circle, deferred imports
included; the driver's files and classes stay small."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("orchestrator", "workers")


def _modules() -> dict[str, Path]:
    out = {}
    for root in PACKAGES:
        for path in sorted((REPO / root).rglob("*.py")):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


MODULES = _modules()


def _imports(path: Path, top_level: bool) -> list[tuple[str, str | None]]:
    """``(module, name)`` pairs a file imports (``name`` None for ``import module``);
    ``top_level``: module-level statements only (what runs at import time)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level else list(ast.walk(tree))
    out: list[tuple[str, str | None]] = []
    for node in nodes:
        if isinstance(node, ast.Import):
            out += [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out += [(node.module, alias.name) for alias in node.names]
    return out


def _is(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


# the driver's rooms, top first (docs/architecture.md): a module may import from its own
# layer and those below it, never from one above
LAYERS = (
    ("orchestrator.cli",),
    ("orchestrator.campaign",),
    ("orchestrator.loop",),
    ("orchestrator.session",),
    (
        "orchestrator.steps",
        "orchestrator.selection",
        "orchestrator.initial",
        "orchestrator.references",
        "orchestrator.seeds",
        "orchestrator.config",
        "orchestrator.sections",
        "orchestrator.systems",
        "orchestrator.cluster",
        "orchestrator.outputs",
    ),  # fmt: skip
    ("orchestrator.records", "orchestrator"),
    ("workers",),
)
MAX_LINES = 300  # an orchestrator file
MAX_CLASS_LINES = 160  # a class, docstrings included


def _layer(module: str) -> int | None:
    """The index in ``LAYERS`` of the most specific prefix naming ``module``."""
    best, rank = -1, None
    for k, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if _is(module, prefix) and len(prefix) > best:
                best, rank = len(prefix), k
    return rank


def test_the_modules_are_found():
    assert {"orchestrator.outputs.tracking", "workers.actors", "workers.model.potential"} <= set(MODULES)


def test_ray_mlflow_and_orchestrator_stay_in_their_rooms():
    """ray only in workers/actors/ (which binds the pure code) and orchestrator/cluster/;
    pure workers code does not import the driver; mlflow only in the tracking module."""
    broken = []
    for name, path in MODULES.items():
        for module, _ in _imports(path, top_level=False):
            ray_room = _is(name, "workers.actors") or _is(name, "orchestrator.cluster")
            if _is(module, "ray") and not ray_room:
                broken.append(f"{name} imports {module}")
            if _is(name, "workers") and _is(module, "orchestrator"):
                broken.append(f"{name} imports {module}")
            if _is(module, "mlflow") and name != "orchestrator.outputs.tracking":
                broken.append(f"{name} imports {module}")
    assert not broken, broken


def test_no_private_name_is_imported_across_modules():
    broken = [
        f"{name}: from {module} import {what}"
        for name, path in MODULES.items()
        for module, what in _imports(path, top_level=False)
        if what and what.startswith("_") and not what.startswith("__") and module in MODULES
    ]
    assert not broken, broken


def test_every_import_points_down_the_layers():
    broken = []
    for name, path in MODULES.items():
        for module, what in _imports(path, top_level=False):
            target = f"{module}.{what}" if what and f"{module}.{what}" in MODULES else module
            low, high = _layer(name), _layer(target) if target in MODULES else None
            if low is not None and high is not None and high < low:
                broken.append(f"{name} imports {target}, a layer above it")
    assert not broken, broken


def test_driver_files_and_classes_stay_small():
    broken = []
    for name, path in MODULES.items():
        if not _is(name, "orchestrator"):
            continue
        text = path.read_text()
        if len(text.splitlines()) > MAX_LINES:
            broken.append(f"{path.name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES:
                broken.append(f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not broken, broken


def test_no_import_circle():
    """Deferred (function-level) imports count too; ``from pkg import sub`` counts as an
    edge to ``pkg.sub`` (not to the package's __init__)."""
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        edges = set()
        for module, what in _imports(path, top_level=False):
            target = f"{module}.{what}" if what and f"{module}.{what}" in MODULES else module
            if target in MODULES and target != name:
                edges.add(target)
        graph[name] = edges
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path, node, nxt]
            if not state.get(nxt) and (found := visit(nxt, [*path, node])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if not state.get(start):
            circle = visit(start, [])
            assert circle is None, " -> ".join(circle)
