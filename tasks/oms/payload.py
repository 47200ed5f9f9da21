"""The OMS push body and its signature (contract: "Push to the order management system").

Pure: a snapshot and the source event in, JSON-ready dict and header values out.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

from tasks.model.snapshot import Snapshot, Tracking


def _tracking(tracking: Tracking | None) -> dict[str, Any] | None:
    if tracking is None:
        return None
    estimate = None
    if tracking.estimated_earliest is not None or tracking.estimated_latest is not None:
        estimate = {"earliest": tracking.estimated_earliest, "latest": tracking.estimated_latest}
    return {
        "carrierCode": tracking.carrier_code,
        "trackingNumber": tracking.tracking_number,
        "trackingUrl": tracking.tracking_url,
        "milestone": tracking.milestone,
        "estimatedDelivery": estimate,
    }


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def delivery_update(
    snapshot: Snapshot, *, event_id: str, detail_type: str, event_time: str, observed_at: datetime
) -> dict[str, Any]:
    """The DeliveryUpdate body (oms-delivery-update.schema.json)."""
    return {
        "type": "delivery.updated",
        "schemaVersion": 1,
        "idempotencyKey": snapshot.idempotency_key,
        "businessProductId": snapshot.business_product_id,
        "orderId": snapshot.order_id,
        "deliveryId": snapshot.delivery_id,
        "state": snapshot.state.value,
        "reason": snapshot.reason,
        "lineItems": [
            {"lineItemId": li.line_item_id, "quantity": li.quantity} for li in snapshot.line_items
        ],
        "tracking": _tracking(snapshot.tracking),
        "sourceEvent": {"id": event_id, "detailType": detail_type, "time": event_time},
        "observedAt": rfc3339(observed_at),
    }


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def signature(secret: str, timestamp: int, raw_body: bytes, previous: str | None = None) -> str:
    """``X-Signature``: ``t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">``.

    During a rotation (``previous`` set) a second ``v1=`` made with the previous secret
    follows the first: an OMS that knows either secret finds one value it can verify.
    """
    macs = [secret] if not previous else [secret, previous]
    return ",".join([f"t={timestamp}", *(f"v1={_mac(s, timestamp, raw_body)}" for s in macs)])


def _mac(secret: str, timestamp: int, raw_body: bytes) -> str:
    payload = f"{timestamp}.".encode() + raw_body
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()
