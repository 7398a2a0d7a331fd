"""What pysfu exports: ``__all__`` everywhere, and exactly the public names.

As websockets does: the top level re-exports exactly the names it lists, and
every public module says what it exports, so ``from pysfu.x import *`` and
the API reference show the API and nothing that merely passes through.
"""

from __future__ import annotations

import ast
import importlib
import types
import typing
from pathlib import Path

import pytest

import pysfu
from pysfu import errors
from pysfu.events import RoomEvent

PACKAGE = Path(pysfu.__file__).resolve().parent

#: Public modules without ``__all__`` yet, because other work edits them this
#: round; may only shrink (the test fails when one of them gains ``__all__``).
NO_ALL_YET = {
    "pysfu.admission",
    "pysfu.signalling.websocket",
}


def public_modules() -> list[str]:
    """Modules whose dotted name has no private part (``_aiortc``, ``_slots``)."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if parts[-1] == "__main__" or any(p.startswith("_") for p in parts):
            continue
        names.append(".".join(parts))
    return names


def defined_public_names(module: types.ModuleType) -> set[str]:
    """Public classes, functions and globals a module defines (not imports)."""
    assert module.__file__ is not None
    tree = ast.parse(Path(module.__file__).read_text())
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    internal = {"logger"}  # and TypeVars, which are not API
    return {
        n
        for n in names - internal
        if not n.startswith("_") and not isinstance(getattr(module, n), typing.TypeVar)
    }


def test_the_top_level_exports_exactly_its_public_names() -> None:
    public = {
        name
        for name, value in vars(pysfu).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert sorted(pysfu.__all__) == sorted(public)
    assert len(pysfu.__all__) == len(set(pysfu.__all__))


def test_the_top_level_has_every_error_and_event() -> None:
    error_classes = {
        name
        for name in errors.__all__
        if issubclass(getattr(errors, name), errors.PysfuError)
    }
    events = {cls.__name__ for cls in typing.get_args(RoomEvent)} | {"RoomEvent"}
    assert error_classes | events <= set(pysfu.__all__)


@pytest.mark.parametrize("name", public_modules())
def test_every_public_module_lists_what_it_exports(name: str) -> None:
    module = importlib.import_module(name)
    listed = getattr(module, "__all__", None)
    if name in NO_ALL_YET:
        assert listed is None, f"{name} has __all__ now: remove it from NO_ALL_YET"
        return
    assert listed is not None, f"{name} has no __all__"
    assert len(listed) == len(set(listed)), "a name is listed twice"
    missing = [n for n in listed if not hasattr(module, n)]
    assert not missing, f"listed but not there: {missing}"
    unlisted = defined_public_names(module) - set(listed)
    assert not unlisted, f"defined and public but not in __all__: {sorted(unlisted)}"


def test_the_old_homes_of_the_vocabulary_still_work() -> None:
    """Code written against pysfu.signalling keeps importing the same objects."""
    from pysfu import messages, ports, signalling
    from pysfu.signalling import adapter
    from pysfu.signalling import messages as old_messages

    for name in old_messages.__all__:
        assert getattr(old_messages, name) is getattr(messages, name)
    for name in set(messages.__all__) & set(signalling.__all__):
        assert getattr(signalling, name) is getattr(messages, name)
    assert signalling.Outbox is adapter.Outbox is ports.Outbox
    assert adapter.SessionParticipant is ports.SessionParticipant
