"""The README documents every setting, and the sandbox validates pushes against the
contract's own schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from config.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_is_documented_in_the_readme(name: str) -> None:
    readme = (ROOT / "README.md").read_text()
    assert f"`{name.upper()}`" in readme


def test_the_readme_opens_with_the_two_commands() -> None:
    head = (ROOT / "README.md").read_text().split("\n\n", 3)[:3]
    block = "\n".join(head)
    assert "make demo" in block and "make test" in block


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_the_sandbox_schema_is_the_contract_schema() -> None:
    shared = ROOT.parent / "shared" / "contract" / "oms-delivery-update.schema.json"
    ours = ROOT / "sandbox" / "oms-delivery-update.schema.json"
    if not shared.exists():  # a clone outside the workplace has no shared/ beside it
        pytest.skip("no ../shared beside the checkout")
    assert json.loads(ours.read_text()) == json.loads(shared.read_text())
