"""The module structure stays readable: no import cycles among the project's modules, and no module reads
the global settings behind its caller's back.

The cycle check reads the source (nothing is imported) and counts every import of a project module:
module-level, inside functions (the lazy imports that keep ``rag --help`` fast) and under
``if TYPE_CHECKING:``. Two modules that need each other, even only for a type, are one module in two files
for a reader: the fix is to move what both need into a third module (as ``rag.model_files`` holds
``ModelInfo`` for ``rag.embeddings`` and ``rag.onnx_encoder``), not to hide the import.

``from package import name`` counts as an import of ``package.name`` when that is a module, else of the
package itself; a submodule's implicit import of its parent package is not counted (Python finishes the
parent's ``__init__`` first, so that is never a cycle at run time).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("rag", "ui")


def project_modules(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of the given top-level packages."""
    modules: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _resolve(target: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of ``target`` that is a project module (``rag.index.Index`` -> ``rag.index``)."""
    parts = target.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules that module ``name`` (file ``path``) imports anywhere in its source."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: "from . import x", "from ..text import words"
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                submodule = f"{module}.{alias.name}" if module else alias.name
                targets.append(submodule if submodule in modules else module)
        for target in targets:
            resolved = _resolve(target, modules)
            if resolved is not None and resolved != name:
                found.add(resolved)
    return found


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of two or more modules, each shown as one cycle through it
    (``a -> b -> a``), sorted. Tarjan's algorithm, iterative."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return sorted(_cycle_through(group, graph) for group in groups)


def _cycle_through(group: list[str], graph: dict[str, set[str]]) -> list[str]:
    """One closed path through the first module of a strongly connected group (breadth-first, shortest)."""
    members, start = set(group), group[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & members):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"{group} is not a cycle")


# ---------------------------------------------------------------------------------------------- the checker


def _graph_of(files: dict[str, str], tmp_path: Path) -> dict[str, set[str]]:
    for relative, text in files.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return import_graph(project_modules(tmp_path, ("pkg",)))


def test_checker_finds_cycles_of_every_kind_of_import(tmp_path):
    graph = _graph_of({
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg.b import thing\n",
        "pkg/b.py": "def f():\n    from pkg import a\n",  # function-level
        "pkg/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.d import D\n",
        "pkg/d.py": "import pkg.c\n",
        "pkg/sub/__init__.py": "from .x import y\n",
        "pkg/sub/x.py": "from ..e import z\n",  # relative, two levels
        "pkg/e.py": "from pkg.sub import x\n",
        "pkg/leaf.py": "import os\nfrom pkg.a import thing\n",
    }, tmp_path)
    assert find_cycles(graph) == [
        ["pkg.a", "pkg.b", "pkg.a"],
        ["pkg.c", "pkg.d", "pkg.c"],
        ["pkg.e", "pkg.sub.x", "pkg.e"],
    ]


def test_checker_accepts_a_layered_package(tmp_path):
    graph = _graph_of({
        "pkg/__init__.py": "",
        "pkg/answer/__init__.py": "from pkg.answer.registry import create\n",
        "pkg/answer/base.py": "from pkg.types import T\n",
        "pkg/answer/one.py": "from pkg.answer import base\nfrom pkg.answer.base import B\n",
        "pkg/answer/registry.py": "from pkg.answer.base import B\ndef create():\n    from pkg.answer import one\n",
        "pkg/types.py": "from dataclasses import dataclass\n",
    }, tmp_path)
    assert graph["pkg.answer.one"] == {"pkg.answer.base"}  # not the package: no false cycle through __init__
    assert find_cycles(graph) == []


# ---------------------------------------------------------------------------------------------- the project


def test_no_import_cycles_in_the_project():
    cycles = find_cycles(import_graph(project_modules()))
    assert not cycles, "import cycles (move what both sides need into a module of its own):\n" + "\n".join(
        " -> ".join(cycle) for cycle in cycles
    )


ENTRY_POINTS = ("main", "from_environment")  # function names that say they read the environment


def _bare_settings_calls(tree: ast.AST, inside: str = "") -> list[tuple[int, str]]:
    """(line, enclosing function) of every ``Settings()`` call without arguments."""
    found = []
    for node in ast.iter_child_nodes(tree):
        name = node.name if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) else inside
        if (isinstance(node, ast.Call) and not node.args and not node.keywords
                and "Settings" in (getattr(node.func, "id", None), getattr(node.func, "attr", None))):
            found.append((node.lineno, inside))
        found += _bare_settings_calls(node, name)
    return found


def test_no_module_reads_the_environment_settings_behind_its_caller():
    """``Settings()`` with no arguments reads RAG_* and .env: only a caller that was given no settings
    (``Pipeline.load()``, the CLI) may decide to do that, never a library module on its own. An entry point
    that exists to read the environment says so in its name (``main``, ``..._from_environment``)."""
    found = [
        f"{path.relative_to(ROOT)}:{line}" + (f" (in {function})" if function else "")
        for path in project_modules().values()
        for line, function in _bare_settings_calls(ast.parse(path.read_text(encoding="utf-8")))
        if not function.endswith(ENTRY_POINTS)
    ]
    assert not found, f"Settings() reads the environment; take the caller's settings instead: {found}"


def test_settings_check_sees_calls_inside_functions_and_allows_named_entry_points():
    tree = ast.parse("def helper():\n    return Settings()\n\ndef app_from_environment():\n"
                     "    return make(Settings(), x=1)\n\nDEFAULT = Settings()\nGOOD = Settings(top_k=3)\n")
    assert _bare_settings_calls(tree) == [(2, "helper"), (5, "app_from_environment"), (7, "")]
