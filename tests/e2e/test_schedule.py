"""Scheduled jobs never vanish behind a backlog: with 2,000 syncs waiting in the Celery
queue, beat's sweep still runs (its own queue, an expiry of several intervals), and its
last run is recorded for the poller's gauge. Real beat and worker processes."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from config.settings import Settings
from sandbox.stack import LocalStack, StackOptions
from tasks.celery import make_app
from tasks.dispatch import Dispatcher
from tasks.events.samples import build_event, to_body
from tasks.keys import Keys
from tasks.ledger.events import QueuedEvent
from tasks.ledger.runs import JobRuns

pytestmark = pytest.mark.e2e

BACKLOG = 2000


@pytest.fixture
def stack(redis_url: str) -> Iterator[LocalStack]:
    options = StackOptions(
        redis_url=redis_url,
        extra_env={"SWEEP_INTERVAL_SECONDS": "2", "API_RATE_PER_SECOND": "0"},
    )
    with LocalStack(options) as running:
        yield running


def test_the_sweep_runs_while_2000_syncs_wait(stack: LocalStack) -> None:
    # Given 2,000 sync tasks waiting in the Celery queue (events already done: each costs
    # a worker a few milliseconds)
    prefix = stack.options.key_prefix
    settings = Settings(
        redis_url=stack.redis_url, redis_key_prefix=prefix, celery_queue=f"{prefix}sync"
    )
    events = []
    for i in range(BACKLOG):
        event = build_event(
            "PACKAGE_DELIVERED", business_product_id="bp", order_id=f"322-BACK-{i}", delivery_id="d"
        )
        key = str(event["detail"]["idempotencyKey"])
        stack.redis.hset(Keys(prefix).event(key), mapping={"state": "done"})
        events.append(QueuedEvent(key, to_body(event)))
    dispatcher = Dispatcher.for_settings(make_app(settings), settings)
    assert all(dispatcher.publish(events))
    queue_key = f"{prefix}celery:{prefix}sync"
    assert stack.redis.llen(queue_key) == BACKLOG
    # ... and beat sending the sweep every 2 s, before any worker runs
    beat = stack.start_beat()
    stack.wait_until(
        lambda: "Scheduler: Sending due task" in beat.log_path.read_text(errors="replace"),
        timeout=30,
        what="beat sent the sweep",
    )
    # When a worker starts on the backlog
    worker = stack.start_worker(concurrency=4)
    runs = JobRuns(stack.redis, Keys(prefix))
    stack.wait_until(lambda: "sweep" in runs.last(), timeout=60, what="the sweep ran")
    # Then the sweep ran while most of the backlog still waited (not after it drained)
    assert stack.redis.llen(queue_key) > BACKLOG / 2
    assert abs(runs.last()["sweep"] - time.time()) < 30
    stack.wait_until(lambda: stack.redis.llen(queue_key) == 0, timeout=120, what="drained")
    assert "Discarding revoked task" not in worker.log_path.read_text(errors="replace")
