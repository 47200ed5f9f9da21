"""Redis (the broker) restarts under running processes: they reconnect by themselves.

Celery 5.7.0 was once held back after a worker of a prototype exited ("Unrecoverable
error") when Redis went away; the pinned 5.7.0 with kombu 5.7.0 reconnects here. Every
Celery or kombu upgrade (the pins in pyproject.toml) must keep this green. A SIGTERM'd
worker exits within ECS's stop timeout, and the events in flight still reach the OMS
through another worker.
"""

from __future__ import annotations

import signal
import time

import pytest

from sandbox.stack import LocalStack, StackOptions
from tests.e2e.checks import pushes

pytestmark = pytest.mark.e2e


def test_processes_survive_a_redis_restart() -> None:
    with LocalStack(StackOptions(redis_durable=True)) as stack:
        poller, worker = stack.start_poller(), stack.start_worker()
        stack.api.store.add_order("322-RST-1", "bp", [("li", 1, "d-1")])
        stack.api.move("322-RST-1", "d-1", "IN_TRANSIT", tracking_number="T1")
        stack.wait_until(lambda: len(pushes(stack, "322-RST-1")) == 1, what="first push")
        # When Redis restarts under them
        stack.restart_redis()
        stack.api.move("322-RST-1", "d-1", "DELIVERED")
        # Then the next event still reaches the OMS, through the same processes
        stack.wait_until(
            lambda: len(pushes(stack, "322-RST-1")) == 2, timeout=90, what="push after restart"
        )
        assert poller.popen.poll() is None and worker.popen.poll() is None


def test_a_sigtermed_worker_exits_in_time_and_nothing_is_lost() -> None:
    with LocalStack(StackOptions()) as stack:
        stack.start_poller()
        worker = stack.start_worker()
        stack.api.set_latency(0.2)  # tasks are in flight when the signal arrives
        orders = [f"322-TERM-{i}" for i in range(12)]
        for order_id in orders:
            stack.api.store.add_order(order_id, "bp", [("li", 1, "d-1")])
            stack.api.move(order_id, "d-1", "DELIVERED")
        stack.wait_until(lambda: len(stack.oms.received) >= 1, what="work under way")
        started = time.monotonic()
        worker.signal(signal.SIGTERM)
        assert worker.popen.wait(30) == 0
        assert time.monotonic() - started < 30
        stack.start_worker()
        stack.wait_until(
            lambda: all(pushes(stack, o) for o in orders), timeout=90, what="all pushed"
        )
        assert all(len(pushes(stack, o)) == 1 for o in orders)
