"""Structural rules of src/pysfu, checked by reading the source (no imports).

1. No module reaches into another module's private names: ``obj._name`` is
   only used on ``self``/``cls`` or for a private name the same module
   defines (its classes may use each other's privates; the scan knows names,
   not types, so a name defined in both modules is not caught), and nothing
   does ``from module import _name``. Private *modules*
   (``_aiortc``, ``_slots``) are the package's own and may be
   imported; inside ``_aiortc/`` the private names of aiortc and aioice are
   that package's job (each is listed in ``_aiortc/hooks.py`` HOOK_POINTS),
   but ``_aiortc``'s own private helpers used from outside it count.
2. The import graph has no cycle, counting every import: runtime, deferred
   (inside a function) and type-only (``if TYPE_CHECKING:``).

Violations that existed when these checks were written are listed below,
each with its reason. The lists may only shrink: a violation that is fixed
must be removed from its list (the test says so), and a new one fails.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "pysfu"

#: (module, "expression._name") pairs known today. Empty since review
#: refactors 2 and 3 (code-review-2026-12.md §9): the WHIP/WHEP session calls
#: PeerTransport and Subscriptions, and a room's members call its RoomPort.
#: Room calls its SFU through the public ``RoomRegistry`` port (sfu.py).
KNOWN_PRIVATE_ACCESS: set[tuple[str, str]] = set()

#: Import cycles known today, each as the sorted list of its modules.
KNOWN_CYCLES: list[list[str]] = []


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


PATHS = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in PATHS.items()}


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.endswith("__")


def imported_from(module: str, node: ast.ImportFrom) -> str:
    """The absolute name of the module a ``from ... import`` reads from."""
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    if PATHS[module].name != "__init__.py":
        parts.pop()  # a plain module's package
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


def imports(module: str) -> Iterator[tuple[str, str | None, str]]:
    """(what it reads from, the name imported or None, the local name) for
    every import of ``module``, wherever it is (type-only and deferred too)."""
    for node in ast.walk(TREES[module]):
        if isinstance(node, ast.Import):
            for alias in node.names:
                local = alias.asname or alias.name.split(".")[0]
                yield alias.name, None, local
        elif isinstance(node, ast.ImportFrom):
            source = imported_from(module, node)
            for alias in node.names:
                yield source, alias.name, alias.asname or alias.name


# -- rule 1: private names --------------------------------------------------


def private_names_defined(tree: ast.Module) -> set[str]:
    """Private names a module defines: its functions, classes and globals,
    and the attributes and methods of its classes."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
    return {n for n in names if is_private(n)}


def private_accesses(module: str) -> set[tuple[str, str]]:
    tree = TREES[module]
    own = private_names_defined(tree)
    module_names: set[str] = set()
    found: set[tuple[str, str]] = set()
    for source, name, local in imports(module):
        if name is None or f"{source}.{name}" in PATHS:
            module_names.add(local)  # bound to a module
        elif is_private(name):
            found.add((module, f"from {source} import {name}"))
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and is_private(node.attr)):
            continue
        owner = node.value
        if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
            continue
        reads_a_module = isinstance(owner, ast.Name) and owner.id in module_names
        if node.attr in own and not reads_a_module:
            continue  # a private of this module's own classes
        found.add((module, f"{ast.unparse(owner)}.{node.attr}"))
    return found


def checked_modules() -> list[str]:
    """Every module but aiortc's seam, whose job is aiortc's private names."""
    return [m for m in PATHS if not m.startswith("pysfu._aiortc")]


def test_no_module_reaches_into_another_modules_private_names() -> None:
    found = set().union(*(private_accesses(m) for m in checked_modules()))
    new = sorted(found - KNOWN_PRIVATE_ACCESS)
    assert not new, f"private names used across modules: {new}"
    fixed = sorted(KNOWN_PRIVATE_ACCESS - found)
    assert not fixed, f"fixed: remove from KNOWN_PRIVATE_ACCESS: {fixed}"


def test_the_seam_uses_no_private_name_of_the_rest_of_pysfu() -> None:
    """``_aiortc/`` may use aiortc's, aioice's and its own private names, not
    those of the modules above it."""
    ours = set().union(*(private_names_defined(TREES[m]) for m in checked_modules()))
    theirs: set[str] = set()
    for package in ("aiortc", "aioice", "pylibsrtp"):
        spec = importlib.util.find_spec(package)
        assert spec is not None and spec.origin is not None
        for path in Path(spec.origin).parent.rglob("*.py"):
            theirs |= private_names_defined(ast.parse(path.read_text()))
    seam = [m for m in PATHS if m.startswith("pysfu._aiortc")]
    seams_own = set().union(*(private_names_defined(TREES[m]) for m in seam))
    found = sorted(
        (module, access)
        for module in seam
        for _, access in private_accesses(module)
        if access.rsplit(".", 1)[-1].split()[-1] in ours - theirs - seams_own
        and not access.startswith("from pysfu._aiortc")
    )
    assert not found, f"the seam uses private names of pysfu's core: {found}"


def test_the_private_name_check_can_fail() -> None:
    """The scan sees the three shapes it is for (on synthetic modules)."""
    source = (
        "from . import room\n"
        "from .room import _helper\n"
        "class A:\n"
        "    def f(self, other):\n"
        "        self._mine = 1\n"
        "        return other._theirs, room._table, self._mine, other._mine\n"
    )
    PATHS["pysfu._probe"] = PACKAGE / "_probe.py"
    TREES["pysfu._probe"] = ast.parse(source)
    try:
        assert private_accesses("pysfu._probe") == {
            ("pysfu._probe", "from pysfu.room import _helper"),
            ("pysfu._probe", "other._theirs"),
            ("pysfu._probe", "room._table"),
        }
    finally:
        del PATHS["pysfu._probe"], TREES["pysfu._probe"]


# -- rule 2: no import cycle --------------------------------------------------


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in PATHS}
    for module in PATHS:
        for source, name, _ in imports(module):
            target = f"{source}.{name}" if f"{source}.{name}" in PATHS else source
            if target in PATHS and target != module:
                graph[module].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
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


def test_the_import_graph_has_no_cycle() -> None:
    found = cycles(import_graph())
    new = [c for c in found if c not in KNOWN_CYCLES]
    assert not new, f"import cycles: {new}"
    fixed = [c for c in KNOWN_CYCLES if c not in found]
    assert not fixed, f"fixed or changed: update KNOWN_CYCLES: {fixed}"


def test_the_cycle_check_can_fail() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_core_does_not_import_the_adapters() -> None:
    """signalling/ is an upper layer: nothing below it imports it."""
    core = [
        m
        for m in PATHS
        if not m.startswith(("pysfu.signalling", "pysfu.workers", "pysfu.app"))
        and m not in ("pysfu", "pysfu.__main__")
    ]
    graph = import_graph()
    offenders = {
        m: sorted(t for t in graph[m] if t.startswith("pysfu.signalling")) for m in core
    }
    assert {m: t for m, t in offenders.items() if t} == {}
