"""Never backwards however slow the OMS is (design.md section 3.3): a delivery lock with a
short TTL, renewed by its live holder for the whole sync, and a fenced finish.

Before the watchdog, a lock that expired under a slow push let the DELIVERED task push,
and the held IN_TRANSIT push then landed last.
"""

from __future__ import annotations

import time

import pytest

from sandbox.stack import LocalStack, StackOptions
from tests.e2e.checks import pushes

pytestmark = pytest.mark.e2e

ORDERS = [f"322-SLOW-{i}" for i in range(2)]
RANK = {"PENDING": 0, "IN_TRANSIT": 1, "DELIVERED": 2, "CANCELLED": 2}


def test_a_slow_oms_push_outliving_the_lock_ttl_never_lands_after_a_later_state() -> None:
    with LocalStack(StackOptions()) as stack:
        # Given an OMS that holds each delivery's first IN_TRANSIT push for 6 s, and
        # workers whose delivery locks live 3 s (threads enough for every task at once)
        stack.oms.hold_first("IN_TRANSIT", 6.0)
        stack.start_poller()
        stack.start_worker(concurrency=16, DELIVERY_LOCK_TTL_SECONDS="3")
        for order_id in ORDERS:
            stack.api.store.add_order(order_id, "bp", [("li", 1, "d-1")])
            stack.api.move(order_id, "d-1", "IN_TRANSIT", tracking_number=f"T-{order_id}")
        # When each delivery's DELIVERED event arrives while its IN_TRANSIT push is held
        time.sleep(2.0)
        assert not pushes(stack, ORDERS[0]), "the IN_TRANSIT pushes should still be held"
        for order_id in ORDERS:
            stack.api.move(order_id, "d-1", "DELIVERED")
        # Then every delivery ends DELIVERED at the OMS ...
        stack.wait_until(
            lambda: all(
                [p["state"] for p in pushes(stack, o)][-1:] == ["DELIVERED"] for o in ORDERS
            ),
            timeout=90,
            what="every delivery DELIVERED at the OMS",
        )
        # (every event settled: every task, the slow ones too, has finished)
        stack.wait_until(lambda: stack.queue_counts() == (0, 0), timeout=90, what="all settled")
        # ... and no delivery ever went backwards there
        for order_id in ORDERS:
            ranks = [RANK[p["state"]] for p in pushes(stack, order_id)]
            assert ranks == sorted(ranks), (order_id, [p["state"] for p in pushes(stack, order_id)])
