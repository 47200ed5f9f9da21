"""What real events carry, through the real pipeline (poller and Celery worker processes,
moto's SQS, the sandbox API and OMS, 2024-11-01): milestones naming their order or
arriving before their IN_TRANSIT, bursts of milestones, re-published events whose
``data`` changed, return resources beside a delivery, credentials without the
package-tracker permission, and the limits on what one event may hold."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.stack import LocalStack, StackOptions
from tasks.events.samples import build_event, to_body
from tasks.keys import Keys
from tests.e2e.checks import api_calls, pushes

pytestmark = pytest.mark.e2e

BP = "bp-real"
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def stack(redis_url: str) -> Iterator[LocalStack]:
    options = StackOptions(
        redis_url=redis_url,
        api_version="2024-11-01",
        extra_env={
            # a short coalescing window and a not-found budget of ~30 s keep the scenarios
            # quick (TASK_RETRY_BASE_SECONDS is 0.5 in the stack)
            "MILESTONE_COALESCE_SECONDS": "2",
            "NOT_FOUND_MAX_RETRIES": "6",
        },
    )
    with LocalStack(options) as running:
        running.start_poller()
        running.start_worker()
        yield running


def shipped(stack: LocalStack, carrier: str = "UPS") -> tuple[str, str]:
    """An order whose d-1 the API shows IN_TRANSIT with a tracker: (order id, number)."""
    n = next(_ids)
    order_id, number = f"322-REAL-{n:06d}", f"1ZREAL{n:010d}"
    stack.api.store.add_order(order_id, BP, [("li-1", 1, "d-1"), ("li-2", 2, "d-2")])
    stack.api.store.update_delivery(
        order_id, "d-1", state="IN_TRANSIT", tracking_number=number, carrier_code=carrier
    )
    return order_id, number


def send(stack: LocalStack, event: dict[str, Any]) -> str:
    stack.send(to_body(event))
    return str((event["detail"] or {}).get("idempotencyKey") or event["id"])


def settle(stack: LocalStack, keys: list[str], timeout: float = 60) -> None:
    stack.wait_until(lambda: stack.settled(keys), timeout=timeout, what=f"{keys} to settle")


def milestone(number: str, carrier: str = "ups", order_id: str | None = None) -> dict[str, Any]:
    """A milestone event; with ``order_id`` in the form recorded in 2025."""
    event = build_event(
        "PACKAGE_TRACKER_MILESTONE_CHANGED", business_product_id=BP, tracker=(carrier, number)
    )
    order = f"order/{order_id}/" if order_id else ""
    event["resources"] = [f"businessProduct/{BP}/{order}carrier/{carrier}/tracker/{number}"]
    return event


def delivery_event(detail_type: str, order_id: str, delivery_id: str = "d-1") -> dict[str, Any]:
    return build_event(
        detail_type, business_product_id=BP, order_id=order_id, delivery_id=delivery_id
    )


def parked(stack: LocalStack) -> dict[str, dict[str, str]]:
    """Every message in the DLQ, by its bwp-event-id: its attributes."""
    found: dict[str, dict[str, str]] = {}
    seen: set[str] = set()
    while True:
        batch = stack.sqs.receive_message(
            QueueUrl=stack.dlq_url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            VisibilityTimeout=0,
        ).get("Messages", [])
        new = [m for m in batch if m["MessageId"] not in seen]
        if not new:
            return found
        for message in new:
            seen.add(message["MessageId"])
            attrs = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
            found[attrs.get("bwp-event-id", message["MessageId"])] = attrs


def how_done(stack: LocalStack, key: str) -> str:
    """How the ledger says the event ended (the sync's outcome)."""
    raw = stack.redis.hget(Keys(stack.options.key_prefix).event(key), "how")
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def parked_with(stack: LocalStack, words: str) -> list[dict[str, str]]:
    return [a for a in parked(stack).values() if words in a.get("bwp-error", "")]


def worker_log(stack: LocalStack) -> str:
    return "".join(p.log_path.read_text(errors="replace") for p in stack.processes)


def milestone_of(body: dict[str, Any]) -> str | None:
    return (body["tracking"] or {}).get("milestone")


# --- milestones --------------------------------------------------------------------------


def test_a_milestone_naming_its_order_reaches_the_oms_without_an_index(stack: LocalStack) -> None:
    # Given a delivery in transit whose IN_TRANSIT event never arrived (nothing indexed)
    order_id, number = shipped(stack)
    stack.api.move(order_id, "d-1", None, milestone="OUT_FOR_DELIVERY")
    # When its milestone arrives in the form recorded in 2025 (order named, carrier "ups")
    key = send(stack, milestone(number, "ups", order_id))
    settle(stack, [key])
    # Then the OMS holds the delivery with the milestone
    [body] = pushes(stack, order_id)
    assert (body["deliveryId"], milestone_of(body)) == ("d-1", "OUT_FOR_DELIVERY")
    assert body["sourceEvent"]["detailType"] == "PACKAGE_TRACKER_MILESTONE_CHANGED"


def test_a_milestone_before_its_in_transit_is_synced_once_the_tracker_is_known(
    stack: LocalStack,
) -> None:
    # Given a milestone naming only its tracker, taken by the worker before the
    # IN_TRANSIT event that indexes the tracker
    order_id, number = shipped(stack)
    stack.api.move(order_id, "d-1", None, milestone="OUT_FOR_DELIVERY")
    key = send(stack, milestone(number, "ups"))
    stack.wait_until(
        lambda: any(
            "milestone_tracker_unknown" in line and number in line
            for line in worker_log(stack).splitlines()
        ),
        timeout=30,
        what="the milestone's first attempt",
    )
    # When the IN_TRANSIT event arrives
    in_transit = send(stack, delivery_event("PACKAGE_DELIVERY_IN_TRANSIT", order_id))
    settle(stack, [in_transit, key])
    # Then the milestone's retry found the delivery and synced it (pushed, or unchanged
    # when the IN_TRANSIT push already carried the milestone): not given up as unknown
    assert stack.ledger_state(key) == "done"
    assert how_done(stack, key) in ("pushed", "unchanged")
    assert milestone_of(pushes(stack, order_id)[-1]) == "OUT_FOR_DELIVERY"


def test_a_burst_of_milestones_for_one_tracker_costs_a_few_queries(stack: LocalStack) -> None:
    # Given a pushed delivery
    order_id, number = shipped(stack)
    first = send(stack, delivery_event("PACKAGE_DELIVERY_IN_TRANSIT", order_id))
    settle(stack, [first])
    before = api_calls(stack, order_id)
    # When twelve milestones of its tracker arrive at once (the last state DELAYED)
    stack.api.move(order_id, "d-1", None, milestone="DELAYED")
    keys = [send(stack, milestone(number, "UPS")) for _ in range(12)]
    settle(stack, keys, timeout=90)
    # Then they cost a query per coalescing window, not one each, and none was lost
    assert api_calls(stack, order_id) - before <= 4
    assert milestone_of(pushes(stack, order_id)[-1]) == "DELAYED"
    assert all(stack.ledger_state(k) == "done" for k in keys)


# --- duplicates, return resources, limits ------------------------------------------------


def test_a_republished_event_whose_data_changed_is_a_duplicate_not_a_conflict(
    stack: LocalStack,
) -> None:
    # Given a PACKAGE_DELIVERED synced once
    order_id, _ = shipped(stack)
    stack.api.store.update_delivery(order_id, "d-1", state="DELIVERED")
    event = delivery_event("PACKAGE_DELIVERED", order_id)
    key = send(stack, event)
    settle(stack, [key])
    # When it is re-published under the same idempotencyKey with another envelope id,
    # time, eventTime and data
    again = {
        **event,
        "id": "00000000-aaaa-4bbb-8ccc-000000000001",
        "time": "2030-01-01T00:00:00Z",
        "detail": {
            **event["detail"],
            "eventTime": "2030-01-01T00:00:00Z",
            "data": {"note": "re-published"},
        },
    }
    send(stack, again)
    settle(stack, [key])
    # Then it is absorbed as a duplicate: nothing parked, one query, one push
    assert key not in parked(stack)
    assert api_calls(stack, order_id) == 1
    assert len(pushes(stack, order_id)) == 1


def test_a_delivery_event_naming_return_resources_is_synced(stack: LocalStack) -> None:
    order_id, _ = shipped(stack)
    event = delivery_event("PACKAGE_DELIVERY_IN_TRANSIT", order_id)
    event["resources"] += [
        f"businessProduct/{BP}/order/{order_id}/returnDelivery/04caec9f-5e1d-4b6c-80d823cf915c#RF",
        f"businessProduct/{BP}/order/{order_id}/returnLineItem/9e8d7c6b#RLI",
    ]
    key = send(stack, event)
    settle(stack, [key])
    assert key not in parked(stack)
    assert [b["deliveryId"] for b in pushes(stack, order_id)] == ["d-1"]


def test_an_event_naming_too_many_deliveries_is_parked_with_the_count(stack: LocalStack) -> None:
    order_id, _ = shipped(stack)
    event = delivery_event("PACKAGE_DELIVERED", order_id)
    event["resources"] = [
        f"businessProduct/{BP}/order/{order_id}/delivery/d-{i}" for i in range(21)
    ]
    send(stack, event)
    reason = "names 21 order/delivery pairs, over the cap of 20"
    stack.wait_until(lambda: parked_with(stack, reason), timeout=30, what="the event parked")
    [found] = parked_with(stack, reason)
    assert found["bwp-error-kind"] == "malformed"
    assert api_calls(stack, order_id) == 0


def test_a_body_nested_past_the_limit_is_parked_by_the_poller(stack: LocalStack) -> None:
    order_id, _ = shipped(stack)
    event = delivery_event("PACKAGE_DELIVERY_IN_TRANSIT", order_id)
    event["detail"]["data"] = json.loads("[" * 100 + "]" * 100)
    stack.send(json.dumps(event))
    key = event["detail"]["idempotencyKey"]
    stack.wait_until(
        lambda: parked_with(stack, "deeper than 64 levels"), timeout=30, what="the deep body parked"
    )
    assert api_calls(stack, order_id) == 0
    assert stack.ledger_state(key) is None  # refused before any claim


# --- credentials without the package-tracker permission ---------------------------------


def test_credentials_without_the_tracker_permission_still_sync_deliveries(
    stack: LocalStack,
) -> None:
    # Given credentials the API refuses packageTracker (Read Order only)
    stack.api.tracker_permission = False
    try:
        order_id, _ = shipped(stack)
        stack.api.store.update_delivery(order_id, "d-2", state="DELIVERED")
        keys = [
            send(stack, delivery_event("PACKAGE_DELIVERY_IN_TRANSIT", order_id, "d-1")),
            send(stack, delivery_event("PACKAGE_DELIVERED", order_id, "d-2")),
        ]
        settle(stack, keys)
    finally:
        stack.api.tracker_permission = True
    # Then both deliveries reached the OMS (without tracking), none was parked, and the
    # worker warned about the missing permission
    assert sorted(b["deliveryId"] for b in pushes(stack, order_id)) == ["d-1", "d-2"]
    assert all(b["tracking"] is None for b in pushes(stack, order_id))
    assert not set(keys) & set(parked(stack))
    assert "order_query_without_tracker" in worker_log(stack)
