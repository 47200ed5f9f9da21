"""A stream of well over 100 events with twins, redeliveries and out-of-order arrivals:
the OMS must end with exactly the API's final state, one push per distinct snapshot, no
repeated Idempotency-Key, and empty queues."""

from __future__ import annotations

import json
import random
import time

import pytest

from sandbox.stack import LocalStack
from tasks.catalog import TWINS, DeliveryState
from tasks.events import build_event, to_body
from tests.e2e.checks import mismatches
from tests.e2e.conftest import new_order_id

pytestmark = pytest.mark.e2e
Delivery = tuple[str, str]


def announce(rng: random.Random, delivery: Delivery, state: DeliveryState) -> list[str]:
    """Bodies announcing one state change: one to three twins, ~10% sent twice."""
    order_id, delivery_id = delivery
    bodies = []
    for detail_type in rng.sample(TWINS[state], k=rng.choice([1, 1, 2, 3])):
        event = build_event(
            detail_type, business_product_id="bp-conv", order_id=order_id, delivery_id=delivery_id
        )
        bodies += [to_body(event)] * (2 if rng.random() < 0.1 else 1)
    return bodies


def dedup_keys(bodies: list[str]) -> list[str]:
    events = [json.loads(b) for b in bodies]
    return sorted({(e["detail"] or {}).get("idempotencyKey") or e["id"] for e in events})


def send_shuffled(stack: LocalStack, rng: random.Random, bodies: list[str]) -> None:
    rng.shuffle(bodies)
    for body in bodies:
        stack.send(body)


def test_a_stream_with_twins_and_redeliveries_converges(stack: LocalStack) -> None:
    rng = random.Random(20261129)
    orders: list[str] = []
    deliveries: list[Delivery] = []
    for _ in range(30):
        order_id = new_order_id("322-CONV")
        count = rng.choice([1, 1, 2])
        items = [
            (f"li-{i}", rng.randint(1, 4), f"d-{i % count}") for i in range(rng.randint(count, 3))
        ]
        stack.api.store.add_order(order_id, "bp-conv", items)
        orders.append(order_id)
        deliveries += [(order_id, f"d-{i}") for i in range(count)]
    jumpers = set(rng.sample(deliveries, k=len(deliveries) // 5))
    pushes_before, calls_before = len(stack.oms.received), stack.api.stats()["order_queries"]
    started = time.monotonic()

    # Phase 1: every delivery ships; a fifth jump straight to DELIVERED, and their
    # IN_TRANSIT events are held back to arrive last (out of order).
    phase1, held_back = [], []
    for order_id, delivery_id in deliveries:
        stack.api.store.update_delivery(
            order_id,
            delivery_id,
            state="IN_TRANSIT",
            tracking_number=f"TN-{order_id}-{delivery_id}",
            carrier_code="UPS",
        )
        in_transit = announce(rng, (order_id, delivery_id), DeliveryState.IN_TRANSIT)
        if (order_id, delivery_id) in jumpers:
            stack.api.store.update_delivery(order_id, delivery_id, state="DELIVERED")
            phase1 += announce(rng, (order_id, delivery_id), DeliveryState.DELIVERED)
            held_back += in_transit
        else:
            phase1 += in_transit
    send_shuffled(stack, rng, phase1)
    stack.wait_until(lambda: stack.settled(dedup_keys(phase1)), timeout=120, what="phase 1")

    # Phase 2: the others reach their end (most delivered, some cancelled); then the
    # held-back IN_TRANSIT events arrive.
    phase2 = []
    for order_id, delivery_id in deliveries:
        if (order_id, delivery_id) in jumpers:
            continue
        cancel = rng.random() < 0.2
        state = DeliveryState.CANCELLED if cancel else DeliveryState.DELIVERED
        reason = "CUSTOMER_REQUESTED" if cancel else None
        stack.api.store.update_delivery(order_id, delivery_id, state=state.value, reason=reason)
        phase2 += announce(rng, (order_id, delivery_id), state)
    send_shuffled(stack, rng, phase2)
    send_shuffled(stack, rng, held_back)
    every = phase1 + phase2 + held_back
    stack.wait_until(lambda: stack.settled(dedup_keys(every)), timeout=120, what="phase 2")
    elapsed = time.monotonic() - started

    received = [p.body for p in stack.oms.received[pushes_before:] if p.body["orderId"] in orders]
    keys_pushed = [b["idempotencyKey"] for b in received]
    calls = stack.api.stats()["order_queries"] - calls_before
    # Then the OMS holds the API's final state for every delivery ...
    assert mismatches(stack, orders) == []
    # ... each distinct snapshot arrived once: two per delivery, one for the jumpers
    assert len(keys_pushed) == len(set(keys_pushed)) == 2 * len(deliveries) - len(jumpers)
    assert stack.oms.duplicates() == 0
    # ... twins and redeliveries cost no order query: one per distinct change
    assert calls == len(keys_pushed)
    assert stack.queue_counts() == (0, 0)
    assert stack.queue_counts(stack.dlq_url) == (0, 0)
    assert len(every) >= 100
    print(  # the figures for the closing note: run with -s
        json.dumps(
            {
                "api_version": stack.options.api_version,
                "events_sent": len(every),
                "distinct_events": len(dedup_keys(every)),
                "deliveries": len(deliveries),
                "oms_pushes": len(received),
                "order_api_calls": calls,
                "seconds_to_converge": round(elapsed, 2),
            }
        )
    )
