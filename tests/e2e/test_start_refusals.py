"""Processes that would expose something refuse to start: one line, exit 2, no secret in
the output. A worker whose pushes would be neither signed nor authenticated; any process
handed a Redis password to send in clear off loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

WORKER = [sys.executable, "-m", "celery", "-A", "tasks", "worker", "--pool", "threads", "-c", "1"]
#: never os.devnull: a beat that gets as far as its scheduler replaces a schedule file it
#: cannot read, and as root that turns /dev/null into a regular file for the whole machine
SCHEDULE = str(Path(tempfile.gettempdir()) / f"bwp-test-beat-schedule-{os.getpid()}")
BEAT = [sys.executable, "-m", "celery", "-A", "tasks", "beat", "--schedule", SCHEDULE]
POLL = [sys.executable, "-m", "worker", "poll"]
PASSWORD = "redis-pw-H3X8-never-printed"
WORKER_ENV = {
    "BWP_CLIENT_ID": "id",
    "BWP_CLIENT_SECRET": "client-secret-value",
    "OMS_URL": "https://oms.invalid/deliveries",
}


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BWP_", "SQS_", "OMS_", "ALLOW_", "CELERY_", "REDIS_"))
    }
    # a process that started instead would run until killed: the timeout fails the test
    return subprocess.run(
        command, env={**base, **env}, capture_output=True, text=True, timeout=45, check=False
    )


@pytest.mark.parametrize(
    ("command", "env", "named"),
    [
        (
            WORKER,
            WORKER_ENV,
            "OMS_SIGNING_SECRET or OMS_AUTH_TOKEN is required: pushes would be neither signed"
            " nor authenticated (ALLOW_UNSIGNED_OMS=true allows it)",
        ),
        (
            POLL,
            {
                "SQS_QUEUE_URL": "http://127.0.0.1:9/000000000000/q",
                "REDIS_URL": f"redis://:{PASSWORD}@redis.invalid:6379/0",
            },
            "REDIS_URL: redis:// sends its password",
        ),
        (
            WORKER,
            {
                **WORKER_ENV,
                "OMS_SIGNING_SECRET": "signing-secret-value",
                "CELERY_BROKER_URL": f"redis://:{PASSWORD}@broker.invalid:6379/1",
            },
            "CELERY_BROKER_URL: redis:// sends its password",
        ),
        (BEAT, {"REDIS_URL": f"redis://:{PASSWORD}@redis.invalid/0"}, "REDIS_URL: redis://"),
    ],
)
def test_an_exposing_configuration_stops_the_process_in_one_line(
    redis_url: str, command: list[str], env: dict[str, str], named: str
) -> None:
    result = run(command, {"REDIS_URL": redis_url, "REDIS_KEY_PREFIX": "bwp-refusal:", **env})
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if "configuration error" in line]
    assert len(errors) == 1 and named in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    shown = result.stdout + result.stderr
    for secret in (PASSWORD, "client-secret-value", "signing-secret-value"):
        assert secret not in shown
