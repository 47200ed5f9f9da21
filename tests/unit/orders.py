"""Builders of the ``order`` object of GraphQL responses, in both schema generations.

Shared by the snapshot and OMS payload tests. Each builder returns plain JSON-ready data,
shaped as buy-with-prime-api.md section 4 documents it; keyword arguments change one field.
"""

from __future__ import annotations

from typing import Any

OLD_VERSIONS = ("2024-01-01", "2024-04-01")
NEW_VERSION = "2024-11-01"
ALL_VERSIONS = (*OLD_VERSIONS, NEW_VERSION)

_UNSET: Any = object()


def detail_2024_01(
    delivery_id: str = "d-1",
    *,
    state: str = "IN_TRANSIT",
    reason: str | None = None,
    tracking_id: str | None = "1Z999AA10123456784",
    carrier: str | None = "UPS",
    estimate: str | None = "2024-06-03T00:00:00Z",
) -> dict[str, Any]:
    """A ``deliveryInformation.details[]`` entry (2024-01-01 / 2024-04-01)."""
    return {
        "id": delivery_id,
        "state": state,
        "reason": reason,
        "estimatedDeliveryDate": estimate,
        "trackingDetails": {"trackingId": tracking_id, "carrierCode": carrier},
    }


def detail_2024_11(
    delivery_id: str = "d-1",
    *,
    state: str = "IN_TRANSIT",
    reason: str | None = None,
    number: str | None = "1Z999AA10123456784",
    carrier: str | None = "UPS",
    url: str | None = "https://track.example/1Z999AA10123456784",
    milestone: str | None = "IN_TRANSIT",
    occurred_at: str | None = "2024-06-01T08:00:00Z",
    earliest: str | None = "2024-06-03T00:00:00Z",
    latest: str | None = "2024-06-05T00:00:00Z",
) -> dict[str, Any]:
    """A ``packageInformation.details[]`` entry (2024-11-01)."""
    return {
        "id": delivery_id,
        "state": state,
        "reason": reason,
        "packageTracker": {
            "packageTrackerIdentifier": {"trackingNumber": number, "carrierCode": carrier},
            "estimatedDeliveryDate": {"earliest": earliest, "latest": latest},
            "latestMilestone": {"status": {"code": milestone}, "occurredAt": occurred_at},
            "trackingUrl": url,
        },
    }


def detail(api_version: str, delivery_id: str = "d-1", **fields: Any) -> dict[str, Any]:
    """A delivery detail of the generation ``api_version`` selects.

    Only the fields both generations share (state, reason, carrier, tracking number as
    ``number``) may be given here.
    """
    if api_version == NEW_VERSION:
        return detail_2024_11(delivery_id, **fields)
    if "number" in fields:
        fields["tracking_id"] = fields.pop("number")
    return detail_2024_01(delivery_id, **fields)


def line_item(
    item_id: str,
    details: list[dict[str, Any]],
    *,
    api_version: str = NEW_VERSION,
    quantity: int | None = 1,
    amount: Any = _UNSET,
) -> dict[str, Any]:
    """A line item whose delivery information holds ``details``.

    ``quantity`` becomes ``amount.value``; pass ``amount`` to replace the whole object.
    """
    info_key = "packageInformation" if api_version == NEW_VERSION else "deliveryInformation"
    item: dict[str, Any] = {
        "id": item_id,
        "amount": {"unit": "ONE", "value": quantity} if amount is _UNSET else amount,
        info_key: {"details": details},
    }
    return item


def order(order_id: str = "322-ABC1-AAAAAA", *items: dict[str, Any]) -> dict[str, Any]:
    return {"id": order_id, "lineItems": list(items)}


def holds(api_version: str, *entries: tuple[str, int | None]) -> dict[str, Any]:
    """A detail's ``…DetailsFor``: the line items (id, units) one delivery holds."""
    key = (
        "packageInformationDetailsFor"
        if api_version == NEW_VERSION
        else "deliveryInformationDetailsFor"
    )
    return {
        key: {
            "orderLineItems": [
                {
                    "lineItem": {"id": item_id},
                    "amount": None if units is None else {"unit": "ONE", "value": units},
                }
                for item_id, units in entries
            ]
        }
    }


def order_with_details(
    api_version: str,
    order_id: str,
    items: list[dict[str, Any]],
    details: list[dict[str, Any]],
) -> dict[str, Any]:
    """An order whose order-level delivery information lists ``details`` (each delivery
    once), as the worker's query asks for it."""
    info_key = "packageInformation" if api_version == NEW_VERSION else "deliveryInformation"
    return {"id": order_id, "lineItems": items, info_key: {"details": details}}
