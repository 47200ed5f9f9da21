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
        ("tasks/publish", ("tasks.",)),
    ],
)
def test_a_layer_imports_nothing_above_it(folder: str, above: tuple[str, ...]) -> None:
    allowed = {
        "tasks/model": {"tasks.model", "tasks.events.catalog"},
        "tasks/publish": {"tasks.publish"},
    }.get(folder, set())
    reaching = {
        module: sorted(n for n in names if n.startswith(above) and not n.startswith(tuple(allowed)))
        for module, names in imports_of(folder).items()
    }
    assert {m: names for m, names in reaching.items() if names} == {}


def module_name(path: str) -> str:
    return path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def test_no_module_in_tasks_reaches_itself_through_its_imports() -> None:
    # imports inside functions count: a lazy import still ties the two modules together
    graph = {module_name(path): names for path, names in imports_of("tasks").items()}

    def reaches(start: str) -> set[str]:
        seen: set[str] = set()
        todo = [n for n in graph[start] if n in graph]
        while todo:
            module = todo.pop()
            if module not in seen:
                seen.add(module)
                todo += [n for n in graph[module] if n in graph]
        return seen

    assert sorted(m for m in graph if m in reaches(m)) == []
