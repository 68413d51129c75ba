"""No import cycles inside genmix, function-level imports included.

The import graph is read from the source with `ast`: every `import genmix...` and
`from genmix... import ...` (absolute or relative, at module level or inside a function) is an
edge; `from package import name` points at the submodule when `name` is one. A strongly
connected component of more than one module is a cycle. A function-level import only hides a
cycle until the function runs, so it counts here as much as a module-level one.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1] / "genmix"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _targets(name: str, path: Path, modules) -> set:
    """The genmix modules `name` imports anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            subs = {f"{module}.{a.name}" for a in node.names} & set(modules)
            found |= subs or {module}
    out = set()
    for target in found:
        # `import genmix.a.b` with no file genmix/a/b.py (a name inside a module): its nearest module.
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target.startswith("genmix") and target != name:
            out.add(target)
    return out


def import_graph() -> dict:
    modules = _modules()
    return {name: _targets(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict) -> list:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_function_level_and_relative_imports():
    graph = import_graph()
    # gan.py's networks are imported inside build_networks only.
    assert "genmix.models.stylegan2" in graph["genmix.training.gan"]
    assert "genmix.training.distributed" in graph["genmix.training.gan"]  # `from genmix.training import distributed`
    assert len(graph) > 30


def test_genmix_has_no_import_cycles():
    found = cycles(import_graph())
    assert not found, "import cycles (function-level imports included):\n" + "\n".join(
        " <-> ".join(c) for c in found)


def test_generator_families_sit_between_the_face_and_their_shared_base():
    graph = import_graph()
    face, base = "genmix.training.generator", "genmix.training.generator_base"
    families = ("genmix.training.gan", "genmix.training.diffusion")
    for family in families:
        assert family in graph[face]
        assert base in graph[family]
        assert face not in graph[family], f"{family} imports the face {face}"
    assert not graph[base] & {face, *families}, f"{base} imports {graph[base] & {face, *families}}"


@pytest.mark.parametrize("first", ["genmix.training.generator_base", "genmix.training.gan",
                                   "genmix.training.diffusion", "genmix.training.generator"])
def test_each_generator_module_imports_first_in_a_fresh_interpreter(first):
    code = (f"import {first}; import genmix.training.generator as g, genmix.training.gan as gan, "
            "genmix.training.diffusion as d; "
            "assert g.fit_generator is gan.fit_generator is d.fit_generator; "
            "assert gan.NonFiniteLossError is d.NonFiniteLossError")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
