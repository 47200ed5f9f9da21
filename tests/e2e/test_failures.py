"""Events that fail for good end in the DLQ with their reason and a released dedup record;
transient failures are retried until they succeed. Real poller and worker processes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.stack import LocalStack, StackOptions
from tests.e2e.checks import pushes

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(redis_url: str) -> Iterator[LocalStack]:
    options = StackOptions(
        redis_url=redis_url,
        extra_env={
            "TASK_MAX_RETRIES": "2",
            "NOT_FOUND_MAX_RETRIES": "1",
            "TASK_RETRY_CAP_SECONDS": "1",
        },
    )
    with LocalStack(options) as running:
        running.start_poller()
        running.start_worker()
        yield running


def parked(stack: LocalStack) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while True:
        reply = stack.sqs.receive_message(
            QueueUrl=stack.dlq_url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            VisibilityTimeout=0,
        )
        batch = reply.get("Messages", [])
        new = [m for m in batch if m["MessageId"] not in {f["MessageId"] for f in found}]
        if not new:
            return found
        found += new


def park_of(stack: LocalStack, key: str) -> dict[str, str]:
    for message in parked(stack):
        attrs = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
        if attrs.get("bwp-event-id") == key:
            return {**attrs, "body": message["Body"]}
    raise AssertionError(f"{key} not parked")


def send_for(
    stack: LocalStack, order_id: str, state: str = "IN_TRANSIT"
) -> tuple[dict[str, Any], str]:
    stack.api.store.add_order(order_id, "bp-fail", [("li", 1, "d-1")])
    stack.api.store.update_delivery(order_id, "d-1", state=state)
    event = stack.send_event("PACKAGE_DELIVERY_IN_TRANSIT", order_id, "d-1")
    return event, event["detail"]["idempotencyKey"]


def wait_parked(stack: LocalStack, key: str) -> dict[str, str]:
    stack.wait_until(
        lambda: any(
            {k: v["StringValue"] for k, v in m["MessageAttributes"].items()}.get("bwp-event-id")
            == key
            for m in parked(stack)
        ),
        timeout=60,
        what=f"{key} parked",
    )
    return park_of(stack, key)


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (("validation", 1), "permanent-api-error"),
        # denied with the tracker fields and without them: Read Order itself is missing
        (("access_denied", 2), "permanent-api-error"),
        (("not_found", 10), "permanent-api-error"),
    ],
)
def test_an_api_failure_that_does_not_heal_parks_the_event(
    stack: LocalStack, fault: tuple[str, int], kind: str
) -> None:
    order_id = f"322-FAIL-{fault[0]}"
    stack.api.inject(*fault)
    event, key = send_for(stack, order_id)
    found = wait_parked(stack, key)
    stack.api.clear_faults()
    # Then: parked with its kind and reason, body unchanged, the dedup record says parked
    # (a replay claims it anew), and the poller deleted the message it held
    assert found["bwp-error-kind"] == kind
    assert "\n" not in found["bwp-error"] and found["bwp-error"]
    assert json.loads(found["body"]) == event
    assert stack.ledger_state(key) == "parked"
    assert pushes(stack, order_id) == []
    stack.wait_until(lambda: stack.queue_counts() == (0, 0), timeout=10, what="message deleted")


def test_an_oms_refusal_parks_the_event_and_a_replay_delivers_it(stack: LocalStack) -> None:
    stack.oms.fail_next(1, status=422)
    _, key = send_for(stack, "322-FAIL-OMS")
    found = wait_parked(stack, key)
    assert found["bwp-error-kind"] == "permanent-oms-error"
    assert "422" in found["bwp-error"]
    # When an operator replays the DLQ, the event runs again and reaches the OMS
    replay = subprocess.run(
        [sys.executable, "-m", "worker", "replay-dlq", "--kind", "permanent-oms-error"],
        check=False,
        env=stack.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert replay.returncode == 0, replay.stderr
    stack.wait_until(
        lambda: len(pushes(stack, "322-FAIL-OMS")) == 1, timeout=60, what="replayed push"
    )


def test_a_short_api_outage_heals_without_parking(stack: LocalStack) -> None:
    stack.api.inject("http503", 4)
    _, key = send_for(stack, "322-HEAL-1")
    stack.wait_until(
        lambda: len(pushes(stack, "322-HEAL-1")) == 1, timeout=60, what="push after the outage"
    )
    assert stack.ledger_state(key) == "done"
