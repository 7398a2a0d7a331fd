"""Markdown tables of benchmark cells (one dict per scenario, mode and run).

A column is ``(key, title, format)``; a cell with an ``error`` is shown as
that error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Column = tuple[str, str, str]


def table(cells: list[dict[str, Any]], columns: Sequence[Column]) -> str:
    """One row per cell."""
    rows = [
        "| " + " | ".join(title for _, title, _ in columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for cell in cells:
        if "error" in cell:
            rows.append(
                f"| {cell['scenario']} | {cell['mode']} | {cell['run']}"
                f" | {cell['error']} |"
            )
            continue
        rows.append(
            "| " + " | ".join(spec.format(cell[key]) for key, _, spec in columns) + " |"
        )
    return "\n".join(rows)


def summary(cells: list[dict[str, Any]], columns: Sequence[Column]) -> str:
    """One row per scenario and mode; each column lists the runs' values."""
    rows = [
        "| scenario | mode | " + " | ".join(t for _, t, _ in columns) + " |",
        "|" + "---|" * (len(columns) + 2),
    ]
    seen: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for cell in cells:
        seen.setdefault((cell["scenario"], cell["mode"]), []).append(cell)
    for (scenario, mode), runs in seen.items():
        values = [
            " / ".join(
                spec.format(run[key]) if key in run else "failed" for run in runs
            )
            for key, _, spec in columns
        ]
        rows.append(f"| {scenario} | {mode} | " + " | ".join(values) + " |")
    return "\n".join(rows)
