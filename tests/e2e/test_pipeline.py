"""The real pipeline: events into SQS, poller and Celery worker processes, sandbox API and
OMS. Each scenario asserts what the OMS holds, how many pushes and how many API calls."""

from __future__ import annotations

import pytest

from sandbox.stack import LocalStack
from tasks.events.catalog import DELIVERY_EVENTS, TWINS, DeliveryState
from tests.e2e.checks import api_calls, mismatches, pushes
from tests.e2e.conftest import new_order_id

pytestmark = pytest.mark.e2e


def settle(stack: LocalStack, events: list[dict[str, object]]) -> None:
    keys = [str((e["detail"] or {}).get("idempotencyKey") or e["id"]) for e in events]  # type: ignore[attr-defined]
    stack.wait_until(lambda: stack.settled(keys), timeout=60, what="events to settle")


def one_delivery_order(stack: LocalStack, items: int = 1) -> str:
    order_id = new_order_id()
    stack.api.store.add_order(order_id, "bp-e2e", [(f"li-{i}", i + 1, "d-1") for i in range(items)])
    return order_id


@pytest.mark.parametrize("detail_type", sorted(DELIVERY_EVENTS))
def test_each_delivery_event_type_reaches_the_oms(stack: LocalStack, detail_type: str) -> None:
    # Given a delivery that the API shows in the state the event announces
    order_id = one_delivery_order(stack)
    state = DELIVERY_EVENTS[detail_type]
    reason = "CUSTOMER_REQUESTED" if state is DeliveryState.CANCELLED else None
    stack.api.store.update_delivery(
        order_id, "d-1", state=state.value, reason=reason, tracking_number="TN1", carrier_code="UPS"
    )
    # When the event arrives
    events = [stack.send_event(detail_type, order_id, "d-1")]
    settle(stack, events)
    # Then the OMS holds that state, after one query and one push
    assert mismatches(stack, [order_id]) == []
    [body] = pushes(stack, order_id)
    assert body["sourceEvent"] == {
        "id": events[0]["id"],
        "detailType": detail_type,
        "time": events[0]["time"],
    }
    assert api_calls(stack, order_id) == 1


@pytest.mark.parametrize(
    "state", [DeliveryState.IN_TRANSIT, DeliveryState.DELIVERED, DeliveryState.CANCELLED]
)
def test_twins_cost_one_query_and_one_push(stack: LocalStack, state: DeliveryState) -> None:
    order_id = one_delivery_order(stack)
    reason = "UNDELIVERABLE" if state is DeliveryState.CANCELLED else None
    stack.api.store.update_delivery(order_id, "d-1", state=state.value, reason=reason)
    events = [stack.send_event(detail_type, order_id, "d-1") for detail_type in TWINS[state]]
    settle(stack, events)
    assert len(pushes(stack, order_id)) == 1
    assert api_calls(stack, order_id) == 1
    assert mismatches(stack, [order_id]) == []


def test_redelivered_message_costs_nothing_more(stack: LocalStack) -> None:
    order_id = one_delivery_order(stack)
    stack.api.store.update_delivery(order_id, "d-1", state="IN_TRANSIT", tracking_number="TN9")
    event = stack.send_event("DELIVERY_IN_TRANSIT", order_id, "d-1")
    settle(stack, [event])
    stack.send(__import__("json").dumps(event))
    settle(stack, [event])
    assert len(pushes(stack, order_id)) == 1
    assert api_calls(stack, order_id) == 1


def test_delivered_before_in_transit_never_goes_backwards(stack: LocalStack) -> None:
    order_id = one_delivery_order(stack)
    stack.api.store.update_delivery(
        order_id, "d-1", state="DELIVERED", tracking_number="TN2", carrier_code="DHL"
    )
    late = [stack.send_event("PACKAGE_DELIVERED", order_id, "d-1")]
    settle(stack, late)
    early = [stack.send_event("PACKAGE_DELIVERY_IN_TRANSIT", order_id, "d-1")]
    settle(stack, early)
    states = [b["state"] for b in pushes(stack, order_id)]
    assert states == ["DELIVERED"]
    assert api_calls(stack, order_id) == 1  # the late IN_TRANSIT carried no news


def test_line_items_sharing_a_delivery_travel_together(stack: LocalStack) -> None:
    order_id = one_delivery_order(stack, items=3)
    stack.api.store.update_delivery(order_id, "d-1", state="IN_TRANSIT")
    settle(stack, [stack.send_event("ITEM_IN_TRANSIT", order_id, "d-1")])
    [body] = pushes(stack, order_id)
    assert body["lineItems"] == [
        {"lineItemId": "li-0", "quantity": 1},
        {"lineItemId": "li-1", "quantity": 2},
        {"lineItemId": "li-2", "quantity": 3},
    ]


def test_an_order_with_two_deliveries_gets_one_push_per_delivery(stack: LocalStack) -> None:
    order_id = new_order_id()
    stack.api.store.add_order(order_id, "bp-e2e", [("li-a", 1, "d-1"), ("li-b", 2, "d-2")])
    stack.api.store.update_delivery(order_id, "d-1", state="DELIVERED")
    stack.api.store.update_delivery(order_id, "d-2", state="CANCELLED", reason="UNFULFILLABLE")
    events = [
        stack.send_event("PACKAGE_DELIVERED", order_id, "d-1"),
        stack.send_event("PACKAGE_DELIVERY_CANCELLED", order_id, "d-2"),
    ]
    settle(stack, events)
    bodies = pushes(stack, order_id)
    assert sorted((b["deliveryId"], b["state"]) for b in bodies) == [
        ("d-1", "DELIVERED"),
        ("d-2", "CANCELLED"),
    ]
    assert len({b["idempotencyKey"] for b in bodies}) == 2
    assert mismatches(stack, [order_id]) == []


def test_a_delivery_moving_through_its_life_is_pushed_once_per_state(stack: LocalStack) -> None:
    # The sandbox publishes the events itself, as Buy with Prime's sandbox does.
    order_id = one_delivery_order(stack)
    stack.api.move(order_id, "d-1", "IN_TRANSIT", tracking_number="1Z999", carrier_code="UPS")
    stack.wait_until(lambda: len(pushes(stack, order_id)) == 1, what="in-transit push")
    stack.api.move(order_id, "d-1", "DELIVERED")
    stack.wait_until(lambda: len(pushes(stack, order_id)) == 2, what="delivered push")
    states = [b["state"] for b in pushes(stack, order_id)]
    assert states == ["IN_TRANSIT", "DELIVERED"]
    assert pushes(stack, order_id)[1]["tracking"]["trackingNumber"] == "1Z999"
