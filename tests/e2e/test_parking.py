"""Parking succeeds or the message stays in SQS (design.md sections 3.1 and 4):

- a refusal whose text SQS would not take (control characters) is parked with its reason
  escaped, and an event near SQS's size limit with its reason shortened, never its body;
- an event is marked `parked` only once a DLQ took it: a worker without SQS_DLQ_URL
  marks it `failed`, and the poller (which holds its message) parks it; without any DLQ
  the message is never deleted, and the queue's own redrive policy takes it.

Real poller and worker processes; the sandbox SQS refuses what SQS refuses.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.stack import LocalStack, StackOptions
from tasks.events.samples import build_event, to_body
from tests.e2e.test_failures import parked, wait_parked

pytestmark = pytest.mark.e2e

DLQ_MAX_BYTES = 256 * 1024


@pytest.fixture(scope="module")
def stack(redis_url: str) -> Iterator[LocalStack]:
    with LocalStack(StackOptions(redis_url=redis_url)) as running:
        # a DLQ as SQS made them before 2025: 256 KiB at most, attributes included
        running.sqs.set_queue_attributes(
            QueueUrl=running.dlq_url, Attributes={"MaximumMessageSize": str(DLQ_MAX_BYTES)}
        )
        running.start_poller()
        running.start_worker()
        yield running


def in_transit(stack: LocalStack, order_id: str, **detail: Any) -> tuple[dict[str, Any], str]:
    stack.api.store.add_order(order_id, "bp-park", [("li", 1, "d-1")])
    stack.api.store.update_delivery(order_id, "d-1", state="IN_TRANSIT")
    event = build_event(
        "PACKAGE_DELIVERY_IN_TRANSIT",
        business_product_id="bp-park",
        order_id=order_id,
        delivery_id="d-1",
    )
    event["detail"].update(detail)
    stack.send(to_body(event))
    return event, event["detail"]["idempotencyKey"]


def test_an_oms_refusal_with_control_characters_is_parked_with_the_reason_escaped(
    stack: LocalStack,
) -> None:
    # Given an OMS whose refusal body holds characters SQS refuses in an attribute
    stack.oms.fail_next(1, status=400, body="bad\x00input \x1b[31mred\x1b[0m \ufffe")
    event, key = in_transit(stack, "322-PARK-CTRL")
    # Then the event is parked, with the status and the body's text escaped
    found = wait_parked(stack, key)
    assert found["bwp-error-kind"] == "permanent-oms-error"
    assert "HTTP 400" in found["bwp-error"]
    assert "bad\\x00input \\x1b[31mred\\x1b[0m \\ufffe" in found["bwp-error"]
    assert json.loads(found["body"]) == event
    assert stack.ledger_state(key) == "parked"
    stack.wait_until(lambda: stack.queue_counts() == (0, 0), timeout=10, what="message deleted")


def test_an_event_near_the_size_limit_is_parked_whole_with_a_shortened_reason(
    stack: LocalStack,
) -> None:
    # Given an event whose body leaves ~300 bytes for the attributes: its kind and event id
    # fit, its full reason (~250 characters) does not
    sample = build_event(
        "PACKAGE_DELIVERY_IN_TRANSIT",
        business_product_id="bp-park",
        order_id="322-PARK-BIG",
        delivery_id="d-1",
    )
    base = len(to_body(sample))
    padding = "p" * (DLQ_MAX_BYTES - base - 300)
    stack.oms.fail_next(1, status=422, body="refused: " + "because " * 60)
    event, key = in_transit(stack, "322-PARK-BIG", padding=padding)
    assert DLQ_MAX_BYTES - 400 < len(to_body(event)) < DLQ_MAX_BYTES - 200
    # Then it is parked, its body unchanged, its reason cut to fit the DLQ
    found = wait_parked(stack, key)
    assert found["bwp-error-kind"] == "permanent-oms-error"
    assert found["bwp-error"].startswith("PermanentOmsError: OMS answered HTTP 422")
    assert len(found["bwp-error"]) < 200
    assert json.loads(found["body"]) == event
    size = len(found["body"].encode()) + sum(
        len(k) + len("String") + len(v.encode()) for k, v in found.items() if k != "body"
    )
    assert size <= DLQ_MAX_BYTES
    assert stack.ledger_state(key) == "parked"


def test_a_worker_without_a_dlq_leaves_the_event_to_the_poller_which_parks_it(
    redis_url: str,
) -> None:
    with LocalStack(StackOptions(redis_url=redis_url)) as stack:
        stack.start_poller()
        stack.start_worker(SQS_DLQ_URL="")  # this worker cannot park
        stack.oms.fail_next(1, status=422)
        event, key = in_transit(stack, "322-PARK-NODLQ")
        # Then the poller, which holds the message and has a DLQ, parks it with its reason
        found = wait_parked(stack, key)
        assert found["bwp-error-kind"] == "permanent-oms-error"
        assert "HTTP 422" in found["bwp-error"]
        assert json.loads(found["body"]) == event
        assert stack.ledger_state(key) == "parked"
        stack.wait_until(lambda: stack.queue_counts() == (0, 0), timeout=10, what="deleted")


def test_without_any_dlq_a_failed_event_stays_in_sqs_until_the_redrive_takes_it(
    redis_url: str,
) -> None:
    # Given a poller and a worker with no SQS_DLQ_URL; the queue redrives after 5 receives
    options = StackOptions(redis_url=redis_url, sqs_visibility_timeout=5)
    with LocalStack(options) as stack:
        stack.start_poller(SQS_DLQ_URL="")
        stack.start_worker(SQS_DLQ_URL="")
        stack.oms.fail_next(1, status=422)
        event, key = in_transit(stack, "322-PARK-NONE")
        # Then the event is marked failed, never parked, and its message is not deleted:
        # it comes back until the queue's own redrive policy moves it (bare, no reason)
        stack.wait_until(lambda: stack.ledger_state(key) == "failed", timeout=30, what="failed")
        stack.wait_until(lambda: len(parked(stack)) == 1, timeout=90, what="redriven")
        [message] = parked(stack)
        assert json.loads(message["Body"]) == event
        assert "bwp-error-kind" not in message.get("MessageAttributes", {})
        assert stack.ledger_state(key) == "failed"
        assert len(stack.oms.attempts) == 1  # the event was not run again on each receive
