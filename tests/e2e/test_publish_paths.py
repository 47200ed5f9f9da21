"""Every way a sync task is published, run by a real Celery worker process: the poller's
batch (one LPUSH), the broker's producer (any broker but Redis), the sweep's re-dispatch
of a lost task, and Celery's retry of a task that has to wait. Each event's push reaches
the OMS and the ledger marks it done."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery

from config.settings import Settings
from sandbox.stack import LocalStack, StackOptions
from tasks.celery import make_app
from tasks.dispatch import Dispatcher
from tasks.ledger.events import ClaimRequest, QueuedEvent
from tasks.runtime import make_ledger
from tests.e2e.checks import api_calls, pushes
from tests.e2e.conftest import in_transit_event, lost_task, stack_settings

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(redis_url: str) -> Iterator[LocalStack]:
    with LocalStack(StackOptions(redis_url=redis_url)) as running:
        running.start_worker(concurrency=2)
        yield running


@pytest.fixture(scope="module")
def settings(stack: LocalStack) -> Settings:
    return stack_settings(stack)


@pytest.fixture(scope="module")
def app(settings: Settings) -> Iterator[Celery]:
    celery = make_app(settings)
    yield celery
    celery.close()


def queued(stack: LocalStack, settings: Settings, events: list[QueuedEvent]) -> None:
    """Claimed and marked `queued`, as the poller does before and after publishing."""
    ledger = make_ledger(stack.redis, settings)
    ledger.claim([ClaimRequest(e.dedup_key, "h") for e in events])
    ledger.mark_queued(events)


def publish_as_the_poller(app: Celery, settings: Settings, events: list[QueuedEvent]) -> None:
    dispatcher = Dispatcher.for_settings(app, settings)
    try:
        assert dispatcher.publish(events) == [True] * len(events)
    finally:
        dispatcher.close()


def run_to_done(stack: LocalStack, keys: list[str], what: str) -> None:
    stack.wait_until(
        lambda: all(stack.ledger_state(k) == "done" for k in keys), timeout=60, what=what
    )


def worker_log(stack: LocalStack) -> list[dict[str, Any]]:
    """The worker's JSON log lines (LOG_FORMAT=json)."""
    [worker] = [p for p in stack.processes if p.name == "worker"]
    lines = worker.log_path.read_text(errors="replace").splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_the_pollers_batch_runs(stack: LocalStack, settings: Settings, app: Celery) -> None:
    # Given three events published as the poller publishes them: one LPUSH
    orders = [f"322-PUB-B{i}" for i in range(3)]
    events = [in_transit_event(stack, order_id) for order_id in orders]
    queued(stack, settings, events)
    publish_as_the_poller(app, settings, events)
    # Then the worker runs each: the OMS has its push, the ledger says done
    run_to_done(stack, [e.dedup_key for e in events], "the batch's tasks to run")
    assert [len(pushes(stack, order_id)) for order_id in orders] == [1, 1, 1]


def test_the_producers_publish_runs(stack: LocalStack, settings: Settings, app: Celery) -> None:
    # Given an event published through the broker's producer (any broker but Redis)
    events = [in_transit_event(stack, "322-PUB-P1")]
    queued(stack, settings, events)
    assert Dispatcher(app, settings.celery_queue).publish(events) == [True]
    # Then the worker runs it
    run_to_done(stack, [events[0].dedup_key], "the producer's task to run")
    assert len(pushes(stack, "322-PUB-P1")) == 1


def test_the_sweeps_publish_runs(stack: LocalStack) -> None:
    # Given an event `queued` an hour ago whose task never reached a worker, which the
    # sweep publishes again
    key, _ = lost_task(stack, "322-PUB-S1")
    # Then the worker runs it
    run_to_done(stack, [key], "the swept task to run")
    assert len(pushes(stack, "322-PUB-S1")) == 1


def test_celerys_retry_runs(stack: LocalStack, settings: Settings, app: Celery) -> None:
    # Given an event whose order the API does not show yet, published and tried once
    order_id = "322-PUB-R1"
    events = [in_transit_event(stack, order_id, in_the_api=False)]
    queued(stack, settings, events)
    publish_as_the_poller(app, settings, events)
    stack.wait_until(lambda: api_calls(stack, order_id) >= 1, timeout=30, what="a first try")
    # When the order appears while the task waits for its retry
    stack.api.store.add_order(order_id, "bp-e2e", [("li", 1, "d-1")])
    stack.api.store.update_delivery(order_id, "d-1", state="IN_TRANSIT")
    # Then the retry Celery published runs: the push lands, from a retry of the task
    run_to_done(stack, [events[0].dedup_key], "the retried task to run")
    assert len(pushes(stack, order_id)) == 1
    [synced] = [
        e
        for e in worker_log(stack)
        if e.get("event") == "event_synced" and e.get("order_id") == order_id
    ]
    assert synced["outcome"] == "pushed" and synced["retries"] >= 1
