"""Layers point one way (style.md 15): storage and adapters never import the use case
that drives them, the shared value types sit in a leaf, and the sync never reaches up
to the process's wiring."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imports_of(folder: str) -> dict[str, set[str]]:
    """Each module below ``folder`` and the tasks modules it imports."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
        found[str(path.relative_to(ROOT))] = {n for n in names if n.startswith("tasks")}
    return found


@pytest.mark.parametrize(
    ("folder", "above"),
    [
        ("tasks/model", ("tasks.",)),
        ("tasks/ledger", ("tasks.delivery", "tasks.runtime", "tasks.jobs")),
        ("tasks/oms", ("tasks.delivery", "tasks.runtime", "tasks.jobs")),
        ("tasks/delivery", ("tasks.runtime", "tasks.jobs", "tasks.celery")),
    ],
)
def test_a_layer_imports_nothing_above_it(folder: str, above: tuple[str, ...]) -> None:
    allowed = {"tasks.model", "tasks.events.catalog"} if folder == "tasks/model" else set()
    reaching = {
        module: sorted(n for n in names if n.startswith(above) and not n.startswith(tuple(allowed)))
        for module, names in imports_of(folder).items()
    }
    assert {m: names for m, names in reaching.items() if names} == {}
