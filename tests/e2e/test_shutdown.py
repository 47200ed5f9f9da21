"""SIGTERM to the poller: it finishes the batch in hand, hands back what it prefetched
(visibility 0) and exits 0 within seconds, so another poller gets those messages at once
instead of after the visibility timeout."""

from __future__ import annotations

import json
import signal
import time

import pytest
import redis

from sandbox.stack import LocalStack, StackOptions
from tasks.events.samples import build_event, to_body

pytestmark = pytest.mark.e2e

VISIBILITY = 300  # far longer than the test: a message only comes back if handed back


def summary_line(log_text: str) -> dict[str, object]:
    for line in reversed(log_text.splitlines()):
        if '"poller_stopped"' in line:
            return dict(json.loads(line))
    raise AssertionError("no poller_stopped summary line")


def test_sigterm_hands_back_prefetched_messages_and_exits_quickly() -> None:
    # Given 20 events queued and a poller whose Redis writes are paused, so that it holds
    # one batch in hand (blocked on the ledger) and one prefetched batch
    with LocalStack(StackOptions(sqs_visibility_timeout=VISIBILITY)) as stack:
        keys = []
        for i in range(20):
            event = build_event(
                "PACKAGE_DELIVERED",
                business_product_id="bp",
                order_id=f"322-SIG-{i}",
                delivery_id="d-1",
            )
            keys.append(event["detail"]["idempotencyKey"])
            stack.send(to_body(event))
        admin = redis.Redis.from_url(stack.redis_url)
        admin.execute_command("CLIENT", "PAUSE", "30000", "WRITE")
        poller = stack.start_poller(SQS_WAIT_TIME_SECONDS="20")
        stack.wait_until(lambda: stack.queue_counts()[1] == 20, what="both batches received")
        # When SIGTERM arrives (and Redis answers again)
        started = time.monotonic()
        poller.signal(signal.SIGTERM)
        admin.execute_command("CLIENT", "UNPAUSE")
        code = poller.popen.wait(15)
        elapsed = time.monotonic() - started
        admin.close()
        # Then it exits 0 within seconds and says what it handed back
        assert code == 0
        assert elapsed < 10
        summary = summary_line(poller.log_path.read_text())
        # (moto may split the 20 over more than two receives: count, don't assume 10 + 10)
        assert summary["handed_back"] > 0
        assert summary["dispatched"] + summary["handed_back"] == 20
        # ... and a second poller gets the handed-back messages long before VISIBILITY
        stack.start_poller(SQS_WAIT_TIME_SECONDS="1")
        stack.wait_until(
            lambda: all(stack.ledger_state(k) == "queued" for k in keys),
            timeout=30,
            what="all dispatched",
        )
        assert stack.queue_counts() == (0, 0)


def test_sigterm_during_an_idle_long_poll_exits_quickly() -> None:
    with LocalStack(StackOptions()) as stack:
        poller = stack.start_poller(SQS_WAIT_TIME_SECONDS="20", SHUTDOWN_GRACE_SECONDS="2")
        stack.wait_until(
            lambda: "poller_started" in poller.log_path.read_text(), what="poller start"
        )
        started = time.monotonic()
        poller.signal(signal.SIGTERM)
        assert poller.popen.wait(15) == 0
        assert time.monotonic() - started < 10
        assert summary_line(poller.log_path.read_text())["handed_back"] == 0
