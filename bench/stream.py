"""The benchmark's event stream: sandbox.stream's two-phase lifecycle, planned locally.

Orders, twins (~30%), redeliveries (~10%) and out-of-order jumpers (20% of deliveries)
come from ``sandbox.stream`` driven by a seeded RNG on a local OrderStore; the plan then
tells the API process what to hold in each phase. Every run gets the same plan under its
own order-id prefix (the sandbox API keeps its orders for the whole benchmark).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

from sandbox.bwp_store import Delivery, OrderStore
from sandbox.stream import Lifecycle, add_orders
from tasks.events.samples import build_event, to_body

BUSINESS_PRODUCT = "bp-bench"
#: messages per order the default StreamShape yields, measured over a few thousand orders
EVENTS_PER_ORDER = 4.25

Key = tuple[str, str]  # (order id, delivery id)


@dataclass(frozen=True)
class Stream:
    orders: list[dict[str, object]]  # bodies for POST /_sandbox/orders
    phase1: list[str]  # SQS bodies: every delivery ships (jumpers end at once)
    phase2: list[str]  # the rest end, then the jumpers' late IN_TRANSIT events
    phase1_states: dict[Key, Delivery]
    final_states: dict[Key, Delivery]
    jumpers: int

    @property
    def events(self) -> int:
        return len(self.phase1) + len(self.phase2)

    @property
    def deliveries(self) -> int:
        return len(self.final_states)

    @property
    def changes(self) -> int:
        """Distinct delivery changes: two per delivery, one for a jumper (it skips a state)."""
        return 2 * self.deliveries - self.jumpers


def build(events: int, seed: int, prefix: str) -> Stream:
    """About ``events`` messages over ``events / 4.25`` orders, the same for one seed."""
    rng, store = random.Random(seed), OrderStore()
    count = max(1, round(events / EVENTS_PER_ORDER))
    deliveries = add_orders(store, rng, count, prefix=prefix, business_product_id=BUSINESS_PRODUCT)
    life = Lifecycle(store, rng, deliveries, BUSINESS_PRODUCT)
    phase1 = life.ship()
    phase1_states = store.all_deliveries()
    phase2 = life.finish()
    orders: list[dict[str, object]] = []
    for order_id in sorted({order_id for order_id, _ in deliveries}):
        order = store.get_order(order_id)
        assert order is not None
        items = [
            {"id": li.id, "quantity": li.quantity, "deliveryId": li.delivery_id}
            for li in order.line_items
        ]
        orders.append(
            {"orderId": order_id, "businessProductId": BUSINESS_PRODUCT, "lineItems": items}
        )
    return Stream(orders, phase1, phase2, phase1_states, store.all_deliveries(), len(life.jumpers))


def move_body(key: Key, delivery: Delivery) -> dict[str, object]:
    """The POST /_sandbox/move body that makes the API show ``delivery``."""
    fields = asdict(delivery)
    return {
        "orderId": key[0],
        "deliveryId": key[1],
        "state": fields["state"],
        "reason": fields["reason"],
        "trackingNumber": fields["tracking_number"],
        "carrierCode": fields["carrier_code"],
    }


@dataclass(frozen=True)
class Warmup:
    """One in-transit delivery and its event: a consumer's first event, not measured."""

    order: dict[str, object]
    move: dict[str, object]
    body: str


def warmup(prefix: str) -> Warmup:
    order_id = f"{prefix}-WARM"
    item = {"id": "li-0", "quantity": 1, "deliveryId": "d-0"}
    order: dict[str, object] = {
        "orderId": order_id,
        "businessProductId": BUSINESS_PRODUCT,
        "lineItems": [item],
    }
    move: dict[str, object] = {"orderId": order_id, "deliveryId": "d-0", "state": "IN_TRANSIT"}
    event = build_event(
        "PACKAGE_DELIVERY_IN_TRANSIT",
        business_product_id=BUSINESS_PRODUCT,
        order_id=order_id,
        delivery_id="d-0",
    )
    return Warmup(order, move, to_body(event))
