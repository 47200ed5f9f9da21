"""The layout says what it holds (design.md section 2): `import tasks` starts nothing, pure
modules load no client library, production never imports the stand-ins, and no module
or folder grows past what a newcomer can take in."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = ("config", "tasks", "worker")
CLIENT_LIBRARIES = ("celery", "kombu", "boto3", "botocore", "httpx", "redis")
PURE = (
    "tasks.events.catalog",
    "tasks.events.envelope",
    "tasks.events.resources",
    "tasks.events.samples",
    "tasks.delivery.snapshot",
    "tasks.delivery.guard",
    "tasks.delivery.task_retry",
    "tasks.delivery.outcome",
    "tasks.model.pushed",
    "tasks.model.snapshot",
    "tasks.oms.payload",
    "tasks.publish.call",
    "tasks.publish.names",
    "tasks.errors",
    "tasks.keys",
)


def loaded_after(imports: str) -> list[str]:
    probe = (
        f"import sys; {imports}; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(CLIENT_LIBRARIES)!r}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return list(ast.literal_eval(done.stdout.strip()))


def test_import_tasks_starts_nothing() -> None:
    assert loaded_after("import tasks") == []


def test_pure_modules_load_no_client_library() -> None:
    assert loaded_after("; ".join(f"import {m}" for m in PURE)) == []


def production_files() -> list[Path]:
    return sorted(f for top in PRODUCTION for f in (ROOT / top).rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_only_the_cli_reaches_the_sandbox_and_only_lazily() -> None:
    reaching = {
        str(f.relative_to(ROOT))
        for f in production_files()
        if any(m.split(".")[0] == "sandbox" for m in imported_modules(f))
    }
    assert reaching == {"worker/cli.py"}
    top_level = {
        node.module
        for node in ast.parse((ROOT / "worker" / "cli.py").read_text()).body
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert not any(m.startswith("sandbox") for m in top_level)


@pytest.mark.parametrize("path", production_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_production_module_is_over_400_lines(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= 400


def test_tasks_holds_at_most_twelve_files_directly() -> None:
    assert len(list((ROOT / "tasks").glob("*.py"))) <= 12
