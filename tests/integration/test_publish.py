"""The two ways a sync task reaches the broker (tasks/dispatch.py) against a real Redis: the
batch (one LPUSH of messages rendered by Celery and kombu) writes what kombu's own Redis
producer writes, and a broker that does not answer confirms nothing on either way. That
a real worker runs what each way publishes: tests/e2e/test_publish_paths.py."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis
from celery import Celery
from structlog.testing import capture_logs

from config.settings import Settings, load_settings
from tasks.celery import celery_queue_key, make_app
from tasks.dispatch import Dispatcher
from tasks.ledger.events import QueuedEvent
from tasks.publish.call import SyncCall

CLOSED_PORT_URL = "redis://127.0.0.1:1/0"
#: what differs between any two publishes of one call
_PER_MESSAGE = {"id", "root_id", "correlation_id", "delivery_tag", "origin"}


def without_ids(message: dict[str, object]) -> dict[str, object]:
    def strip(part: object) -> object:
        if isinstance(part, dict):
            return {k: strip(v) for k, v in part.items() if k not in _PER_MESSAGE}
        return part

    return strip(message)  # type: ignore[return-value]


@pytest.fixture
def settings(redis_url: str, key_prefix: str) -> Settings:
    return load_settings(redis_url=redis_url, redis_key_prefix=key_prefix)


@pytest.fixture
def app(settings: Settings) -> Iterator[Celery]:
    celery = make_app(settings)
    yield celery
    celery.close()


def test_the_batch_writes_what_kombus_redis_producer_writes(
    app: Celery, settings: Settings, redis_client: redis.Redis
) -> None:
    # Given one event, published as a batch and through the broker's producer
    event = QueuedEvent("k-1", '{"id": "e-1"}')
    batch = Dispatcher.for_settings(app, settings)
    try:
        assert batch.publish([event]) == [True]
    finally:
        batch.close()
    assert Dispatcher(app, settings.celery_queue).publish([event]) == [True]
    # Then the queue's list holds the same message twice, but for its ids and origin
    key = celery_queue_key(settings)
    assert key is not None
    produced, batched = (json.loads(raw) for raw in redis_client.lrange(key, 0, -1))
    assert without_ids(batched) == without_ids(produced)
    assert batched["headers"]["origin"].startswith("bwp-poller@")


@pytest.mark.parametrize("way", ["batch", "producer"])
def test_a_broker_that_does_not_answer_confirms_nothing(
    redis_url: str, key_prefix: str, way: str
) -> None:
    # Given a broker nobody listens on
    settings = load_settings(
        redis_url=redis_url, redis_key_prefix=key_prefix, celery_broker_url=CLOSED_PORT_URL
    )
    app = make_app(settings)
    dispatcher = (
        Dispatcher.for_settings(app, settings)
        if way == "batch"
        else Dispatcher(app, settings.celery_queue)
    )
    # When two events are published
    try:
        with capture_logs() as logs:
            confirmed = dispatcher.publish([QueuedEvent("k-1", "{}"), QueuedEvent("k-2", "{}")])
    finally:
        dispatcher.close()
        app.close()
    # Then neither is confirmed (the poller leaves their messages in SQS), and it says why
    assert confirmed == [False, False]
    assert dispatcher.published == 0
    events = {entry["event"] for entry in logs}
    assert events == ({"broker_unavailable"} if way == "batch" else {"publish_failed"})


def test_a_broker_other_than_redis_gets_the_message_through_its_producer(key_prefix: str) -> None:
    # Given a broker of another kombu transport (in memory: this process's only)
    settings = load_settings(
        redis_key_prefix=key_prefix,
        celery_broker_url="memory://",
        celery_queue=f"{key_prefix}sync",
    )
    app = make_app(settings)
    dispatcher = Dispatcher.for_settings(app, settings)
    try:
        # When an event is published
        assert dispatcher.publish([QueuedEvent("k-1", '{"id": "e-1"}')]) == [True]
        # Then the queue holds the sync task, as a Celery worker reads it
        with app.connection_for_read() as connection:
            message = connection.SimpleQueue(settings.celery_queue).get(timeout=5)
        assert message.headers["task"] == SyncCall.name
        assert message.headers["argsrepr"] == SyncCall('{"id": "e-1"}', "k-1").argsrepr
        assert message.decode()[0] == ['{"id": "e-1"}', "k-1"]
        assert message.delivery_info["routing_key"] == settings.celery_queue
    finally:
        dispatcher.close()
        app.close()
