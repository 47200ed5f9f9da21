"""Realistic event streams for tests, the demo and benchmarks.

Orders with one or two deliveries and a few line items; each state change announced by
one to three twin detail-types, some messages delivered twice, some deliveries jumping
ahead so that their earlier event arrives last.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass

from sandbox.bwp_store import OrderStore
from tasks.events.catalog import TWINS, DeliveryState
from tasks.events.samples import build_event, to_body

Delivery = tuple[str, str]  # (order id, delivery id)


@dataclass(frozen=True)
class StreamShape:
    #: share of state changes announced by more than one twin detail-type
    twin_rate: float = 0.3
    #: share of messages SQS delivers twice
    redelivery_rate: float = 0.1
    #: share of deliveries whose IN_TRANSIT event arrives after their DELIVERED one
    out_of_order_rate: float = 0.2
    #: share of deliveries cancelled instead of delivered
    cancel_rate: float = 0.2


def add_orders(
    store: OrderStore, rng: random.Random, count: int, *, prefix: str, business_product_id: str
) -> list[Delivery]:
    """Add ``count`` orders (1-2 deliveries, 1-3 line items); return their deliveries."""
    deliveries: list[Delivery] = []
    for n in range(count):
        order_id = f"{prefix}-{n:06d}"
        per_order = rng.choice([1, 1, 2])
        items = [
            (f"li-{i}", rng.randint(1, 4), f"d-{i % per_order}")
            for i in range(rng.randint(per_order, 3))
        ]
        store.add_order(order_id, business_product_id, items)
        deliveries += [(order_id, f"d-{i}") for i in range(per_order)]
    return deliveries


def announce(
    rng: random.Random,
    delivery: Delivery,
    state: DeliveryState,
    *,
    business_product_id: str,
    shape: StreamShape = StreamShape(),
) -> list[str]:
    """SQS bodies announcing one state change: twins and redeliveries per ``shape``."""
    order_id, delivery_id = delivery
    twins = TWINS[state]
    count = rng.randint(2, len(twins)) if rng.random() < shape.twin_rate else 1
    bodies: list[str] = []
    for detail_type in rng.sample(twins, k=count):
        event = build_event(
            detail_type,
            business_product_id=business_product_id,
            order_id=order_id,
            delivery_id=delivery_id,
        )
        copies = 2 if rng.random() < shape.redelivery_rate else 1
        bodies += [to_body(event)] * copies
    return bodies


def dedup_keys(bodies: Sequence[str]) -> list[str]:
    """The distinct dedup keys of ``bodies`` (idempotencyKey, else the envelope id)."""
    keys = set()
    for body in bodies:
        event = json.loads(body)
        keys.add((event.get("detail") or {}).get("idempotencyKey") or event["id"])
    return sorted(keys)


@dataclass
class Lifecycle:
    """Two phases of a stream: every delivery ships, then every delivery ends.

    ``ship()`` moves the store to IN_TRANSIT (the out-of-order ones straight on to their
    end) and returns the bodies to send; ``finish()`` ends the rest and returns their
    bodies followed by the held-back IN_TRANSIT bodies of the jumpers.
    """

    store: OrderStore
    rng: random.Random
    deliveries: list[Delivery]
    business_product_id: str
    shape: StreamShape = StreamShape()

    def __post_init__(self) -> None:
        jump = int(len(self.deliveries) * self.shape.out_of_order_rate)
        self.jumpers = set(self.rng.sample(self.deliveries, k=jump))
        self._held_back: list[str] = []

    def _announce(self, delivery: Delivery, state: DeliveryState) -> list[str]:
        return announce(
            self.rng,
            delivery,
            state,
            business_product_id=self.business_product_id,
            shape=self.shape,
        )

    def _end(self, delivery: Delivery) -> list[str]:
        cancel = self.rng.random() < self.shape.cancel_rate
        state = DeliveryState.CANCELLED if cancel else DeliveryState.DELIVERED
        reason = "CUSTOMER_REQUESTED" if cancel else None
        self.store.update_delivery(*delivery, state=state.value, reason=reason)
        return self._announce(delivery, state)

    def ship(self) -> list[str]:
        bodies: list[str] = []
        for delivery in self.deliveries:
            order_id, delivery_id = delivery
            self.store.update_delivery(
                order_id,
                delivery_id,
                state="IN_TRANSIT",
                tracking_number=f"TN-{order_id}-{delivery_id}",
                carrier_code="UPS",
            )
            in_transit = self._announce(delivery, DeliveryState.IN_TRANSIT)
            if delivery in self.jumpers:
                self._held_back += in_transit
                bodies += self._end(delivery)
            else:
                bodies += in_transit
        self.rng.shuffle(bodies)
        return bodies

    def finish(self) -> list[str]:
        bodies: list[str] = []
        for delivery in self.deliveries:
            if delivery not in self.jumpers:
                bodies += self._end(delivery)
        self.rng.shuffle(bodies)
        return bodies + self._held_back
