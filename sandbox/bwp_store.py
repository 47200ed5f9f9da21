"""The sandbox order API's data: orders, line items and deliveries, in memory.

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
        """Add an order whose deliveries (one per distinct delivery id) start PENDING."""
        items = [LineItem(item_id, qty, delivery_id) for item_id, qty, delivery_id in line_items]
        if not items:
            raise ValueError("an order needs at least one line item")
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
