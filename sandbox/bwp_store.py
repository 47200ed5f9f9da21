"""The sandbox order API's data: orders, line items and deliveries, in memory.

A line item can be split across deliveries: the order holds *placements* (line item id,
units, delivery id), and a line item split in two has two placements. What was ordered is
the sum of a line item's placements; what a delivery holds is its own placements.

Thread-safe: the API server thread reads while tests and the demo move deliveries.
Readers get copies, never the live records. The store accepts any state change (also
backwards ones), so tests can make the API say what a misbehaving upstream might say.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

STATES = frozenset({"PENDING", "IN_TRANSIT", "DELIVERED", "CANCELLED"})
REASONS = frozenset({"CUSTOMER_REQUESTED", "UNFULFILLABLE", "UNDELIVERABLE"})
MILESTONES = frozenset(
    {
        "PENDING",
        "INFO_RECEIVED",
        "IN_TRANSIT",
        "DELAYED",
        "OUT_FOR_DELIVERY",
        "AVAILABLE_FOR_PICKUP",
        "DELIVERY_ATTEMPTED",
        "DELIVERED",
        "EXCEPTION",
        "LOST",
        "UNDELIVERABLE",
        "RETURN_TO_SENDER",
        "CUSTOMER_ACTION",
    }
)


@dataclass
class Delivery:
    id: str
    state: str = "PENDING"
    reason: str | None = None
    tracking_number: str | None = None
    carrier_code: str | None = None
    tracking_url: str | None = None
    milestone: str | None = None
    milestone_at: str | None = None
    estimated_earliest: str | None = None
    estimated_latest: str | None = None


@dataclass
class LineItem:
    """A placement: ``quantity`` units of line item ``id`` in delivery ``delivery_id``."""

    id: str
    quantity: int | None
    delivery_id: str


@dataclass
class Order:
    id: str
    business_product_id: str
    line_items: list[LineItem]
    deliveries: dict[str, Delivery] = field(default_factory=dict)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check(value: str | None, allowed: frozenset[str], what: str) -> None:
    if value is not None and value not in allowed:
        raise ValueError(f"unknown {what} {value!r}")


class OrderStore:
    """Orders keyed by order id. Unknown ids raise KeyError, bad enum values ValueError."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._orders: dict[str, Order] = {}

    def add_order(
        self,
        order_id: str,
        business_product_id: str,
        line_items: Iterable[tuple[str, int | None, str]],
    ) -> Order:
        """Add an order whose deliveries (one per distinct delivery id) start PENDING.

        Each tuple places units of a line item in a delivery; a line item named in two
        tuples is split across two deliveries.
        """
        items = [LineItem(item_id, qty, delivery_id) for item_id, qty, delivery_id in line_items]
        if not items:
            raise ValueError("an order needs at least one line item")
        if len({(item.id, item.delivery_id) for item in items}) != len(items):
            raise ValueError("a line item is placed in one delivery twice")
        order = Order(order_id, business_product_id, items)
        for item in items:
            order.deliveries.setdefault(item.delivery_id, Delivery(item.delivery_id))
        with self._lock:
            if order_id in self._orders:
                raise ValueError(f"order {order_id!r} exists")
            self._orders[order_id] = order
            return copy.deepcopy(order)

    def update_delivery(
        self,
        order_id: str,
        delivery_id: str,
        *,
        state: str | None = None,
        reason: str | None = None,
        tracking_number: str | None = None,
        carrier_code: str | None = None,
        tracking_url: str | None = None,
        milestone: str | None = None,
        estimated_earliest: str | None = None,
        estimated_latest: str | None = None,
    ) -> Delivery:
        """Set the given (non-None) fields and return a copy of the updated delivery.

        A new milestone stamps ``milestone_at`` with the current UTC time.
        """
        _check(state, STATES, "state")
        _check(reason, REASONS, "reason")
        _check(milestone, MILESTONES, "milestone")
        changes = {
            "state": state,
            "reason": reason,
            "tracking_number": tracking_number,
            "carrier_code": carrier_code,
            "tracking_url": tracking_url,
            "milestone": milestone,
            "milestone_at": _now() if milestone is not None else None,
            "estimated_earliest": estimated_earliest,
            "estimated_latest": estimated_latest,
        }
        with self._lock:
            delivery = self._orders[order_id].deliveries[delivery_id]
            for name, value in changes.items():
                if value is not None:
                    setattr(delivery, name, value)
            return copy.deepcopy(delivery)

    def split(
        self, order_id: str, line_item_id: str, from_delivery: str, to_delivery: str, units: int
    ) -> Order:
        """Move ``units`` of a line item from one delivery to another (created PENDING
        when new), as Buy with Prime splits a PENDING delivery. Raises KeyError for an
        unknown order or placement, ValueError for units it does not hold."""
        with self._lock:
            order = self._orders[order_id]
            source = next(
                (
                    li
                    for li in order.line_items
                    if li.id == line_item_id and li.delivery_id == from_delivery
                ),
                None,
            )
            if source is None:
                raise KeyError(f"{line_item_id} in {from_delivery}")
            if source.quantity is None or not 0 < units <= source.quantity:
                raise ValueError(f"cannot move {units} of {source.quantity} units")
            target = next(
                (
                    li
                    for li in order.line_items
                    if li.id == line_item_id and li.delivery_id == to_delivery
                ),
                None,
            )
            if target is None:
                order.line_items.append(LineItem(line_item_id, units, to_delivery))
            else:
                target.quantity = (target.quantity or 0) + units
            source.quantity -= units
            if source.quantity == 0:
                order.line_items.remove(source)
            order.deliveries.setdefault(to_delivery, Delivery(to_delivery))
            return copy.deepcopy(order)

    def get_order(self, order_id: str) -> Order | None:
        with self._lock:
            order = self._orders.get(order_id)
            return copy.deepcopy(order) if order is not None else None

    def delivery(self, order_id: str, delivery_id: str) -> Delivery:
        with self._lock:
            return copy.deepcopy(self._orders[order_id].deliveries[delivery_id])

    def all_deliveries(self) -> dict[tuple[str, str], Delivery]:
        """Every delivery, keyed by (order id, delivery id)."""
        with self._lock:
            return {
                (order.id, delivery.id): copy.deepcopy(delivery)
                for order in self._orders.values()
                for delivery in order.deliveries.values()
            }
