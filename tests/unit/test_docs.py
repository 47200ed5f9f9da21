"""The README and docs/ stand alone: they name only files of this repository that exist,
nothing outside it, and every "design.md section N" or "buy-with-prime-api.md section N"
that the code and the docs cite is a section of the page in docs/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", ROOT / "CHANGELOG.md", *(ROOT / "docs").glob("*.md")])
TOP = ("config", "tasks", "worker", "sandbox", "tests", "bench", "deploy", "docs", ".github", ".ci")
#: a path into the repository, in running text or code spans
PATH = re.compile(rf"(?<![\w./<-])((?:{'|'.join(re.escape(t) for t in TOP)})/[\w./-]*[\w/])")
#: a file name in a code span or a link: `Dockerfile`, `CHANGELOG.md`, `requirements.lock`
FILE_NAME = re.compile(
    r"`([\w.-]+\.(?:md|py|json|ya?ml|toml|lock)|Dockerfile|Procfile|Makefile|LICENSE)`"
)
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
#: pages the code and docs cite by section
CITED = {
    "design.md": ROOT / "docs" / "design.md",
    "buy-with-prime-api.md": ROOT / "docs" / "buy-with-prime-api.md",
}
CITATION = re.compile(r"(design\.md|buy-with-prime-api\.md)(?: section| §| )\s?(\d+(?:\.\d+)?)")


def generated() -> tuple[str, ...]:
    """Folders .gitignore names: outputs (bench/results/) a doc may name before they exist."""
    lines = (ROOT / ".gitignore").read_text().splitlines()
    return tuple(line for line in lines if "/" in line.rstrip("/") and line.endswith("/"))


def referenced_paths(text: str) -> set[str]:
    found = {m.rstrip("/.") for m in PATH.findall(text)}
    return {p for p in found if not f"{p}/".startswith(generated())}


#: a relative path that climbs (`../x`), and an absolute path of this machine's tree
CLIMBING = re.compile(r"(?:\.\./)+[\w.-]+")
ABSOLUTE = re.compile(r"(?<![\w.:/])/(?:work|root|home)/[\w./-]+")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_docs_name_no_file_outside_the_repository(doc: Path) -> None:
    text = doc.read_text()
    for relative in CLIMBING.findall(text):
        target = (doc.parent / relative).resolve()
        inside = target.is_relative_to(ROOT) and target.exists()
        assert inside, f"{doc.name} points outside the repository: {relative}"
    absolute = ABSOLUTE.findall(text)
    assert not absolute, f"{doc.name} names paths of one machine: {absolute}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_file_the_docs_name_exists(doc: Path) -> None:
    text = doc.read_text()
    missing = sorted(p for p in referenced_paths(text) if not (ROOT / p).exists())
    missing += [
        name
        for name in FILE_NAME.findall(text)
        if not (ROOT / name).exists() and not (doc.parent / name).exists()
    ]
    missing += [
        target
        for target in LINK.findall(text)
        if "://" not in target and not (doc.parent / target).exists()
    ]
    assert not missing, f"{doc.relative_to(ROOT)} names files that do not exist: {missing}"


def sections(page: Path) -> set[str]:
    """``3``, ``3.1``… of every ``## 3.`` / ``### 3.1`` heading."""
    return set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.?\s", page.read_text(), re.MULTILINE))


def citing_files() -> list[Path]:
    patterns = ("*.py", "*.md", "*.toml", "*.yml", "*.yaml")
    found = [p for pattern in patterns for p in ROOT.rglob(pattern)]
    return sorted(p for p in found if ".venv" not in p.parts and ".git" not in p.parts)


def test_every_cited_section_exists() -> None:
    cited = 0
    for path in citing_files():
        for page, number in CITATION.findall(path.read_text()):
            cited += 1
            assert number in sections(CITED[page]), (
                f"{path.relative_to(ROOT)} cites {page} section {number}, which docs/{page} lacks"
            )
    assert cited > 10  # the code does cite them


def test_a_missing_file_or_section_would_be_caught() -> None:
    assert referenced_paths("see `deploy/ecs-task-definition.json` and tasks/gone.py.") == {
        "deploy/ecs-task-definition.json",
        "tasks/gone.py",
    }
    assert not (ROOT / "deploy" / "ecs-task-definition.json").exists()
    assert "9" not in sections(CITED["design.md"])
