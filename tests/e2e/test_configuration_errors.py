"""Every process refuses bad configuration with one line naming the variable, exit 2,
and no traceback (contract: Processes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from sandbox.http import serve_asgi
from sandbox.sqs import SqsServer

pytestmark = pytest.mark.e2e

WORKER = [sys.executable, "-m", "celery", "-A", "tasks", "worker", "--pool", "threads", "-c", "1"]
POLL = [sys.executable, "-m", "worker", "poll"]
#: never os.devnull: a beat that gets as far as its scheduler replaces a schedule file it
#: cannot read, and as root that turns /dev/null into a regular file for the whole machine
SCHEDULE = str(Path(tempfile.gettempdir()) / f"bwp-test-beat-schedule-{os.getpid()}")
BEAT = [sys.executable, "-m", "celery", "-A", "tasks", "beat", "--schedule", SCHEDULE]
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


# --- the queues, checked at the poller's start (issue 21) --------------------------------
#: what SQS answers an IAM denial with (JSON protocol), its message naming a key id
DENIED = (
    403,
    {"x-amzn-query-error": "AccessDenied;Sender"},
    {
        "__type": "com.amazon.coral.service#AccessDeniedException",
        "message": "User: arn:aws:sts::123456789012:assumed-role/bwp-worker-poller/AKIAIOSFODNN7"
        "EXAMPLE is not authorized to perform: sqs:receivemessage on resource: bwp-events",
    },
)
ATTRIBUTES = (200, {}, {"Attributes": {"QueueArn": "arn:aws:sqs:us-east-1:123456789012:q"}})


class SqsStandIn:
    """An SQS endpoint answering each action as told, counting the calls: for what moto
    cannot do (IAM denials)."""

    def __init__(self, answers: dict[str, tuple[int, dict[str, str], dict[str, Any]]]) -> None:
        self.answers = answers
        self.calls: dict[str, int] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        while (await receive()).get("more_body"):
            pass
        headers = dict(scope["headers"])
        action = headers.get(b"x-amz-target", b"").decode().removeprefix("AmazonSQS.")
        self.calls[action] = self.calls.get(action, 0) + 1
        status, extra, body = self.answers.get(action, ATTRIBUTES)
        payload = json.dumps(body).encode()
        response_headers = [(b"content-type", b"application/x-amz-json-1.0")]
        response_headers += [(k.encode(), v.encode()) for k, v in extra.items()]
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": payload})


def aws_env(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "METRICS_PORT": "0",
    }


def configuration_errors(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if "configuration error" in line]


@pytest.mark.parametrize("missing", ["SQS_QUEUE_URL", "SQS_DLQ_URL"])
def test_poller_stops_at_start_when_a_queue_does_not_exist(
    missing: str, sqs_server: SqsServer, queues: tuple[str, str], redis_url: str
) -> None:
    # Given one of the two queues deleted (or never created)
    queue_url, dlq_url = queues
    env = {"SQS_QUEUE_URL": queue_url, "SQS_DLQ_URL": dlq_url}
    env[missing] += "-gone"
    # When the poller starts
    result = run(POLL, REDIS_URL=redis_url, **aws_env(sqs_server.url), **env)
    # Then it stops: one line naming the variable and SQS's error code, exit 2
    assert result.returncode == 2, result.stderr
    [line] = configuration_errors(result)
    assert f"{missing}: queue " in line and "NonExistentQueue" in line, line
    assert "Traceback" not in result.stderr


def test_poller_stops_at_start_when_access_is_denied(redis_url: str) -> None:
    # Given an SQS that denies this role everything
    stand_in = SqsStandIn({"GetQueueAttributes": DENIED, "ReceiveMessage": DENIED})
    with serve_asgi(stand_in) as server:
        result = run(
            POLL,
            REDIS_URL=redis_url,
            SQS_QUEUE_URL=f"{server.url}/123456789012/bwp-events",
            **aws_env(server.url),
        )
    # Then the poller stops with the code and the redacted message, never receiving
    assert result.returncode == 2, result.stderr
    [line] = configuration_errors(result)
    assert "SQS_QUEUE_URL: queue bwp-events: AccessDenied: User:" in line, line
    assert "not authorized to perform: sqs:receivemessage" in line
    assert "AKIAIOSFODNN7EXAMPLE" not in result.stderr
    assert "ReceiveMessage" not in stand_in.calls
    assert "Traceback" not in result.stderr


def test_a_denial_after_the_start_is_logged_with_its_code_and_retried(redis_url: str) -> None:
    # Given a queue that answered at the start and denies receives afterwards
    stand_in = SqsStandIn({"ReceiveMessage": DENIED})
    with serve_asgi(stand_in) as server:
        env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "REDIS_KEY_PREFIX": "bwp-cfg-test:",
            "SQS_QUEUE_URL": f"{server.url}/123456789012/bwp-events",
            **aws_env(server.url),
        }
        env.pop("SQS_DLQ_URL", None)
        poller = subprocess.Popen(POLL, env=env, stderr=subprocess.PIPE, text=True)
        try:
            # When it has tried three times
            deadline = time.monotonic() + 60
            while stand_in.calls.get("ReceiveMessage", 0) < 3 and time.monotonic() < deadline:
                assert poller.poll() is None, "the poller stopped"
                time.sleep(0.05)
            assert stand_in.calls.get("ReceiveMessage", 0) >= 3
        finally:
            poller.send_signal(signal.SIGTERM)
            _, stderr = poller.communicate(timeout=60)
    # Then each failure was logged with SQS's code and the redacted message, and the
    # poller kept running until it was told to stop
    failures = [json.loads(line) for line in stderr.splitlines() if "receive_failed" in line]
    assert len(failures) >= 2, stderr
    for failure in failures:
        assert failure["error_code"] == "AccessDenied"
        assert "not authorized to perform" in failure["error_message"]
    assert "AKIAIOSFODNN7EXAMPLE" not in stderr
    assert poller.returncode == 0, stderr
