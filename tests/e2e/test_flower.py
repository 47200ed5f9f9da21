"""Flower, a real ``celery -A tasks flower`` process: it refuses to start without
authentication, answers only with credentials, listens where the operator says, and
shows no event body for any task (first publish, Celery retry, sweep)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from sandbox.stack import LocalStack, StackOptions
from tasks.events.samples import to_body
from tests.e2e.checks import pushes
from tests.e2e.conftest import lost_task

pytestmark = pytest.mark.e2e

FLOWER = [sys.executable, "-m", "celery", "-A", "tasks", "flower"]
USER, PASSWORD = "ops", "flower-Q7Z2-password"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def flower_env(redis_url: str, **extra: str) -> dict[str, str]:
    """The machine's environment without any Flower or bwp-worker setting, plus ``extra``."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FLOWER_", "ALLOW_", "BWP_", "OMS_", "SQS_", "CELERY_"))
    }
    prefix = "bwp-flower-test:"
    return {**base, "REDIS_URL": redis_url, "REDIS_KEY_PREFIX": prefix, **extra}


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        ([], {}, "Flower needs authentication: set FLOWER_BASIC_AUTH"),
        # the local-only allowance does not open Flower on every interface
        ([], {"ALLOW_UNAUTHENTICATED_FLOWER": "true"}, "applies on loopback only"),
        (["--address=0.0.0.0"], {"ALLOW_UNAUTHENTICATED_FLOWER": "true"}, "on 0.0.0.0"),
        # a user without a password is no authentication
        ([], {"FLOWER_BASIC_AUTH": "ops"}, "FLOWER_BASIC_AUTH: every entry must be user:password"),
    ],
)
def test_flower_refuses_to_start_without_authentication(
    redis_url: str, args: list[str], env: dict[str, str], named: str
) -> None:
    # Given Flower started the Procfile's way, with no usable authentication
    port = str(free_port())
    done = subprocess.run(
        [*FLOWER, f"--port={port}", *args],
        env=flower_env(redis_url, **env),
        capture_output=True,
        text=True,
        timeout=30,  # a Flower that started would run until killed: this fails then
        check=False,
    )
    # Then it stops at once: exit 2, one line naming what to set, no traceback
    assert done.returncode == 2, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, errors
    assert errors[0].startswith("bwp-worker: configuration error: ")
    assert named in errors[0]


def test_flower_on_loopback_may_run_open_when_allowed(redis_url: str) -> None:
    # Given the local-only allowance and Flower bound to loopback (the demo's way)
    port = free_port()
    env = flower_env(redis_url, ALLOW_UNAUTHENTICATED_FLOWER="true", FLOWER_ADDRESS="127.0.0.1")
    flower = subprocess.Popen(
        [*FLOWER, f"--port={port}"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        # Then it starts and serves its UI without credentials
        assert wait_for_status(flower, f"http://127.0.0.1:{port}/", auth=None) == 200
    finally:
        flower.terminate()
        flower.wait(15)


def wait_for_status(flower: subprocess.Popen[bytes], url: str, auth: tuple[str, str] | None) -> int:
    """The first HTTP status Flower answers ``url`` with (polling until it listens)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if flower.poll() is not None:
            raise AssertionError(f"flower exited {flower.returncode}")
        try:
            return httpx.get(url, auth=auth, timeout=5).status_code
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"flower never answered {url}")


def flower_tasks(url: str) -> dict[str, dict[str, Any]]:
    reply = httpx.get(f"{url}/api/tasks", auth=(USER, PASSWORD), timeout=10)
    reply.raise_for_status()
    tasks: dict[str, dict[str, Any]] = reply.json()
    return tasks


def test_an_authenticated_flower_shows_no_event_body_for_any_publish(redis_url: str) -> None:
    options = StackOptions(
        redis_url=redis_url,
        # one attempt per call: a failed push becomes a Celery retry (self.retry)
        extra_env={"HTTP_MAX_ATTEMPTS": "1"},
    )
    with LocalStack(options) as stack:
        stack.start_poller()
        stack.start_worker()
        port = free_port()
        # Given Flower with basic auth from its variable, listening where it is told
        stack.start_flower(
            port,
            FLOWER_BASIC_AUTH=f"{USER}:{PASSWORD}",
            FLOWER_ADDRESS="127.0.0.2",
            CELERY_BROKER_URL=stack.redis_url,
        )
        url = f"http://127.0.0.2:{port}"
        stack.wait_until(lambda: answers(url), what="Flower listening on 127.0.0.2")
        # Then it asks for credentials, and answers with them
        assert httpx.get(f"{url}/", timeout=5).status_code == 401
        assert httpx.get(f"{url}/api/tasks", timeout=5).status_code == 401
        assert httpx.get(f"{url}/", auth=(USER, PASSWORD), timeout=5).status_code == 200
        # and it listens on the address it was given, not on every interface
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
        stack.wait_until(lambda: seen_workers(url), what="Flower sees the worker")

        # When an event goes through the poller (the warm-up: Flower's events are live)
        first = sync_event(stack, "322-FLW-1")
        stack.wait_until(lambda: len(pushes(stack, "322-FLW-1")) == 1, what="first push")
        stack.wait_until(lambda: tasks_for(url, first) != [], what="Flower saw the task")
        # and one whose first push fails, so the task retries through Celery
        stack.oms.fail_next(1, status=503)
        retried = sync_event(stack, "322-FLW-2")
        stack.wait_until(lambda: len(pushes(stack, "322-FLW-2")) == 1, what="push after retry")
        # and one whose task was lost, which the sweep publishes again
        swept = lost_task(stack, "322-FLW-3")
        stack.wait_until(lambda: len(pushes(stack, "322-FLW-3")) == 1, what="swept event pushed")
        stack.wait_until(
            lambda: (
                any(t.get("retries") for t in tasks_for(url, retried))
                and tasks_for(url, swept) != []
            ),
            what="Flower saw the retry and the swept task",
        )

        # Then no task Flower shows carries any of the bodies
        shown = flower_tasks(url).values()
        bodies = {key: body for key, body in (first, retried, swept)}
        assert {t["name"] for t in shown} == {"bwp.sync_delivery"}
        for task in shown:
            for key, body in bodies.items():
                if repr(key) in task["args"]:
                    assert task["args"] == f"['<event body, {len(body)} characters>', {key!r}]"
            assert "322-FLW-" not in task["args"] + task["kwargs"], task


def answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=2)
    except httpx.TransportError:
        return False
    return True


def seen_workers(url: str) -> bool:
    reply = httpx.get(
        f"{url}/api/workers", params={"refresh": "1"}, auth=(USER, PASSWORD), timeout=10
    )
    return reply.status_code == 200 and bool(reply.json())


def tasks_for(url: str, event: tuple[str, str]) -> list[dict[str, Any]]:
    key = repr(event[0])
    return [t for t in flower_tasks(url).values() if key in (t.get("args") or "")]


def sync_event(stack: LocalStack, order_id: str) -> tuple[str, str]:
    """Send an IN_TRANSIT event for a new order; (dedup key, body)."""
    stack.api.store.add_order(order_id, "bp-flower", [("li", 1, "d-1")])
    stack.api.store.update_delivery(order_id, "d-1", state="IN_TRANSIT")
    event = stack.send_event("PACKAGE_DELIVERY_IN_TRANSIT", order_id, "d-1")
    return event["detail"]["idempotencyKey"], to_body(event)
