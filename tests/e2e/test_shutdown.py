"""SIGTERM to the poller: it finishes the batch in hand, waits for its own in-flight long
poll to return (else that poll would take back what is handed back and hide it for the
visibility timeout), hands back everything it holds unsettled (visibility 0) and exits 0
within ECS's stop timeout, so another poller gets those messages at once."""

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
        poller = stack.start_poller(SQS_WAIT_TIME_SECONDS="5", SHUTDOWN_GRACE_SECONDS="2")
        stack.wait_until(lambda: stack.queue_counts()[1] == 20, what="both batches received")
        # When SIGTERM arrives (and Redis answers again)
        started = time.monotonic()
        poller.signal(signal.SIGTERM)
        admin.execute_command("CLIENT", "UNPAUSE")
        code = poller.popen.wait(20)
        elapsed = time.monotonic() - started
        admin.close()
        # Then it exits 0 within its long poll's wait plus the grace, and says what it
        # handed back: the prefetched batch, and the dispatched one whose tasks have not
        # run (no worker here)
        assert code == 0
        assert elapsed < 5 + 2 + 3
        summary = summary_line(poller.log_path.read_text())
        # (moto may split the 20 over more than two receives: count, don't assume 10 + 10)
        assert 0 < summary["dispatched"] < 20
        assert summary["handed_back"] == 20
        assert stack.queue_counts() == (20, 0)
        # ... and a second poller gets every message long before VISIBILITY, dispatches
        # the rest, and holds all 20 until their tasks are done
        stack.start_poller(SQS_WAIT_TIME_SECONDS="1")
        stack.wait_until(
            lambda: (
                all(stack.ledger_state(k) == "queued" for k in keys)
                and stack.queue_counts() == (0, 20)
            ),
            timeout=30,
            what="all dispatched and held",
        )


def test_sigterm_during_an_idle_long_poll_waits_for_it_then_exits() -> None:
    with LocalStack(StackOptions()) as stack:
        poller = stack.start_poller(SQS_WAIT_TIME_SECONDS="6", SHUTDOWN_GRACE_SECONDS="2")
        stack.wait_until(
            lambda: "poller_started" in poller.log_path.read_text(), what="poller start"
        )
        started = time.monotonic()
        poller.signal(signal.SIGTERM)
        # Then it exits within its long poll's wait plus the grace (well inside 30 s)
        assert poller.popen.wait(20) == 0
        assert time.monotonic() - started < 6 + 2 + 3
        assert summary_line(poller.log_path.read_text())["handed_back"] == 0


def test_messages_a_long_poll_takes_during_shutdown_are_handed_back() -> None:
    # Given an idle poller in a long poll, and SIGTERM arriving just before messages do
    with LocalStack(StackOptions(sqs_visibility_timeout=VISIBILITY)) as stack:
        poller = stack.start_poller(SQS_WAIT_TIME_SECONDS="5", SHUTDOWN_GRACE_SECONDS="2")
        stack.wait_until(
            lambda: "poller_started" in poller.log_path.read_text(), what="poller start"
        )
        time.sleep(0.5)  # its first long poll is in flight
        poller.signal(signal.SIGTERM)
        for i in range(3):
            stack.send(
                to_body(
                    build_event(
                        "PACKAGE_DELIVERED",
                        business_product_id="bp",
                        order_id=f"322-LATE-{i}",
                        delivery_id="d-1",
                    )
                )
            )
        assert poller.popen.wait(20) == 0
        # Then whatever that last poll took is visible again: nothing hidden for VISIBILITY
        stack.wait_until(lambda: stack.queue_counts() == (3, 0), timeout=5, what="all visible")
