"""Every process refuses bad configuration with one line naming the variable, exit 2,
and no traceback (contract: Processes)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e

WORKER = [sys.executable, "-m", "celery", "-A", "tasks", "worker", "--pool", "threads", "-c", "1"]
POLL = [sys.executable, "-m", "worker", "poll"]
BEAT = [sys.executable, "-m", "celery", "-A", "tasks", "beat", "--schedule", os.devnull]
#: a well-formed queue URL nothing answers on (port 9 is discard)
LOCAL_QUEUE = "http://127.0.0.1:9/000000000000/q"
WORKER_ENV = {"BWP_CLIENT_ID": "id", "BWP_CLIENT_SECRET": "s3cret-value"}


def run(command: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("BWP_", "SQS_", "OMS_"))}
    return subprocess.run(
        command, env={**base, **env}, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    ("command", "env", "named"),
    [
        (POLL, {}, "SQS_QUEUE_URL"),
        (POLL, {"SQS_QUEUE_URL": LOCAL_QUEUE, "METRICS_PORT": "not-a-port"}, "METRICS_PORT"),
        (POLL, {"SQS_QUEUE_URL": LOCAL_QUEUE, "BWP_API_VERSION": "2023-01-01"}, "BWP_API_VERSION"),
        (
            WORKER,
            {"OMS_URL": "https://oms.example", "BWP_CLIENT_SECRET": "s3cret-value"},
            "BWP_CLIENT_ID",
        ),
        (
            WORKER,
            {"BWP_CLIENT_ID": "id", "BWP_CLIENT_SECRET": "", "OMS_URL": "https://oms.example"},
            "BWP_CLIENT_SECRET",
        ),
        (POLL, {"SQS_QUEUE_URL": LOCAL_QUEUE, "CLAIM_TTL_SECONDS": "90"}, "SQS_VISIBILITY_TIMEOUT"),
        (
            WORKER,
            {"BWP_CLIENT_ID": "id", "BWP_CLIENT_SECRET": "s3cret-value", "OMS_URL": "http://oms"},
            "OMS_URL: http:// sends credentials in clear",
        ),
        # URLs, regions and queues are validated at start (issue 21): no traceback
        (POLL, {"SQS_QUEUE_URL": LOCAL_QUEUE, "REDIS_URL": "localhost:6379"}, "REDIS_URL"),
        (POLL, {"SQS_QUEUE_URL": LOCAL_QUEUE, "AWS_REGION": "us east 1"}, "AWS_REGION"),
        (POLL, {"SQS_QUEUE_URL": "not-a-url"}, "SQS_QUEUE_URL"),
        (
            POLL,
            {"SQS_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/bwp-events"},
            "AWS_REGION=eu-west-1",
        ),
        (POLL, {"SQS_QUEUE_URL": LOCAL_QUEUE, "SQS_DLQ_URL": "bwp-events-dlq"}, "SQS_DLQ_URL"),
        (POLL, {"SQS_QUEUE_URL": LOCAL_QUEUE, "HTTPS_PROXY": "proxy.invalid:3128"}, "HTTPS_PROXY"),
        (WORKER, {**WORKER_ENV, "OMS_URL": "oms.example/deliveries"}, "OMS_URL"),
        (WORKER, {**WORKER_ENV, "OMS_URL": "https://oms.invalid", "REDIS_URL": "h:1"}, "REDIS_URL"),
        (BEAT, {"CELERY_BROKER_URL": "localhost:6379"}, "CELERY_BROKER_URL"),
        (BEAT, {"AWS_ENDPOINT_URL": "localhost:4566"}, "AWS_ENDPOINT_URL"),
    ],
)
def test_bad_configuration_is_one_line_and_exit_2(
    command: list[str], env: dict[str, str], named: str, redis_url: str
) -> None:
    result = run(command, **{"REDIS_URL": redis_url, "REDIS_KEY_PREFIX": "bwp-cfg-test:", **env})
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "configuration error" in line]
    assert len(errors) == 1 and named in errors[0]
    assert "Traceback" not in result.stderr
    assert "s3cret-value" not in result.stderr + result.stdout
