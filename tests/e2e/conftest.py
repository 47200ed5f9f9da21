"""End-to-end fixtures: one local stack per API generation, with the Procfile's poller and
a Celery worker running as real processes. Scenarios use their own order ids, so they
share the stack and still count API calls and pushes per order."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import pytest

from config.settings import Settings, load_settings
from sandbox.publisher import DEFAULT_SUBSCRIPTIONS
from sandbox.stack import LocalStack, StackOptions
from tasks.celery import make_app
from tasks.events.samples import build_event, to_body
from tasks.keys import Keys
from tasks.ledger.events import ClaimRequest, Ledger, QueuedEvent
from tasks.runtime import make_ledger
from tasks.sweep import sweep_stale

_ids = itertools.count(1)


@pytest.fixture(scope="module", params=["2024-01-01", "2024-11-01"])
def stack(request: pytest.FixtureRequest, redis_url: str) -> Iterator[LocalStack]:
    options = StackOptions(
        redis_url=redis_url, api_version=request.param, subscriptions=DEFAULT_SUBSCRIPTIONS
    )
    with LocalStack(options) as running:
        running.start_poller()
        running.start_worker()
        yield running


def new_order_id(prefix: str = "322-E2E") -> str:
    return f"{prefix}-{next(_ids):06d}"


def stack_settings(stack: LocalStack) -> Settings:
    """The settings the stack's processes run with, for what a test runs itself."""
    env = stack.env()
    return load_settings(
        redis_url=stack.redis_url,
        redis_key_prefix=env["REDIS_KEY_PREFIX"],
        celery_queue=env["CELERY_QUEUE"],
    )


def in_transit_event(stack: LocalStack, order_id: str, *, in_the_api: bool = True) -> QueuedEvent:
    """An IN_TRANSIT event for a new order (that the API shows, unless not ``in_the_api``)."""
    if in_the_api:
        stack.api.store.add_order(order_id, "bp-e2e", [("li", 1, "d-1")])
        stack.api.store.update_delivery(order_id, "d-1", state="IN_TRANSIT")
    event = build_event(
        "PACKAGE_DELIVERY_IN_TRANSIT",
        business_product_id="bp-e2e",
        order_id=order_id,
        delivery_id="d-1",
    )
    return QueuedEvent(str(event["detail"]["idempotencyKey"]), to_body(event))


def lost_task(stack: LocalStack, order_id: str) -> tuple[str, str]:
    """An event `queued` an hour ago whose task never reached a worker; sweep it now."""
    event = in_transit_event(stack, order_id)
    settings = stack_settings(stack)
    an_hour_ago = Ledger(
        stack.redis,
        Keys(settings.redis_key_prefix),
        claim_ttl=30,
        queued_ttl=3600,
        done_ttl=3600,
        clock=lambda: time.time() - 3600,
    )
    an_hour_ago.claim([ClaimRequest(event.dedup_key, "lost")])
    an_hour_ago.mark_queued([event])
    app = make_app(settings)
    try:
        assert sweep_stale(make_ledger(stack.redis, settings), app, settings) == 1
    finally:
        app.close()
    return event.dedup_key, event.body
