"""A stream of well over 100 events with twins, redeliveries and out-of-order arrivals:
the OMS must end with exactly the API's final state, one push per distinct snapshot, no
repeated Idempotency-Key, and empty queues."""

from __future__ import annotations

import json
import random
import time

import pytest

from sandbox.stack import LocalStack
from sandbox.stream import Lifecycle, add_orders, dedup_keys
from tests.e2e.checks import mismatches

pytestmark = pytest.mark.e2e


def test_a_stream_with_twins_and_redeliveries_converges(stack: LocalStack) -> None:
    # Given 30 orders (about 45 deliveries) that ship, then end
    rng = random.Random(20261129)
    prefix = f"322-CONV-{stack.options.api_version}"
    deliveries = add_orders(stack.api.store, rng, 30, prefix=prefix, business_product_id="bp-conv")
    orders = sorted({order_id for order_id, _ in deliveries})
    life = Lifecycle(stack.api.store, rng, deliveries, "bp-conv")
    pushes_before, calls_before = len(stack.oms.received), stack.api.stats()["order_queries"]
    started = time.monotonic()

    # When the shipping events arrive (a fifth of the deliveries already ended) ...
    phase1 = life.ship()
    for body in phase1:
        stack.send(body)
    stack.wait_until(lambda: stack.settled(dedup_keys(phase1)), timeout=120, what="phase 1")
    # ... then the end events, then the held-back shipping events of the jumpers
    phase2 = life.finish()
    for body in phase2:
        stack.send(body)
    every = phase1 + phase2
    stack.wait_until(lambda: stack.settled(dedup_keys(every)), timeout=120, what="phase 2")
    elapsed = time.monotonic() - started

    received = [p.body for p in stack.oms.received[pushes_before:] if p.body["orderId"] in orders]
    keys_pushed = [b["idempotencyKey"] for b in received]
    calls = stack.api.stats()["order_queries"] - calls_before
    # Then the OMS holds the API's final state for every delivery ...
    assert mismatches(stack, orders) == []
    # ... each distinct snapshot arrived once: two per delivery, one for the jumpers
    assert len(keys_pushed) == len(set(keys_pushed)) == 2 * len(deliveries) - len(life.jumpers)
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
