"""Dependencies point one way: no module of fastmlp or kernels imports one that imports it back.

Read with the standard library's ``ast``, nothing is imported: every ``import`` and
``from ... import`` counts wherever it is written (top level, inside a function, under
``if TYPE_CHECKING:``), and so does ``importlib.import_module("a.literal.name")``.
Importing a submodule runs its package's ``__init__`` first, but that is not a
dependency on the package's other modules, so ``import fastmlp.idx`` is an edge to
``fastmlp.idx`` only, and ``from fastmlp import MLP`` (a name, not a submodule) an edge
to ``fastmlp``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("fastmlp", "kernels")


def module_files(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Module name -> file, for every ``.py`` under the packages (``__init__`` is the package)."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of ``modules`` that ``module`` (in file ``path``) imports."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from ..y import z
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                # A submodule (from fastmlp import idx) needs that module; any other name
                # (from fastmlp import MLP) needs the package's __init__.
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in modules else base)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value)
    return {name for name in found if name in modules and name != module}


def import_graph(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    """Module -> the modules of ``packages`` it imports."""
    modules = module_files(root, packages)
    return {module: imports_of(module, path, modules) for module, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def describe(component: list[str], graph: dict[str, set[str]]) -> str:
    """Each import inside a cycle, e.g. ``fastmlp.a -> fastmlp.b``."""
    members = set(component)
    edges = [f"{a} -> {b}" for a in component for b in sorted(graph[a] & members)]
    return "; ".join(edges)


def test_no_module_imports_one_that_imports_it_back():
    graph = import_graph(ROOT, PACKAGES)
    assert "fastmlp.model" in graph and "kernels" in graph  # the packages were found
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(describe(c, graph) for c in found)


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_check_sees_every_kind_of_import(tmp_path):
    write(
        tmp_path,
        {
            "pkg/__init__.py": "import importlib\n",
            "pkg/a.py": "def f():\n    from . import b\n",  # function level, relative
            "pkg/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\n",
            "pkg/c.py": "from pkg.sub import d\n",
            "pkg/sub/__init__.py": "",
            "pkg/sub/d.py": "import importlib\nimportlib.import_module('pkg.c')\n",
            "pkg/e.py": "from pkg import VERSION\n",  # a name of the package: needs pkg
            "pkg/f.py": "from pkg import e\n",  # a submodule: needs pkg.e, not pkg
            "pkg/g.py": "from .sub import d as dd\n",  # relative, a submodule
        },
    )
    graph = import_graph(tmp_path, ("pkg",))
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.a"}
    assert graph["pkg.e"] == {"pkg"} and graph["pkg.f"] == {"pkg.e"}
    assert graph["pkg.g"] == {"pkg.sub.d"}
    assert cycles(graph) == [["pkg.a", "pkg.b"], ["pkg.c", "pkg.sub.d"]]
    assert describe(["pkg.a", "pkg.b"], graph) == "pkg.a -> pkg.b; pkg.b -> pkg.a"


def test_a_package_that_imports_its_own_importer_is_a_cycle(tmp_path):
    write(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.model import Model\n",
            "pkg/model.py": "def fit():\n    from pkg import helpers\n",
            "pkg/helpers.py": "from pkg import Model\n",  # the package, which imports model
        },
    )
    graph = import_graph(tmp_path, ("pkg",))
    assert cycles(graph) == [["pkg", "pkg.helpers", "pkg.model"]]
