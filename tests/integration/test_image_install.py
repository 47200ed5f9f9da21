"""The image's install step, without Docker: the lock alone makes a working installation.

Replays the Dockerfile's two stages in fresh virtual environments: a build environment
with requirements-build.lock builds the project's wheel from exactly what the Dockerfile
copies, and a runtime environment installs requirements.lock with hashes required, then
the wheel without dependencies. ``pip check`` and the imports prove the lock complete.

Needs PyPI (pip's cache makes reruns fast). ``BWP_SKIP_IMAGE_INSTALL=1`` skips it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_lock import dockerfile, read_lock

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        os.environ.get("BWP_SKIP_IMAGE_INSTALL") == "1", reason="BWP_SKIP_IMAGE_INSTALL=1"
    ),
]

#: what reaches each package's metadata: walks Requires-Dist with markers and extras
REACHABLE = """
import json, sys
from importlib.metadata import distribution
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
# the lock is resolved for any 3.11 (uv's --python-version 3.11 means 3.11.0 and later)
target = {"python_full_version": "3.11.0"}
seen, todo = set(), [(canonicalize_name(sys.argv[1]), ())]
while todo:
    name, extras = todo.pop()
    if (name, extras) in seen:
        continue
    seen.add((name, extras))
    for raw in distribution(name).requires or []:
        req = Requirement(raw)
        wanted = [{**target, "extra": e} for e in (*extras, "")]
        if req.marker is None or any(req.marker.evaluate(env) for env in wanted):
            todo.append((canonicalize_name(req.name), tuple(sorted(req.extras))))
seen = {name for name, _ in seen}
print(json.dumps(sorted(seen)))
"""


def clean_environment() -> dict[str, str]:
    """This machine's pip settings (extra indexes, local wheels, constraints) stay out:
    the build sees PyPI only, as a docker build would. pip's cache stays on."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    for kept in ("PIP_CERT", "PIP_DEFAULT_TIMEOUT", "PIP_CACHE_DIR"):
        if kept in os.environ:
            env[kept] = os.environ[kept]
    return env


def run(argv: list[str | Path], cwd: Path) -> str:
    done = subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, f"{' '.join(map(str, argv))}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def venv(path: Path) -> Path:
    run([sys.executable, "-m", "venv", path], cwd=path.parent)
    return path / "bin"


def copied_sources() -> list[str]:
    """What the Dockerfile's build stage COPYs from the build context."""
    sources = []
    for line in dockerfile():
        if line.upper().startswith("COPY ") and "--from=" not in line:
            sources += line.split()[1:-1]
    return sources


def test_the_lock_installs_and_runs_the_package_as_the_image_does(tmp_path: Path) -> None:
    # Given the build context as the Dockerfile copies it, and nothing else
    context = tmp_path / "context"
    context.mkdir()
    for source in copied_sources():
        origin = ROOT / source
        if origin.is_dir():
            shutil.copytree(origin, context / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, context / source)

    # When the build stage installs the locked build backend and builds the project's wheel
    build = venv(tmp_path / "build")
    run(
        [build / "pip", "install", "--quiet", "--no-deps", "--require-hashes",
         "--only-binary", ":all:", "-r", "requirements-build.lock"],
        cwd=context,
    )  # fmt: skip
    run(
        [build / "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", tmp_path / "project", "."],
        cwd=context,
    )  # fmt: skip
    [wheel] = (tmp_path / "project").glob("*.whl")

    # And the final stage installs the runtime lock with hashes required, then the wheel alone
    runtime = venv(tmp_path / "runtime")
    run(
        [runtime / "pip", "install", "--quiet", "--no-deps", "--require-hashes",
         "--only-binary", ":all:", "-r", context / "requirements.lock"],
        cwd=tmp_path,
    )  # fmt: skip
    run([runtime / "pip", "install", "--quiet", "--no-index", "--no-deps", wheel], cwd=tmp_path)

    # Then the lock satisfies everything the project declares, and the entry points import
    run([runtime / "pip", "check"], cwd=tmp_path)
    run([runtime / "python", "-c", "import worker.cli, tasks"], cwd=tmp_path)
    assert "poll" in run([runtime / "bwp-worker", "--help"], cwd=tmp_path)

    # And every locked package is one the project reaches (nothing stale rides along)
    reached = json.loads(run([runtime / "python", "-c", REACHABLE, "bwp-worker"], cwd=tmp_path))
    pins = read_lock(ROOT / "requirements.lock")
    assert set(pins) - set(reached) == set(), "stale pins: run `make lock`"
