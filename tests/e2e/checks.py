"""Independent checks of what the OMS holds against the sandbox API's own state."""

from __future__ import annotations

from typing import Any

from sandbox.stack import LocalStack


def pushes(stack: LocalStack, order_id: str) -> list[dict[str, Any]]:
    return [p.body for p in stack.oms.received if p.body["orderId"] == order_id]


def api_calls(stack: LocalStack, order_id: str) -> int:
    return int(stack.api.stats()["order_queries_by_order"].get(order_id, 0))


def expected_line_items(stack: LocalStack, order_id: str, delivery_id: str) -> list[dict[str, Any]]:
    order = stack.api.store.get_order(order_id)
    assert order is not None
    items = [
        {"lineItemId": li.id, "quantity": li.quantity}
        for li in order.line_items
        if li.delivery_id == delivery_id
    ]
    return sorted(items, key=lambda li: li["lineItemId"])


def mismatches(stack: LocalStack, order_ids: list[str]) -> list[str]:
    """Every delivery of ``order_ids`` whose latest OMS body differs from the API."""
    latest = stack.oms.latest()
    problems: list[str] = []
    for order_id in order_ids:
        order = stack.api.store.get_order(order_id)
        assert order is not None
        for delivery_id, delivery in order.deliveries.items():
            if delivery.state == "PENDING":
                continue  # no event announces PENDING: the OMS never hears of it
            body = latest.get((order_id, delivery_id))
            if body is None:
                problems.append(f"{order_id}/{delivery_id}: never pushed (API: {delivery.state})")
                continue
            tracking = body["tracking"] or {}
            have = (
                body["state"],
                body["reason"],
                tracking.get("trackingNumber"),
                tracking.get("carrierCode"),
            )
            want = (
                delivery.state,
                delivery.reason,
                delivery.tracking_number,
                delivery.carrier_code,
            )
            if have != want or body["lineItems"] != expected_line_items(
                stack, order_id, delivery_id
            ):
                problems.append(f"{order_id}/{delivery_id}: OMS {have}, API {want}")
    return problems
