"""The package's shape: no import circle, function-level imports only with a reason, every module importable, and a
command-line parser that loads no torch."""
from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import cytomodel

PACKAGE = Path(cytomodel.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for f in sorted(PACKAGE.rglob("*.py")):
        parts = list(f.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def import_graph(with_function_level: bool) -> tuple[dict[str, set[str]], list[tuple[str, int]]]:
    """Module -> the cytomodel modules it imports (at module level, or anywhere), and where the function-level
    imports are. ``from pkg import name`` points at ``pkg.name`` when that is a module, else at ``pkg``; a package's
    own ``__init__`` running first is not counted as the submodule depending on it."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    in_functions: list[tuple[str, int]] = []
    for me, path in mods.items():
        package = me if path.name == "__init__.py" else me.rpartition(".")[0]

        def targets(node) -> list[str]:
            if isinstance(node, ast.Import):
                return [a.name for a in node.names]
            base = package.split(".")
            if node.level > 1:
                base = base[:len(base) - node.level + 1]
            mod = ".".join(base + ([node.module] if node.module else [])) if node.level else node.module
            return [f"{mod}.{a.name}" if f"{mod}.{a.name}" in mods else mod for a in node.names]

        def walk(node, in_function: bool) -> None:
            for child in ast.iter_child_nodes(node):
                if _is_type_checking(child):
                    continue  # annotations only
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    walk(child, True)
                elif isinstance(child, (ast.Import, ast.ImportFrom)):
                    if in_function:
                        in_functions.append((me, child.lineno))
                    if in_function and not with_function_level:
                        continue
                    for t in targets(child):
                        while t and t not in mods:
                            t = t.rpartition(".")[0]
                        if t and t != me:
                            graph[me].add(t)
                else:
                    walk(child, in_function)

        walk(ast.parse(path.read_text()), False)
    return graph, in_functions


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_circle_even_through_function_level_imports():
    for with_function_level in (False, True):
        graph, _ = import_graph(with_function_level)
        assert circles(graph) == [], f"import circle (function-level imports counted: {with_function_level})"


LAYERS = ("data", "models", "pipelines", "classify", "train", "evaluate", "morphology_map", "cli")


def test_each_package_imports_only_the_packages_below_it():
    """data < models < pipelines < classify, train < evaluate < morphology_map < cli (docs/cytomodel.md, code
    layout); the modules at the top of the package (runtime, testing) serve them all."""
    graph, _ = import_graph(True)
    layer = {name: i for i, name in enumerate(LAYERS)}
    wrong = []
    for module, imported in graph.items():
        here = module.split(".")[1] if module.count(".") else None
        for other in imported:
            there = other.split(".")[1] if other.count(".") else None
            if here in layer and there in layer and layer[there] > layer[here]:
                wrong.append(f"{module} -> {other}")
    assert not wrong, "imports against the layering:\n" + "\n".join(sorted(wrong))


def test_function_level_imports_say_why():
    """An import inside a function keeps a heavy library (torch, scipy, matplotlib, ...) out of a light path; a
    comment on its line or just above says which."""
    _, where = import_graph(False)
    missing = []
    for module, line in where:
        lines = _modules()[module].read_text().splitlines()
        if not any("#" in text for text in lines[max(0, line - 4):line]):
            missing.append(f"{module}:{line}: {lines[line - 1].strip()}")
    assert not missing, "function-level imports without a reason:\n" + "\n".join(missing)


def test_every_module_imports_and_every_export_resolves():
    names = [m.name for m in pkgutil.walk_packages(cytomodel.__path__, "cytomodel.") if not m.name.endswith("__main__")]
    for name in names:
        importlib.import_module(name)
    for name in ["cytomodel"] + [n for n in names if n.count(".") == 1 and (PACKAGE / n.split(".")[1]).is_dir()]:
        package = importlib.import_module(name)
        for export in getattr(package, "__all__", []):
            assert getattr(package, export) is not None, f"{name}.{export}"


def test_building_the_parser_loads_no_torch():
    code = ("import sys, cytomodel.cli as c; c.build_parser(); "
            "print(sorted(m for m in ('torch', 'diffusers', 'pandas', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent)
    assert out.stdout.strip() == "[]", out.stdout
