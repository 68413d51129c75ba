"""The layering of DESIGN.md holds: a module imports only from its own layer or below (function-
level imports included), and the package has no import cycles."""

import ast
from pathlib import Path

ROOT = Path(__file__).parents[1] / "genmix"

# kernels -> ops -> models, mixing, data, metrics -> training -> report -> evaluation -> pipeline -> cli
LAYERS = {
    "genmix": 0, "genmix._atomic": 0, "genmix.errors": 0, "genmix._build_config": 0, "genmix._C": 0,
    "genmix.kernels": 0, "genmix.ops": 1,
    "genmix.models": 2, "genmix.mixing": 2, "genmix.data": 2, "genmix.metrics": 2,
    "genmix.training": 3, "genmix.report": 4, "genmix.evaluation": 5, "genmix.pipeline": 6,
    "genmix.demo": 6,  # the demo's sizing of the pipeline, used by the CLI
    "genmix.cli": 7, "genmix.__main__": 7,
}


def _layer(module: str) -> int:
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        name = ".".join(parts[:i])
        if name in LAYERS:
            return LAYERS[name]
    raise AssertionError(f"{module} is in no layer of DESIGN.md")


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
        elif isinstance(node, ast.ImportFrom) and node.level:
            base = _module_name(path).split(".")
            if path.name != "__init__.py":
                base = base[:-1]
            base = base[: len(base) - node.level + 1]
            yield ".".join(base + ([node.module] if node.module else []))


def _modules():
    return {_module_name(p): p for p in ROOT.rglob("*.py")}


def test_no_module_imports_from_a_layer_above_it():
    wrong = []
    for name, path in _modules().items():
        for target in _imports(path):
            if target.split(".")[0] == "genmix" and _layer(target) > _layer(name):
                wrong.append(f"{name} (layer {_layer(name)}) imports {target} (layer {_layer(target)})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles_at_module_level():
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        targets = set()
        for node in tree.body:  # module-level imports only: those are what a cycle breaks
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("genmix"):
                # `from package import submodule` depends on the submodule, not the package.
                subs = {f"{node.module}.{a.name}" for a in node.names} & set(modules)
                targets |= subs or {node.module}
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.startswith("genmix")}
        graph[name] = {t for t in targets if t in modules and t != name}
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in graph.get(node, ()):
            if state.get(nxt) == "open":
                raise AssertionError("import cycle: " + " -> ".join(stack + [node, nxt]))
            if nxt not in state:
                visit(nxt, stack + [node])
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node, [])
