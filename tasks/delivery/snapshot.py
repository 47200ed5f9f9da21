"""Delivery snapshots: what one delivery of an order looks like right now.

Pure. ``extract_snapshots`` turns the ``order`` object of a GraphQL response (either
schema generation) into one snapshot per delivery id; ``Snapshot.idempotency_key`` is the
content fingerprint that the OMS sees as ``Idempotency-Key``.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from typing import Any

from tasks.errors import PermanentApiError
from tasks.events.catalog import CANCELLATION_REASONS, DeliveryState, rank

GENERATION_2024_11 = frozenset({"2024-11-01"})


@dataclass(frozen=True, slots=True)
class Tracking:
    carrier_code: str | None
    tracking_number: str | None
    tracking_url: str | None
    milestone: str | None
    estimated_earliest: str | None
    estimated_latest: str | None


@dataclass(frozen=True, slots=True)
class LineItem:
    line_item_id: str
    quantity: int | None


@dataclass(frozen=True, slots=True)
class Snapshot:
    business_product_id: str
    order_id: str
    delivery_id: str
    state: DeliveryState
    reason: str | None
    line_items: tuple[LineItem, ...]
    tracking: Tracking | None

    @property
    def rank(self) -> int:
        return rank(self.state)

    @property
    def idempotency_key(self) -> str:
        """Fingerprint of the delivery's identity and content, never of time or attempt.

        It changes exactly when state, reason, line items, quantities or tracking change,
        and differs between deliveries, so the OMS can use it as an idempotency key.
        """
        content = asdict(self)
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()


def _obj(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PermanentApiError(f"order response: {where} is not an object")
    return value


def _opt_str(value: Any, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise PermanentApiError(f"order response: {where} is not a string")


def _quantity(item: dict[str, Any]) -> int | None:
    value = _obj(item.get("amount"), "lineItems.amount").get("value")
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
        or value != int(value)
    ):
        raise PermanentApiError("order response: lineItems.amount.value is not a count")
    return int(value)


def _state(detail: dict[str, Any]) -> tuple[DeliveryState, str | None]:
    try:
        state = DeliveryState(str(detail.get("state")))
    except ValueError as exc:
        raise PermanentApiError("order response: delivery state is not a known state") from exc
    reason = _opt_str(detail.get("reason"), "details.reason")
    if reason is not None and reason not in CANCELLATION_REASONS:
        raise PermanentApiError("order response: unknown cancellation reason")
    return state, reason


def _tracking_2024_11(detail: dict[str, Any]) -> Tracking | None:
    tracker = _obj(detail.get("packageTracker"), "packageTracker")
    ident = _obj(tracker.get("packageTrackerIdentifier"), "packageTrackerIdentifier")
    number = _opt_str(ident.get("trackingNumber"), "trackingNumber")
    carrier = _opt_str(ident.get("carrierCode"), "carrierCode")
    if number is None and carrier is None:
        return None  # contract: tracking is null until a number or carrier is known
    estimate = _obj(tracker.get("estimatedDeliveryDate"), "estimatedDeliveryDate")
    milestone = _obj(tracker.get("latestMilestone"), "latestMilestone")
    return Tracking(
        carrier_code=carrier,
        tracking_number=number,
        tracking_url=_opt_str(tracker.get("trackingUrl"), "trackingUrl"),
        milestone=_opt_str(_obj(milestone.get("status"), "status").get("code"), "milestone"),
        estimated_earliest=_opt_str(estimate.get("earliest"), "estimatedDeliveryDate"),
        estimated_latest=_opt_str(estimate.get("latest"), "estimatedDeliveryDate"),
    )


def _tracking_2024_01(detail: dict[str, Any]) -> Tracking | None:
    # Assumed (buy-with-prime-api.md section 4): trackingDetails { trackingId carrierCode },
    # and estimatedDeliveryDate is one timestamp, reported as both ends of the window.
    details = _obj(detail.get("trackingDetails"), "trackingDetails")
    number = _opt_str(details.get("trackingId"), "trackingId")
    carrier = _opt_str(details.get("carrierCode"), "carrierCode")
    if number is None and carrier is None:
        return None
    estimate = _opt_str(detail.get("estimatedDeliveryDate"), "estimatedDeliveryDate")
    return Tracking(carrier, number, None, None, estimate, estimate)


def _details(item: dict[str, Any], new_generation: bool) -> list[dict[str, Any]]:
    info_key = "packageInformation" if new_generation else "deliveryInformation"
    details = _obj(item.get(info_key), info_key).get("details") or []
    if not isinstance(details, list):
        raise PermanentApiError(f"order response: {info_key}.details is not a list")
    return [_obj(d, f"{info_key}.details[]") for d in details]


def extract_snapshots(
    order: dict[str, Any], *, business_product_id: str, api_version: str
) -> dict[str, Snapshot]:
    """One snapshot per delivery id found on the order's line items.

    Line items that share a delivery id are gathered into that delivery (sorted by id).
    Raises PermanentApiError when the response does not have the documented shape.
    """
    new_generation = api_version in GENERATION_2024_11
    order = _obj(order, "order")
    order_id = _opt_str(order.get("id"), "order.id")
    items = order.get("lineItems") or []
    if order_id is None or not isinstance(items, list):
        raise PermanentApiError("order response: order lacks id or lineItems")
    fields: dict[str, tuple[DeliveryState, str | None, Tracking | None]] = {}
    members: dict[str, list[LineItem]] = {}
    for raw_item in items:
        item = _obj(raw_item, "lineItems[]")
        item_id = _opt_str(item.get("id"), "lineItems.id")
        if not item_id:
            raise PermanentApiError("order response: line item without id")
        for detail in _details(item, new_generation):
            delivery_id = _opt_str(detail.get("id"), "details.id")
            if not delivery_id:
                raise PermanentApiError("order response: delivery detail without id")
            tracking = _tracking_2024_11(detail) if new_generation else _tracking_2024_01(detail)
            fields.setdefault(delivery_id, (*_state(detail), tracking))
            members.setdefault(delivery_id, []).append(LineItem(item_id, _quantity(item)))
    return {
        delivery_id: Snapshot(
            business_product_id=business_product_id,
            order_id=order_id,
            delivery_id=delivery_id,
            state=state,
            reason=reason,
            line_items=tuple(sorted(set(members[delivery_id]), key=lambda li: li.line_item_id)),
            tracking=tracking,
        )
        for delivery_id, (state, reason, tracking) in fields.items()
    }
