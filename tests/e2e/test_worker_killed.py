"""A Celery worker SIGKILLed while it holds tasks — prefetched, running, and waiting for a
retry countdown — with beat stopped: every affected event is done within 90 s at the
default lease settings, recovered by the poller alone (design.md section 3.6). Tasks
still waiting their turn in the broker when it died run once, not twice.

Real poller and worker processes, real Redis, moto's SQS, the sandbox API and OMS.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator

import pytest

from sandbox.stack import LocalStack, StackOptions
from tasks.keys import Keys
from tests.e2e.checks import pushes

pytestmark = pytest.mark.e2e

ORDERS = [f"322-KILL-{i:02d}" for i in range(8)]


@pytest.fixture(scope="module")
def stack(redis_url: str) -> Iterator[LocalStack]:
    options = StackOptions(
        redis_url=redis_url,
        extra_env={
            # one attempt per call, and a long first countdown: a task that meets an API
            # error waits inside the worker for its retry when the worker is killed
            "HTTP_MAX_ATTEMPTS": "1",
            "TASK_RETRY_BASE_SECONDS": "30",
            "TASK_RETRY_CAP_SECONDS": "60",
        },
    )
    with LocalStack(options) as running:
        running.start_poller()  # no beat: nothing but the poller can recover a lost task
        yield running


def record(stack: LocalStack, key: str) -> dict[str, str]:
    raw = stack.redis.hgetall(Keys(stack.options.key_prefix).event(key))
    return {k.decode(): v.decode() for k, v in raw.items() if k != b"body"}


def log_count(path_text: str, event: str) -> int:
    return sum(1 for line in path_text.splitlines() if f'"event": "{event}"' in line)


def waiting_in_the_broker(stack: LocalStack) -> set[str]:
    """The events whose sync task is in the Celery queue now (not taken by any worker)."""
    key = f"{stack.options.key_prefix}celery:{stack.options.key_prefix}sync"
    waiting = set()
    for raw in stack.redis.lrange(key, 0, -1):
        args, _, _ = json.loads(base64.b64decode(json.loads(raw)["body"]))
        waiting.add(str(args[1]))
    return waiting


def redispatched(stack: LocalStack) -> int:
    poller = next(p for p in stack.processes if p.name == "poller")
    total = 0
    for line in poller.log_path.read_text(errors="replace").splitlines():
        if '"lost_task_redispatched"' in line:
            total += int(json.loads(line)["count"])
    return total


def test_a_killed_workers_events_are_done_within_90_s_without_beat(stack: LocalStack) -> None:
    # Given eight deliveries in transit, an API that answers slowly, and whose first two
    # answers are errors: those two tasks wait for a 15-30 s retry countdown inside the
    # worker (4 threads), which meanwhile runs the next ones
    for order_id in ORDERS:
        stack.api.store.add_order(order_id, "bp-kill", [("li", 1, "d-1")])
        stack.api.store.update_delivery(order_id, "d-1", state="IN_TRANSIT")
    stack.api.set_latency(3.0)
    stack.api.inject("http503", 2)
    worker = stack.start_worker(concurrency=4)
    keys = [
        stack.send_event("PACKAGE_DELIVERY_IN_TRANSIT", o, "d-1")["detail"]["idempotencyKey"]
        for o in ORDERS
    ]

    def leased() -> set[str]:
        return {k for k in keys if "lease" in record(stack, k)}

    # When the worker holds two tasks in their countdown and others running (a query in
    # flight), each event leased by it ...
    stack.wait_until(
        lambda: (
            log_count(worker.log_path.read_text(errors="replace"), "sync_retry_scheduled") >= 2
            and len(leased()) >= 4
        ),
        timeout=60,
        what="two countdowns and two queries in flight",
    )
    # ... and it is SIGKILLed (an OOM kill, a spot reclaim), then replaced
    worker.kill_hard()
    killed_at = time.monotonic()
    held_by_the_dead = leased()  # leases outlive their process by up to 15 s
    waiting = waiting_in_the_broker(stack)
    stack.api.set_latency(0.0)
    stack.start_worker(concurrency=4)
    # Then every event is done and every delivery at the OMS, well within 90 s (the
    # leases die within EVENT_LEASE_SECONDS, 15 s by default)
    stack.wait_until(
        lambda: all(len(pushes(stack, o)) == 1 for o in ORDERS) and stack.settled(keys),
        timeout=90,
        what="every event done after the kill: " + stack.unsettled(keys),
    )
    assert time.monotonic() - killed_at < 90
    # ... the poller re-dispatched what the dead worker held (leased, or popped a moment
    # before the kill and not yet leased), and never what waited its turn in the broker
    again = {k for k in keys if record(stack, k).get("redispatches")}
    assert len(again) >= 2
    assert held_by_the_dead - waiting <= again, (held_by_the_dead, waiting, again)
    assert not again & waiting, (again, waiting)
    assert redispatched(stack) == len(again)
    assert all(record(stack, k).get("redispatches") == "1" for k in again)
    # ... nothing was parked, and no delivery was pushed twice
    assert stack.queue_counts(stack.dlq_url) == (0, 0)
    assert all(len(pushes(stack, o)) == 1 for o in ORDERS)
