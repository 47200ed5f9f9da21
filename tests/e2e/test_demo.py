"""``bwp-worker demo`` as a user runs it: a real subprocess on embedded Redis (REDIS_URL
unset), its own poller and Celery worker processes; it must end right and say so."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def run(args: list[str], timeout: float = 100) -> subprocess.CompletedProcess[str]:
    """Run ``args`` with REDIS_URL unset; on timeout SIGTERM it (the demo then stops its
    processes) and fail with what it printed."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["PYTHONIOENCODING"] = "utf-8"
    with subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()
            out, err = proc.communicate(timeout=30)
            pytest.fail(f"timed out after {timeout} s:\n{out}\n{err}")
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def test_the_demo_plays_its_story_and_ends_right_on_embedded_redis() -> None:
    # When the demo runs with nothing configured
    done = run([sys.executable, "-m", "worker", "demo"])
    out = done.stdout
    # Then it exits 0 and says why
    assert done.returncode == 0, f"{out}\n{done.stderr}"
    assert "embedded Redis" in out
    assert "✓ The OMS holds the order API's state for every delivery" in out
    # ... every distinct snapshot reached the OMS once: 11 for the default five orders
    # (10 state changes of 7 deliveries, and one carrier milestone)
    assert re.search(r"OMS pushes\s+11\s+\(0 with a repeated key\)", out), out
    assert re.search(r"order API calls\s+11\n", out), out
    assert "(1 PACKAGE_TRACKER_MILESTONE_CHANGED event)" in out
    # ... the trouble was absorbed, acknowledged or parked with its reason
    assert re.search(r"duplicates absorbed\s+1\s", out), out
    assert re.search(r"twins absorbed\s+[1-9]\d*\s", out), out
    assert re.search(r"unsupported, acknowledged\s+1\s+\(1 ORDER_CONFIRMED\)", out), out
    assert re.search(r"in the DLQ\s+1\s+\(1 malformed\)", out), out
    assert "malformed: body is not JSON" in out
    # ... and the table shows seven deliveries, each as the API has it
    rows = [line for line in out.splitlines() if line.startswith("  322-")]
    assert len(rows) == 7
    assert all(row.endswith("✓") for row in rows), "\n".join(rows)
    # ... including the split line item: 2 units delivered in d-1, 1 cancelled in d-2
    split = [row for row in rows if row.startswith("  322-4401001-7700407")]
    assert "li-3 x2" in split[0] and "DELIVERED" in split[0]
    assert "li-3 x1" in split[1] and "CANCELLED (UNFULFILLABLE)" in split[1]
    # ... while the worker processes' JSON logs stayed out of the terminal
    assert '"event":' not in out + done.stderr


def test_without_the_sandbox_extra_the_demo_exits_2_with_one_line() -> None:
    # Given moto (part of the sandbox extra) cannot be imported
    script = (
        "import sys; sys.modules['moto'] = sys.modules['moto.server'] = None; "
        "sys.argv = ['bwp-worker', 'demo']; from worker.cli import main; main()"
    )
    done = run([sys.executable, "-c", script], timeout=60)
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert "pip install 'bwp-worker[sandbox]'" in line
    assert done.stdout == ""


def test_keep_running_leaves_flower_up_until_ctrl_c() -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["PYTHONIOENCODING"] = "utf-8"
    args = [sys.executable, "-m", "worker", "demo", "--orders", "4", "--keep-running"]
    with subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        assert proc.stdout is not None
        try:
            # When the story has ended right and everything stays up
            lines: list[str] = []
            while not lines or not lines[-1].startswith("Ctrl-C stops everything"):
                line = proc.stdout.readline()
                assert line, "the demo ended early:\n" + "".join(lines)
                lines.append(line)
            text = "".join(lines)
            assert "Everything stays up (Flower sees w1@" in text
            # Then Flower answers and lists the worker
            [flower] = re.findall(r"Flower\s+(http://127\.0\.0\.1:\d+)", text)
            workers = httpx.get(f"{flower}/api/workers", timeout=10).json()
            assert any(name.startswith("w1@") for name in workers)
            assert "export SQS_QUEUE_URL=" in text
        finally:
            # And Ctrl-C stops everything cleanly
            proc.send_signal(signal.SIGINT)
            rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, rest
    assert "Stopped everything" in rest
