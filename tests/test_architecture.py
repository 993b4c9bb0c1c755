"""The package's shape, read statically from its source: no import circles, no upward imports,
and platform-specific names only where platforms live.

The import graph has one node per module of ``spark_aml_bridge`` (a package is its
``__init__``) and an edge for every import statement that names a module of the package:

* imports inside functions count too (a lazy import still ties two modules together; "no
  circles" means none, lazy or not); only imports under ``if TYPE_CHECKING:`` do not, since
  they never run (annotations only);
* ``from a.b import c`` is an edge to ``a.b.c`` when that is a module, else to ``a.b``;
* Python runs a package's ``__init__`` before any of its modules, but that implied edge is not
  counted: package ``__init__`` files are kept light (docstrings, lazy helpers) instead.

"Upward" is a module importing a package it lives in (its ``__init__``): e.g.
``spark_aml_bridge.azureml.x`` importing ``spark_aml_bridge.azureml`` or ``spark_aml_bridge``.
``spark_aml_bridge.bridge`` is what the top-level package's ``connect()`` stands for, so a
module inside a sub-package importing it is upward as well (top-level modules and the CLI may
use it, like users do).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "spark_aml_bridge"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE
FACADE = f"{PACKAGE}.bridge"
# Names that belong to one platform's runtime; outside these folders, code asks the platform shim.
PLATFORM_NAMES = (
    "dbutils",
    "notebookutils",
    "mssparkutils",
    "TokenLibrary",
    "DATABRICKS_",
    "ProjectArcadia",
    "trident",
)
PLATFORM_HOMES = (ROOT / "platforms", ROOT / "emulator")


def _module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


def _modules() -> dict[str, tuple[Path, bool]]:
    return {
        name: (path, is_package)
        for path in sorted(ROOT.rglob("*.py"))
        for name, is_package in [_module_name(path)]
    }


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _closest_module(name: str, modules: dict[str, tuple[Path, bool]]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                wanted = [alias.name for alias in node.names]
            else:
                if node.level:
                    base_parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(base_parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                wanted = [f"{base}.{alias.name}" for alias in node.names] + [base]
                # `from a.b import c`: a.b.c when it is a module, else a.b itself.
                wanted = [w for w in wanted[:-1] if w in modules] or [wanted[-1]]
            for target in wanted:
                if target == PACKAGE or target.startswith(PACKAGE + "."):
                    found = _closest_module(target, modules)
                    if found and found != name:
                        targets.add(found)
        graph[name] = targets
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
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
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
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
    return found


def test_no_import_cycles():
    graph = import_graph()
    cycles = _cycles(graph)
    described = [
        "\n".join(f"  {m} -> {sorted(t for t in graph[m] if t in c)}" for m in c) for c in cycles
    ]
    assert not cycles, "import circles:\n" + "\n\n".join(described)


def test_no_upward_imports():
    modules = _modules()
    upward = []
    for name, targets in import_graph().items():
        parts = name.split(".")
        ancestors = {".".join(parts[:i]) for i in range(1, len(parts))}
        if modules[name][1]:
            ancestors.discard(name)
        for target in sorted(targets):
            in_subpackage = len(parts) > 2
            if target in ancestors or (target == FACADE and in_subpackage):
                upward.append(f"{name} -> {target}")
    assert not upward, "upward imports:\n  " + "\n  ".join(upward)


def test_platform_names_stay_in_platform_folders():
    misplaced = []
    for path in sorted(ROOT.rglob("*.py")):
        if any(home in path.parents for home in PLATFORM_HOMES):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for word in PLATFORM_NAMES:
                if word in line:
                    misplaced.append(f"{path.relative_to(ROOT.parent)}:{number}: {word}")
    assert not misplaced, "platform-specific names outside platforms/ and emulator/:\n  " + (
        "\n  ".join(misplaced)
    )


def test_emulator_doubles_do_not_import_the_platforms_they_stand_in_for():
    # A double that imported platforms/databricks would agree with it by construction.
    leaks = [
        f"{name} -> {target}"
        for name, targets in import_graph().items()
        if name.startswith((f"{PACKAGE}.emulator.databricks", f"{PACKAGE}.emulator.synapse"))
        for target in sorted(targets)
        if target.startswith(f"{PACKAGE}.platforms")
    ]
    assert not leaks, "emulator doubles importing platform code:\n  " + "\n  ".join(leaks)


def test_the_graph_sees_lazy_imports_and_skips_type_checking_ones():
    # The checks above are only as good as the graph: a function-level import is an edge, a
    # TYPE_CHECKING one is not.
    graph = import_graph()
    assert f"{PACKAGE}.platforms.registry" in graph[f"{PACKAGE}.session"]  # inside a function
    sources = f"{PACKAGE}.credentials.sources"
    assert f"{PACKAGE}.clouds" in graph[sources]  # inside a function
    assert f"{PACKAGE}.config" not in graph[sources]  # only under TYPE_CHECKING
    assert f"{PACKAGE}.platforms.base" in graph[f"{PACKAGE}.platforms.registry"]
