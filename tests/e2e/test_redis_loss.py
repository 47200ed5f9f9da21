"""Redis restarted empty (an ElastiCache failover or node replacement): SQS still holds
every event until the OMS has it, so nothing is lost (design.md section 3.1).

Production's Redis: no fsync'd persistence. Here the embedded Redis keeps nothing on disk
and its data directory is wiped across the restart.
"""

from __future__ import annotations

import json

import pytest

from sandbox.stack import LocalStack, StackOptions
from tests.e2e.checks import pushes

pytestmark = pytest.mark.e2e

ORDERS = [f"322-WIPE-{i:03d}" for i in range(24)]


def states(stack: LocalStack, order_id: str) -> list[str]:
    return [p["state"] for p in pushes(stack, order_id)]


def test_delivered_events_waiting_in_the_broker_survive_redis_restarted_empty() -> None:
    with LocalStack(StackOptions(redis_durable=False, sqs_visibility_timeout=20)) as stack:
        prefix = stack.options.key_prefix
        broker_list = f"{prefix}celery:{prefix}sync"
        # Given 24 deliveries shipped, their IN_TRANSIT at the OMS
        stack.start_poller()
        worker = stack.start_worker()
        for order_id in ORDERS:
            stack.api.store.add_order(order_id, "bp", [("li", 1, "d-1")])
            stack.api.move(order_id, "d-1", "IN_TRANSIT", tracking_number=f"T-{order_id}")
        stack.wait_until(
            lambda: all(states(stack, o) == ["IN_TRANSIT"] for o in ORDERS),
            timeout=60,
            what="24 IN_TRANSIT pushes",
        )
        # ... the workers down, and the 24 deliveries' DELIVERED events taken by the poller
        # into the broker
        worker.stop()
        for order_id in ORDERS:
            stack.api.move(order_id, "d-1", "DELIVERED")
        stack.wait_until(
            lambda: stack.queue_counts()[0] == 0 and stack.redis.llen(broker_list) >= 24,
            timeout=60,
            what="the DELIVERED events waiting in the broker",
        )
        # When Redis restarts empty: ledger, delivery records and broker queue all gone
        # (the poller re-dispatches within a tick, so the emptiness is not asserted here:
        # the log below shows what it found)
        run_id = stack.redis.info("server")["run_id"]
        stack.restart_redis(wipe=True)
        assert stack.redis.info("server")["run_id"] != run_id
        # ... and the workers come back
        stack.start_worker()
        # Then every DELIVERED update reaches the OMS, and every message leaves SQS
        stack.wait_until(
            lambda: all(states(stack, o)[-1:] == ["DELIVERED"] for o in ORDERS),
            timeout=120,
            what="24 DELIVERED pushes after the wipe",
        )
        lost = [o for o in ORDERS if "DELIVERED" not in states(stack, o)]
        assert lost == []
        # never backwards, and each state once per delivery
        assert all(states(stack, o) == ["IN_TRANSIT", "DELIVERED"] for o in ORDERS)
        stack.wait_until(
            lambda: stack.queue_counts() == (0, 0), timeout=60, what="the queue drained"
        )
        assert stack.queue_counts(stack.dlq_url) == (0, 0)
        # ... because the poller found the held events' records gone and dispatched them again
        poller_log = next(p for p in stack.processes if p.name == "poller").log_path.read_text()
        redispatched = sum(
            json.loads(line)["count"]
            for line in poller_log.splitlines()
            if '"ledger_record_lost_redispatched"' in line
        )
        assert redispatched >= len(ORDERS)
