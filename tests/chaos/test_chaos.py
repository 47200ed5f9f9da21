"""Chaos: 500+ events with twins and redeliveries while faults hit every part.

Faults: SIGKILL a Celery worker mid-task, SIGKILL the poller mid-batch, restart Redis
under the running processes, API 503 and throttling bursts, a token invalidation, the OMS
down for a while. Twice: with a Redis that persists every write (append-only, fsync
always), and with one like ElastiCache's, that keeps nothing on disk, so that its
restart loses everything (ledger, delivery records, token, broker queue). After the
faults stop, every delivery at the OMS must equal the API's final state, none lost,
queues empty; every repeated Idempotency-Key is listed with the fault that caused it.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator

import pytest

from sandbox.stack import LocalStack, StackOptions
from sandbox.stream import Lifecycle, add_orders, dedup_keys
from tests.e2e.checks import mismatches

pytestmark = pytest.mark.chaos

FAST_RECOVERY = {
    # Short horizons so the run converges in a minute or two; production keeps the defaults.
    "SQS_VISIBILITY_TIMEOUT": "10",
    "BROKER_VISIBILITY_TIMEOUT": "20",
    "TASK_DEADLINE_SECONDS": "15",
    "HTTP_TOTAL_TIMEOUT_SECONDS": "10",
    "CLAIM_TTL_SECONDS": "5",
    "SWEEP_AFTER_SECONDS": "30",
    "SWEEP_INTERVAL_SECONDS": "5",
    "DELIVERY_LOCK_TTL_SECONDS": "5",
    "TASK_RETRY_BASE_SECONDS": "0.5",
    "TASK_RETRY_CAP_SECONDS": "4",
    "TASK_MAX_RETRIES": "12",
    "RECONCILE_INTERVAL_SECONDS": "3600",
}


class Faults:
    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.log: list[tuple[float, str]] = []

    def note(self, what: str) -> None:
        self.log.append((time.time(), what))

    def first_after(self, moment: float) -> str:
        after = [what for at, what in self.log if at >= moment]
        return after[0] if after else "none after it"


@pytest.fixture(params=["aof-fsync-always", "no-disk"])
def chaos_stack(request: pytest.FixtureRequest) -> Iterator[LocalStack]:
    options = StackOptions(
        redis_durable=request.param == "aof-fsync-always",
        sqs_visibility_timeout=10,
        worker_concurrency=2,
        extra_env=FAST_RECOVERY,
    )
    with LocalStack(options) as stack:
        stack.start_poller()
        stack.start_worker()
        stack.start_worker()
        stack.start_beat()
        yield stack


def send_in_waves(stack: LocalStack, bodies: list[str], faults: list[Callable[[], None]]) -> None:
    """Send ``bodies`` in as many waves as there are faults, one fault after each wave."""
    size = -(-len(bodies) // len(faults))
    for n, fault in enumerate(faults):
        for body in bodies[n * size : (n + 1) * size]:
            stack.send(body)
        fault()


# Convergence alone may take up to 240 s (wait_until below), and the stack's processes
# their shutdown windows: the suite's 120 s per test is too short here.
@pytest.mark.timeout(420)
def test_nothing_is_lost_under_chaos(chaos_stack: LocalStack) -> None:
    stack = chaos_stack
    faults = Faults(stack)
    rng = random.Random(4242)
    deliveries = add_orders(
        stack.api.store, rng, 170, prefix="322-CHAOS", business_product_id="bp-chaos"
    )
    orders = sorted({o for o, _ in deliveries})
    life = Lifecycle(stack.api.store, rng, deliveries, "bp-chaos")

    def progress() -> None:
        count = len(stack.oms.received)
        stack.wait_until(lambda: len(stack.oms.received) > count, timeout=60, what="progress")

    def kill_worker() -> None:
        progress()  # tasks are running
        worker = next(p for p in stack.processes if p.name == "worker" and not p.exiting)
        worker.kill_hard()
        faults.note("SIGKILL worker mid-task")
        stack.start_worker()

    def kill_poller() -> None:
        progress()
        poller = next(p for p in stack.processes if p.name == "poller" and not p.exiting)
        poller.kill_hard()
        faults.note("SIGKILL poller mid-batch")
        stack.start_poller()

    def restart_redis() -> None:
        progress()
        durable = stack.options.redis_durable
        faults.note("Redis restart" if durable else "Redis restarted empty")
        stack.restart_redis(wipe=not durable)

    def api_bursts() -> None:
        stack.api.inject("http503", 15)
        stack.api.inject("throttle", 15)
        faults.note("API 503 + throttling bursts")

    def token_invalidation() -> None:
        stack.api.invalidate_tokens()
        faults.note("token invalidation")

    def oms_down() -> None:
        progress()
        stack.oms.set_down(True)
        faults.note("OMS down")
        time.sleep(3)  # the outage itself: how long the OMS stays away
        stack.oms.set_down(False)
        faults.note("OMS back")

    started = time.monotonic()
    phase1 = life.ship()
    send_in_waves(stack, phase1, [api_bursts, kill_worker, token_invalidation, restart_redis])
    phase2 = life.finish()
    send_in_waves(stack, phase2, [kill_poller, oms_down, kill_worker, api_bursts])
    faults.note("faults stopped")
    every = phase1 + phase2
    keys = dedup_keys(every)

    stack.wait_until(
        lambda: stack.settled(keys) and not mismatches(stack, orders),
        timeout=240,
        what="convergence",
        explain=lambda: f"{stack.unsettled(keys)}; OMS wrong: {mismatches(stack, orders)}",
    )
    converged = time.monotonic() - started

    # Then nothing was lost: every delivery at the OMS equals the API, queues are empty
    assert mismatches(stack, orders) == []
    assert stack.queue_counts() == (0, 0)
    parked = stack.queue_counts(stack.dlq_url)
    assert parked == (0, 0), "no event may be parked: every fault was transient"
    assert len(every) >= 500
    # Every repeated Idempotency-Key is listed with its cause: the first fault after the
    # first, applied push (the push landed, then something stopped the task recording it,
    # so a later run pushed the same snapshot again and the OMS answered 409).
    repeats = []
    for key, count in stack.oms.keys_seen.items():
        if count > 1:
            first = min(
                p.received_wall for p in stack.oms.received if p.body["idempotencyKey"] == key
            )
            repeat = min(
                a.received_wall
                for a in stack.oms.attempts
                if a.headers.get("idempotency-key") == key and a.status == 409
            )
            repeats.append(
                {
                    "key": key[:12],
                    "times": count,
                    "cause": faults.first_after(first),
                    "repeated_after_s": round(repeat - first, 1),
                }
            )
    figures = {
        "events_sent": len(every),
        "distinct_events": len(keys),
        "deliveries": len(deliveries),
        "faults": [what for _, what in faults.log],
        "oms_pushes_applied": len(stack.oms.received),
        "repeated_keys": repeats,
        "order_api_calls": stack.api.stats()["order_queries"],
        "lost": 0,
        "seconds_to_converge": round(converged, 1),
    }
    print(json.dumps(figures, indent=1))
