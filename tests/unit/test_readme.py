"""The README documents every setting, and the contract names the schema the sandbox
validates pushes against."""

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


def test_the_contract_names_the_schema_the_sandbox_validates_against() -> None:
    # The repository stands alone: the body schema lives in it, and the contract says where
    schema = ROOT / "sandbox" / "oms-delivery-update.schema.json"
    assert json.loads(schema.read_text())["type"] == "object"
    assert (
        "`sandbox/oms-delivery-update.schema.json`" in (ROOT / "docs" / "contract.md").read_text()
    )
