"""Architecture contracts, read from the source (no imports run): who may import ray, mlflow
and orchestrator; no private name crosses a module; no import circle at module level."""

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


def test_the_modules_are_found():
    assert {"orchestrator.tracking", "workers.actors", "workers.model.potential"} <= set(MODULES)


def test_ray_mlflow_and_orchestrator_stay_in_their_rooms():
    """Pure workers code imports neither ray (workers/actors.py binds it) nor the driver;
    mlflow only in the tracking module."""
    broken = []
    for name, path in MODULES.items():
        for module, _ in _imports(path, top_level=False):
            if _is(name, "workers") and name != "workers.actors" and _is(module, "ray"):
                broken.append(f"{name} imports {module}")
            if _is(name, "workers") and _is(module, "orchestrator"):
                broken.append(f"{name} imports {module}")
            if _is(module, "mlflow") and name != "orchestrator.tracking":
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


def test_no_import_circle_at_module_level():
    """``from pkg import sub`` counts as an edge to ``pkg.sub`` (not to the package's __init__)."""
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        edges = set()
        for module, what in _imports(path, top_level=True):
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
