"""Reading delivery snapshots (``tasks.model.snapshot``) from an order response.

Pure. ``read_order`` turns the ``order`` object of a GraphQL response (either schema
generation) into one snapshot per delivery id.

Where a delivery's data comes from (buy-with-prime-api.md section 4):

- state, reason and tracking: the first listing of the delivery's detail, the
  order-level ``deliveryInformation`` / ``packageInformation`` first, then the line items';
- its line items and units: the detail's ``…DetailsFor.orderLineItems`` (``lineItem.id``
  and that entry's ``amount.value``), whichever listing carries it;
- fallback, when no listing carries ``…DetailsFor``: the line items whose own details
  list the delivery. A line item listed by one delivery only sends its ordered
  ``amount.value``; one split across several deliveries sends null (its units in each
  are unknown, and the ordered total would be wrong).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Container
from dataclasses import dataclass, field
from typing import Any, Final

from tasks.errors import PermanentApiError
from tasks.events.catalog import CANCELLATION_REASONS, DeliveryState
from tasks.model.snapshot import LineItem, Snapshot, Tracking

GENERATION_2024_11 = frozenset({"2024-11-01"})

#: (delivery information field, its details' "what this delivery holds" field)
_FIELDS: Final = {
    True: ("packageInformation", "packageInformationDetailsFor"),
    False: ("deliveryInformation", "deliveryInformationDetailsFor"),
}


class UnknownValue(PermanentApiError):
    """A delivery detail holds a state or reason this worker does not know.

    The preview API may add values: only the delivery an event names must parse.
    """


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


def _quantity(amount: Any, where: str) -> int | None:
    value = _obj(amount, where).get("value")
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
        or value != int(value)
    ):
        raise PermanentApiError(f"order response: {where}.value is not a count")
    return int(value)


def _state(detail: dict[str, Any]) -> tuple[DeliveryState, str | None]:
    try:
        state = DeliveryState(str(detail.get("state")))
    except ValueError as exc:
        raise UnknownValue("order response: delivery state is not a known state") from exc
    reason = _opt_str(detail.get("reason"), "details.reason")
    if reason is not None and reason not in CANCELLATION_REASONS:
        raise UnknownValue("order response: unknown cancellation reason")
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


def _details(holder: dict[str, Any], info_key: str) -> list[dict[str, Any]]:
    details = _obj(holder.get(info_key), info_key).get("details") or []
    if not isinstance(details, list):
        raise PermanentApiError(f"order response: {info_key}.details is not a list")
    return [_obj(d, f"{info_key}.details[]") for d in details]


def _detail_id(detail: dict[str, Any]) -> str:
    delivery_id = _opt_str(detail.get("id"), "details.id")
    if not delivery_id:
        raise PermanentApiError("order response: delivery detail without id")
    return delivery_id


def _held(listings: list[dict[str, Any]], for_key: str) -> list[LineItem] | None:
    """The line items and units the delivery holds, from the first listing that says;
    None when none does."""
    for detail in listings:
        entries = _obj(detail.get(for_key), for_key).get("orderLineItems")
        if entries is None:
            continue
        if not isinstance(entries, list):
            raise PermanentApiError(f"order response: {for_key}.orderLineItems is not a list")
        units: dict[str, int | None] = {}
        for raw in entries:
            entry = _obj(raw, f"{for_key}.orderLineItems[]")
            item_id = _opt_str(_obj(entry.get("lineItem"), "lineItem").get("id"), "lineItem.id")
            if not item_id:
                raise PermanentApiError("order response: delivery line item without id")
            count = _quantity(entry.get("amount"), f"{for_key}.amount")
            # The same line item listed twice in one delivery: its units add up.
            before = units.get(item_id, 0) if item_id in units else None
            units[item_id] = count if before is None or count is None else before + count
        return [LineItem(item_id, count) for item_id, count in units.items()]
    return None


def _collect(
    order: dict[str, Any], items: list[Any], info_key: str
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, int | None], dict[str, list[str]]]:
    """Every listing of each delivery's detail (order level first), each line item's
    ordered amount, and the line items whose own details list each delivery."""
    listings: dict[str, list[dict[str, Any]]] = {}
    for detail in _details(order, info_key):
        listings.setdefault(_detail_id(detail), []).append(detail)
    ordered: dict[str, int | None] = {}
    linked: dict[str, list[str]] = {}
    for raw_item in items:
        item = _obj(raw_item, "lineItems[]")
        item_id = _opt_str(item.get("id"), "lineItems.id")
        if not item_id:
            raise PermanentApiError("order response: line item without id")
        ordered[item_id] = _quantity(item.get("amount"), "lineItems.amount")
        for detail in _details(item, info_key):
            delivery_id = _detail_id(detail)
            listings.setdefault(delivery_id, []).append(detail)
            if item_id not in linked.setdefault(delivery_id, []):
                linked[delivery_id].append(item_id)
    return listings, ordered, linked


@dataclass(frozen=True, slots=True)
class OrderRead:
    """What an order response says: its deliveries' snapshots, and the deliveries left out
    because they hold a value this worker does not know (delivery id → why)."""

    snapshots: dict[str, Snapshot]
    skipped: dict[str, str] = field(default_factory=dict)


def read_order(
    order: dict[str, Any],
    *,
    business_product_id: str,
    api_version: str,
    strict: Container[str] | None = None,
) -> OrderRead:
    """One snapshot per delivery id found on the order (see the module docstring).

    A delivery whose state or reason is unknown raises UnknownValue when its id is in
    ``strict`` (every id when ``strict`` is None) and is skipped otherwise. A delivery
    holding no line item is left out. Raises PermanentApiError when the response does not
    have the documented shape.
    """
    new_generation = api_version in GENERATION_2024_11
    info_key, for_key = _FIELDS[new_generation]
    order = _obj(order, "order")
    order_id = _opt_str(order.get("id"), "order.id")
    items = order.get("lineItems") or []
    if order_id is None or not isinstance(items, list):
        raise PermanentApiError("order response: order lacks id or lineItems")
    listings, ordered, linked = _collect(order, items, info_key)
    spread = Counter(item_id for ids in linked.values() for item_id in ids)
    found: dict[str, Snapshot] = {}
    skipped: dict[str, str] = {}
    for delivery_id, details in listings.items():
        first = details[0]
        try:
            state, reason = _state(first)
        except UnknownValue as exc:
            if strict is None or delivery_id in strict:
                raise
            skipped[delivery_id] = str(exc)
            continue
        held = _held(details, for_key)
        if not held:
            held = [
                LineItem(item_id, ordered.get(item_id) if spread[item_id] == 1 else None)
                for item_id in linked.get(delivery_id, [])
            ]
        if not held:
            continue
        found[delivery_id] = Snapshot(
            business_product_id=business_product_id,
            order_id=order_id,
            delivery_id=delivery_id,
            state=state,
            reason=reason,
            line_items=tuple(sorted(set(held), key=lambda li: li.line_item_id)),
            tracking=_tracking_2024_11(first) if new_generation else _tracking_2024_01(first),
        )
    return OrderRead(found, skipped)


def extract_snapshots(
    order: dict[str, Any], *, business_product_id: str, api_version: str
) -> dict[str, Snapshot]:
    """``read_order`` with every delivery parsed strictly."""
    return read_order(
        order, business_product_id=business_product_id, api_version=api_version
    ).snapshots
