"""The demo's scripted story: orders are placed, their deliveries move, and a real queue's
trouble arrives with them (twins, a redelivery, a late event, a malformed message, an
event type the worker does not handle). One line item is split across two deliveries
(1 unit cancelled as unfulfillable, 2 delivered), and one carrier milestone changes.

The sandbox API publishes the events itself when a delivery moves (``api.move``), one per
subscribed twin. The story waits for the pipeline to settle after each wave, so every
run tells the same story and ends in the same counts.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from tasks.events.catalog import TWINS, DeliveryState
from tasks.events.samples import build_event, to_body

if TYPE_CHECKING:  # the sandbox is never imported by production code at import time
    from sandbox.publisher import SqsPublisher
    from sandbox.stack import LocalStack

Say = Callable[[str], None]
Item = tuple[str, int, str]  # (line item id, quantity, delivery id)

BUSINESS_PRODUCT: Final = "bp-demo"
MALFORMED_BODY: Final = '{"detail-type": "PACKAGE_DELIVERED", this is not JSON'
SETTLE_TIMEOUT: Final = 45.0
_CARRIERS: Final = ("UPS", "USPS", "FEDEX")


@dataclass
class Journal:
    """What the story put in the queue, by origin, and the events among it."""

    sent: Counter[str] = field(default_factory=Counter)
    events: list[dict[str, Any]] = field(default_factory=list)
    malformed_body: str = MALFORMED_BODY

    def dedup_keys(self) -> list[str]:
        return [(e["detail"] or {}).get("idempotencyKey") or e["id"] for e in self.events]


class RecordingPublisher:
    """Wraps the sandbox publisher and keeps every event it published."""

    def __init__(self, inner: SqsPublisher) -> None:
        self._inner = inner
        self.events: list[dict[str, Any]] = []

    def milestone(
        self, business_product_id: str, carrier_code: str, tracking_number: str
    ) -> list[dict[str, Any]]:
        events = self._inner.publish_milestone(business_product_id, carrier_code, tracking_number)
        self.events += events
        return events

    def __call__(
        self, business_product_id: str, order_id: str, delivery_id: str, state: str
    ) -> list[dict[str, Any]]:
        events = self._inner.publish(business_product_id, order_id, delivery_id, state)
        self.events += events
        return events


@dataclass(frozen=True)
class PlannedOrder:
    order_id: str
    role: str  # "two-deliveries", "split", "cancelled", "out-of-order" or "plain"
    items: tuple[Item, ...]

    @property
    def deliveries(self) -> list[str]:
        return sorted({delivery for _, _, delivery in self.items})


def plan(orders: int) -> list[PlannedOrder]:
    """``orders`` orders; the first four play the story's special roles."""
    roles = ["two-deliveries", "split", "cancelled", "out-of-order"]
    planned = []
    for i in range(orders):
        role = roles[i] if i < len(roles) else "plain"
        if role == "two-deliveries":
            items: tuple[Item, ...] = (("li-1", 2, "d-1"), ("li-2", 1, "d-1"), ("li-3", 1, "d-2"))
        elif role == "split":
            # 3 x li-3 ordered: 2 units in d-1, 1 unit split off into d-2 (then cancelled)
            items = (("li-1", 1, "d-1"), ("li-2", 2, "d-1"), ("li-3", 2, "d-1"), ("li-3", 1, "d-2"))
        else:
            count = 3 if i == 1 else 1 + i % 2
            items = tuple((f"li-{n}", n, "d-1") for n in range(1, count + 1))
        planned.append(PlannedOrder(f"322-{4401000 + i:07d}-{7700310 + 97 * i:07d}", role, items))
    return planned


class Story:
    """Plays the story against a started stack whose poller and worker run."""

    def __init__(self, stack: LocalStack, orders: int, say: Say) -> None:
        from sandbox.publisher import SqsPublisher

        self._stack = stack
        self._orders = plan(orders)
        self._say = say
        self.journal = Journal()
        publisher = stack.api.publisher
        if not isinstance(publisher, SqsPublisher):
            raise RuntimeError("the stack's API has no SQS publisher")
        self._published = RecordingPublisher(publisher)
        stack.api.publisher = self._published
        stack.api.milestone_publisher = self._published.milestone
        self._held: list[dict[str, Any]] = []

    def run(self) -> Journal:
        """Place the orders, play the three waves; raises TimeoutError when one never settles."""
        self._place_orders()
        self._wave("Shipping", self._ship)
        self._wave("Delivering", self._deliver)
        self._wave("Trouble on the queue", self._trouble)
        return self.journal

    # --- the waves --------------------------------------------------------------------
    def _place_orders(self) -> None:
        self._say("Orders placed")
        for order in self._orders:
            self._stack.api.store.add_order(order.order_id, BUSINESS_PRODUCT, order.items)
            parts = [
                f"{d} ({', '.join(f'{li} x{q}' for li, q, dd in order.items if dd == d)})"
                for d in order.deliveries
            ]
            self._say(f"  + order {order.order_id}: {'; '.join(parts)}")

    def _ship(self) -> None:
        for index, order in enumerate(self._orders):
            for delivery in order.deliveries:
                tracking = {
                    "tracking_number": f"1Z999AA1{index:04d}{delivery[-1]:0>4}",
                    "carrier_code": _CARRIERS[index % len(_CARRIERS)],
                }
                if order.role == "cancelled":
                    self._move(order.order_id, delivery, "CANCELLED", reason="CUSTOMER_REQUESTED")
                elif order.role == "split" and delivery != "d-1":
                    self._move(order.order_id, delivery, "CANCELLED", reason="UNFULFILLABLE")
                elif order.role == "out-of-order":
                    self._stack.api.store.update_delivery(
                        order.order_id, delivery, state="IN_TRANSIT", **tracking
                    )
                    self._held = [
                        build_event(
                            detail_type,
                            business_product_id=BUSINESS_PRODUCT,
                            order_id=order.order_id,
                            delivery_id=delivery,
                        )
                        for detail_type in TWINS[DeliveryState.IN_TRANSIT]
                    ]
                    self._say(
                        f"  → order {order.order_id} {delivery} IN_TRANSIT "
                        f"{tracking['tracking_number']} {tracking['carrier_code']}"
                        f" ({len(self._held)} twin events held back: they will arrive late)"
                    )
                else:
                    self._move(order.order_id, delivery, "IN_TRANSIT", **tracking)

    def _deliver(self) -> None:
        for order in self._orders:
            if order.role == "cancelled":
                continue
            for delivery in order.deliveries:
                if order.role == "two-deliveries" and delivery != "d-1":
                    self._milestone(order.order_id, delivery, "OUT_FOR_DELIVERY")
                    continue
                if order.role == "split" and delivery != "d-1":
                    continue
                self._move(order.order_id, delivery, "DELIVERED")

    def _trouble(self) -> None:
        late = self._held
        order_id, delivery = _target(late[0])
        for event in late:
            self._send(to_body(event), "late", event)
        self._say(
            f"  ↯ order {order_id} {delivery}: its {len(late)} IN_TRANSIT events arrive "
            "after DELIVERED (out of order)"
        )
        again = next(e for e in self._published.events if e["detail-type"] == "PACKAGE_DELIVERED")
        self._send(to_body(again), "redelivered")
        order_id, delivery = _target(again)
        self._say(f"  ↻ order {order_id} {delivery}: a PACKAGE_DELIVERED message arrives again")
        self._send(self.journal.malformed_body, "malformed")
        self._say("  ✗ a malformed message (not JSON)")
        unsupported = build_event(
            "ORDER_CONFIRMED", business_product_id=BUSINESS_PRODUCT, order_id=order_id
        )
        self._send(to_body(unsupported), "unsupported", unsupported)
        self._say(f"  ? ORDER_CONFIRMED for order {order_id} (a type the worker does not handle)")

    # --- helpers ----------------------------------------------------------------------
    def _wave(self, title: str, play: Callable[[], None]) -> None:
        self._say(title)
        published_before = len(self._published.events)
        play()
        new = self._published.events[published_before:]
        self.journal.events += new
        self.journal.sent["from the API's subscriptions"] += len(new)
        started = time.monotonic()
        keys = self.journal.dedup_keys()
        try:
            self._stack.wait_until(
                lambda: self._stack.settled(keys),
                timeout=SETTLE_TIMEOUT,
                what=f"{title!r} to settle",
            )
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self._stack.unsettled(keys)}") from None
        pushes = len(self._stack.oms.received)
        self._say(f"  … settled in {time.monotonic() - started:.1f} s; OMS pushes so far: {pushes}")

    def _move(self, order_id: str, delivery: str, state: str, **fields: str) -> None:
        before = len(self._published.events)
        self._stack.api.move(order_id, delivery, state, **fields)
        twins = len(self._published.events) - before
        detail = " ".join(fields[k] for k in ("tracking_number", "carrier_code") if k in fields)
        if "reason" in fields:
            detail = f"({fields['reason']})"
        self._say(
            f"  → order {order_id} {delivery} {state}{' ' + detail if detail else ''}"
            f" ({twins} twin events)"
        )

    def _milestone(self, order_id: str, delivery: str, milestone: str) -> None:
        before = len(self._published.events)
        self._stack.api.move(order_id, delivery, None, milestone=milestone)
        sent = len(self._published.events) - before
        self._say(
            f"  ⌖ order {order_id} {delivery} stays IN_TRANSIT; carrier milestone {milestone}"
            f" ({sent} PACKAGE_TRACKER_MILESTONE_CHANGED event{'' if sent == 1 else 's'})"
        )

    def _send(self, body: str, origin: str, event: dict[str, Any] | None = None) -> None:
        self._stack.send(body)
        self.journal.sent[origin] += 1
        if event is not None:
            self.journal.events.append(event)


def _target(event: dict[str, Any]) -> tuple[str, str]:
    """(order id, delivery id) named by a delivery event's resource."""
    parts = event["resources"][0].split("/")
    return parts[3], parts[5]
