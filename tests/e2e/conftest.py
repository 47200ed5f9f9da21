"""End-to-end fixtures: one local stack per API generation, with the Procfile's poller and
a Celery worker running as real processes. Scenarios use their own order ids, so they
share the stack and still count API calls and pushes per order."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from sandbox.publisher import DEFAULT_SUBSCRIPTIONS
from sandbox.stack import LocalStack, StackOptions

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
