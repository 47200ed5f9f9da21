"""Build Buy with Prime EventBridge events: for ``send-event``, the sandbox and the tests.

Pure. The shape follows docs/buy-with-prime-api.md section 1: a thin event whose
resources name the business product, the order and the delivery. An event a 2024-11-01
subscription publishes carries the whole webhook body in ``detail`` (``idempotencyKey``,
``eventDescriptor``, ``resources``, ``eventId``, ``apiVersion``, ``subscriptionId``,
``eventTime``, ``data``); older ones carry ``{}``.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from tasks.events.catalog import DELIVERY_EVENTS, newest_generation_only

NEWEST_VERSION = "2024-11-01"
#: the subscription id the samples' webhook bodies name
SUBSCRIPTION_ID = "sub-sandbox-0001"


def base64_key(event_id: str) -> str:
    """A key of the form seen in public: base64 of ``<uuid>#<event id>`` (about 100
    characters, may hold ``/``, ``+`` and ``=``; buy-with-prime-api.md section 1)."""
    return base64.b64encode(f"{uuid.uuid4()}#{event_id}".encode()).decode()


def tracker_resource(
    business_product_id: str,
    carrier_code: str,
    tracking_number: str,
    order_id: str | None = None,
) -> str:
    """The documented ``…/carrier/<code>/tracker/<number>``; with ``order_id``, the form
    recorded from a real 2025 event: ``…/order/<id>/carrier/<code>/tracker/<number>``."""
    order = f"order/{order_id}/" if order_id else ""
    return (
        f"businessProduct/{business_product_id}/{order}carrier/{carrier_code}"
        f"/tracker/{tracking_number}"
    )


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
    api_version: str | None = None,
    data: dict[str, Any] | None = None,
    extra_resources: tuple[str, ...] = (),
) -> dict[str, Any]:
    """An EventBridge envelope as Buy with Prime publishes it.

    ``delivery_id`` is required for delivery-family detail-types; ``tracker`` (carrier
    code, tracking number) names a tracker, as PACKAGE_TRACKER_MILESTONE_CHANGED does
    (with ``order_id`` too: the form seen in 2025). ``api_version``: the subscription's;
    by default 2024-11-01 for the types only that version publishes. A 2024-11-01 event
    carries the whole webhook body in ``detail``, with the given ``idempotency_key`` (else
    a fresh one of the documented base64 form) and ``data`` (else ``{}``).
    ``extra_resources`` are appended as they are (return deliveries, line items, …).
    """
    if detail_type in DELIVERY_EVENTS and (delivery_id is None or order_id is None):
        raise ValueError(f"{detail_type} needs an order id and a delivery id")
    if tracker is not None:
        resource = tracker_resource(business_product_id, *tracker, order_id=order_id)
    elif order_id is None:
        raise ValueError(f"{detail_type} needs an order id (or a tracker)")
    elif delivery_id is not None:
        resource = delivery_resource(business_product_id, order_id, delivery_id)
    else:
        resource = f"businessProduct/{business_product_id}/order/{order_id}"
    resources = [resource, *extra_resources]
    event_id = event_id or str(uuid.uuid4())
    when = (time or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    version = api_version or (NEWEST_VERSION if newest_generation_only(detail_type) else None)
    detail: dict[str, Any] = {}
    if version == NEWEST_VERSION:
        detail = webhook_body(
            detail_type, resources, event_id, when, idempotency_key or base64_key(event_id), data
        )
    elif idempotency_key is not None:
        detail["idempotencyKey"] = idempotency_key
    return {
        "version": "0",
        "id": event_id,
        "detail-type": detail_type,
        "source": source,
        "account": "000000000000",
        "time": when,
        "region": "us-east-1",
        "resources": resources,
        "detail": detail,
    }


def webhook_body(
    detail_type: str,
    resources: list[str],
    event_id: str,
    when: str,
    idempotency_key: str,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The 2024-11-01 webhook body, which EventBridge events carry whole as ``detail``."""
    return {
        "idempotencyKey": idempotency_key,
        "eventDescriptor": detail_type,
        "resources": list(resources),
        "eventId": event_id,
        "apiVersion": NEWEST_VERSION,
        "subscriptionId": SUBSCRIPTION_ID,
        "eventTime": when,
        "data": dict(data or {}),
    }


def to_body(event: dict[str, Any]) -> str:
    """The SQS message body EventBridge writes for ``event`` (no input transformer)."""
    return json.dumps(event, separators=(",", ":"))
