"""Build Buy with Prime EventBridge events: for ``send-event``, the sandbox and the tests.

Pure. The shape follows buy-with-prime-api.md section 1: a thin event whose resources
name the business product, the order and the delivery.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from tasks.events.catalog import DELIVERY_EVENTS

#: detail-types that carry ``detail.idempotencyKey`` (2024-11-01 generation)
_NEW_GENERATION = frozenset(
    {"PACKAGE_DELIVERY_IN_TRANSIT", "PACKAGE_DELIVERED", "PACKAGE_DELIVERY_CANCELLED"}
)


def delivery_resource(business_product_id: str, order_id: str, delivery_id: str) -> str:
    return f"businessProduct/{business_product_id}/order/{order_id}/delivery/{delivery_id}"


def build_event(
    detail_type: str,
    *,
    business_product_id: str,
    order_id: str,
    delivery_id: str | None = None,
    event_id: str | None = None,
    time: datetime | None = None,
    idempotency_key: str | None = None,
    source: str = "aws.partner/buywithprime/sandbox",
) -> dict[str, Any]:
    """An EventBridge envelope as Buy with Prime publishes it.

    ``delivery_id`` is required for delivery-family detail-types. 2024-11-01 detail-types
    get a ``detail.idempotencyKey`` (the given one, else a fresh one).
    """
    if detail_type in DELIVERY_EVENTS and delivery_id is None:
        raise ValueError(f"{detail_type} needs a delivery id")
    resource = (
        delivery_resource(business_product_id, order_id, delivery_id)
        if delivery_id is not None
        else f"businessProduct/{business_product_id}/order/{order_id}"
    )
    detail: dict[str, Any] = {}
    if detail_type in _NEW_GENERATION or idempotency_key is not None:
        detail["idempotencyKey"] = idempotency_key or str(uuid.uuid4())
    when = (time or datetime.now(UTC)).astimezone(UTC)
    return {
        "version": "0",
        "id": event_id or str(uuid.uuid4()),
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
