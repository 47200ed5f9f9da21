"""Build Buy with Prime EventBridge events: for ``send-event``, the sandbox and the tests.

Pure. The shape follows buy-with-prime-api.md section 1: a thin event whose resources
name the business product, the order and the delivery.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from tasks.events.catalog import DELIVERY_EVENTS, MILESTONE_EVENT

#: detail-types that carry ``detail.idempotencyKey`` (2024-11-01 generation)
_NEW_GENERATION = frozenset(
    {
        "PACKAGE_DELIVERY_IN_TRANSIT",
        "PACKAGE_DELIVERED",
        "PACKAGE_DELIVERY_CANCELLED",
        MILESTONE_EVENT,
    }
)


def base64_key(event_id: str) -> str:
    """A key of the form seen in public: base64 of ``<uuid>#<event id>`` (about 100
    characters, may hold ``/``, ``+`` and ``=``; buy-with-prime-api.md section 1)."""
    return base64.b64encode(f"{uuid.uuid4()}#{event_id}".encode()).decode()


def tracker_resource(business_product_id: str, carrier_code: str, tracking_number: str) -> str:
    return f"businessProduct/{business_product_id}/carrier/{carrier_code}/tracker/{tracking_number}"


def delivery_resource(business_product_id: str, order_id: str, delivery_id: str) -> str:
    return f"businessProduct/{business_product_id}/order/{order_id}/delivery/{delivery_id}"


def build_event(
    detail_type: str,
    *,
    business_product_id: str,
    order_id: str | None = None,
    delivery_id: str | None = None,
    tracker: tuple[str, str] | None = None,
    event_id: str | None = None,
    time: datetime | None = None,
    idempotency_key: str | None = None,
    source: str = "aws.partner/buywithprime/sandbox",
) -> dict[str, Any]:
    """An EventBridge envelope as Buy with Prime publishes it.

    ``delivery_id`` is required for delivery-family detail-types; ``tracker`` (carrier
    code, tracking number) names a tracker instead of an order, as
    PACKAGE_TRACKER_MILESTONE_CHANGED does. 2024-11-01 detail-types get a
    ``detail.idempotencyKey`` (the given one, else a fresh one of the documented base64
    form).
    """
    if detail_type in DELIVERY_EVENTS and (delivery_id is None or order_id is None):
        raise ValueError(f"{detail_type} needs an order id and a delivery id")
    if tracker is not None:
        resource = tracker_resource(business_product_id, *tracker)
    elif order_id is None:
        raise ValueError(f"{detail_type} needs an order id (or a tracker)")
    elif delivery_id is not None:
        resource = delivery_resource(business_product_id, order_id, delivery_id)
    else:
        resource = f"businessProduct/{business_product_id}/order/{order_id}"
    event_id = event_id or str(uuid.uuid4())
    detail: dict[str, Any] = {}
    if detail_type in _NEW_GENERATION or idempotency_key is not None:
        detail["idempotencyKey"] = idempotency_key or base64_key(event_id)
    when = (time or datetime.now(UTC)).astimezone(UTC)
    return {
        "version": "0",
        "id": event_id,
        "detail-type": detail_type,
        "source": source,
        "account": "000000000000",
        "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1",
        "resources": [resource],
        "detail": detail,
    }


def to_body(event: dict[str, Any]) -> str:
    """The SQS message body EventBridge writes for ``event`` (no input transformer)."""
    return json.dumps(event, separators=(",", ":"))
