"""A griffe extension for pysfu's docstrings, which are written for Sphinx.

Cross-reference roles (:class:`~pysfu.SFUConfig`, :meth:`Room.join`,
:data:`Outbox`, ...) become mkdocstrings cross-references to the documented
object, resolved like Sphinx does: relative to the docstring's class and
module first, then to the ``pysfu`` package. A role naming something private
(a ``_`` in its path), in a module listed as ``internal`` (not in the
reference) or unknown becomes plain code, so no reference dangles.
``#:`` comments are handled by the griffe-sphinx extension.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(
    r":(?:py:)?(?:class|meth|func|data|attr|mod|exc|obj):`(?P<short>~)?(?P<target>[\w.]+?)(?P<call>\(\))?`"
)


class SphinxRoles(griffe.Extension):
    def __init__(self, internal: list[str] | None = None) -> None:
        super().__init__()
        self.internal = tuple(internal or ())

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        self.package = pkg
        for obj in _walk(pkg):
            if obj.docstring is not None:
                obj.docstring.value = self._rewrite(obj.docstring.value, obj)

    def _rewrite(self, text: str, obj: griffe.Object) -> str:
        return ROLE.sub(lambda match: self._reference(match, obj), text)

    def _reference(self, match: re.Match[str], obj: griffe.Object) -> str:
        target = match.group("target")
        text = target.rsplit(".", 1)[-1] if match.group("short") else target
        text += match.group("call") or ""
        path = self._resolve(target, obj)
        if (
            path is None
            or any(part.startswith("_") for part in path.split("."))
            or any(path == m or path.startswith(m + ".") for m in self.internal)
        ):
            return f"`{text}`"
        return f"[`{text}`][{path}]"

    def _resolve(self, target: str, obj: griffe.Object) -> str | None:
        scopes: list[str] = []
        scope: griffe.Object | None = obj
        while scope is not None:
            scopes.append(scope.path)
            scope = scope.parent
        for base in [*scopes, ""]:
            path = f"{base}.{target}" if base else target
            try:
                found = self.package.modules_collection[path]
            except (KeyError, ValueError):
                continue
            try:
                return str(found.final_target.path if found.is_alias else found.path)
            except griffe.AliasResolutionError:
                return None
        return None


def _walk(obj: griffe.Object) -> list[griffe.Object]:
    found = [obj]
    for member in obj.members.values():
        if not member.is_alias:
            found += _walk(member)  # type: ignore[arg-type]
    return found
