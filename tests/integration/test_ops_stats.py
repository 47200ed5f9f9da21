"""``bwp-worker stats`` against moto's SQS server and real Redis: every number moves when
work is added where it counts (queue, in flight, DLQ, Celery queue, ledger)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from config.clients import make_redis, make_sqs
from config.settings import Settings
from tasks.celery import make_app
from tasks.dispatch import Dispatcher
from tasks.keys import DeliveryRef, Keys
from tasks.ledger.deliveries import DeliveryStates
from tasks.ledger.events import ClaimRequest, QueuedEvent
from tasks.model.pushed import Pushed
from tasks.runtime import make_ledger
from tasks.sqs.dlq import DeadLetters, Parcel
from tests.integration.test_ops_support import bwp_worker, closed_port
from worker.ops.stats import StatsSources, collect_stats


@pytest.fixture
def settings(sqs_server: Any, queues: tuple[str, str], redis_url: str, key_prefix: str) -> Settings:
    queue_url, dlq_url = queues
    return Settings(
        sqs_queue_url=queue_url,
        sqs_dlq_url=dlq_url,
        aws_endpoint_url=sqs_server.url,
        redis_url=redis_url,
        redis_key_prefix=key_prefix,
        celery_queue=f"{key_prefix}q",
    )


@pytest.fixture
def sources(settings: Settings) -> Iterator[StatsSources]:
    ledger = make_redis(settings.redis_url, probe_timeout=2.0)
    found = StatsSources(settings, make_sqs(settings, probe_timeout=2.0), ledger, ledger)
    yield found
    found.sqs.close()
    ledger.close()


def numbers(sources: StatsSources) -> dict[str, int | None]:
    readings = collect_stats(sources)
    assert [r.error for r in readings if r.error] == []
    return {r.name: r.value for r in readings}


def env_of(settings: Settings) -> dict[str, str]:
    assert settings.sqs_queue_url and settings.sqs_dlq_url and settings.aws_endpoint_url
    return {
        "SQS_QUEUE_URL": settings.sqs_queue_url,
        "SQS_DLQ_URL": settings.sqs_dlq_url,
        "AWS_ENDPOINT_URL": settings.aws_endpoint_url,
        "REDIS_URL": settings.redis_url,
        "REDIS_KEY_PREFIX": settings.redis_key_prefix,
        "CELERY_QUEUE": settings.celery_queue,
    }


def add_work(settings: Settings, sqs: Any, client: redis.Redis) -> None:
    """3 messages in the queue (1 of them received), 2 parked, 2 tasks, 2 queued, 1 open."""
    assert settings.sqs_queue_url and settings.sqs_dlq_url
    for i in range(3):
        sqs.send_message(QueueUrl=settings.sqs_queue_url, MessageBody=f'{{"n": {i}}}')
    received = sqs.receive_message(
        QueueUrl=settings.sqs_queue_url, MaxNumberOfMessages=1, VisibilityTimeout=60
    )
    assert len(received["Messages"]) == 1
    parked = DeadLetters(sqs, settings.sqs_dlq_url).park(
        [Parcel("x", "malformed", "not JSON"), Parcel("{}", "conflict", "hash differs")]
    )
    assert parked == [True, True]
    events = [QueuedEvent(f"evt-{i}", f'{{"id": "evt-{i}"}}') for i in range(2)]
    assert Dispatcher.for_settings(make_app(settings), settings).publish(events) == [True, True]
    ledger = make_ledger(client, settings)
    ledger.claim([ClaimRequest(e.dedup_key, "h") for e in events])  # as the poller does
    ledger.mark_queued(events)
    states = DeliveryStates(
        client,
        Keys(settings.redis_key_prefix),
        state_ttl=3600,
        done_ttl=3600,
        lock_ttl=5,
        lock_wait=1,
    )
    ref = DeliveryRef("bp-1", "322-STATS-1", "d-1")
    states.record_push(ref, Pushed("fp-1", 1), "IN_TRANSIT", terminal=False)


#: what stats reads after ``add_work``
AFTER_WORK = {
    "queue_visible": 2,
    "queue_in_flight": 1,
    "dlq_depth": 2,
    "celery_queue_depth": 2,
    "ledger_queued": 2,
    "open_deliveries": 1,
}


def test_every_number_starts_at_zero(sources: StatsSources) -> None:
    assert numbers(sources) == {
        "queue_visible": 0,
        "queue_in_flight": 0,
        "dlq_depth": 0,
        "celery_queue_depth": 0,
        "ledger_queued": 0,
        "open_deliveries": 0,
    }


def test_numbers_move_when_work_is_added(
    sources: StatsSources, settings: Settings, sqs: Any, redis_client: redis.Redis
) -> None:
    # Given work in every place stats looks
    add_work(settings, sqs, redis_client)
    # Then each number counts it
    assert numbers(sources) == AFTER_WORK


def test_cli_prints_a_table_and_json(
    settings: Settings, sqs: Any, redis_client: redis.Redis
) -> None:
    add_work(settings, sqs, redis_client)
    done = bwp_worker("stats", "--json", env=env_of(settings))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {**AFTER_WORK, "errors": {}}
    table = bwp_worker("stats", env=env_of(settings))
    assert table.returncode == 0
    rows = {line[:24].strip(): line[24:].split()[0] for line in table.stdout.splitlines()}
    assert rows == {
        "queue: visible": "2",
        "queue: in flight": "1",
        "dlq: depth": "2",
        "celery queue depth": "2",
        "ledger: queued events": "2",
        "ledger: open deliveries": "1",
    }


def test_an_unreachable_redis_is_reported_and_exits_1(settings: Settings) -> None:
    env = {**env_of(settings), "REDIS_URL": f"redis://127.0.0.1:{closed_port()}/0"}
    done = bwp_worker("stats", "--json", env=env)
    document = json.loads(done.stdout)
    assert done.returncode == 1
    assert document["queue_visible"] == 0
    assert sorted(document["errors"]) == ["celery_queue_depth", "ledger_queued", "open_deliveries"]
    assert document["ledger_queued"] is None


def test_what_does_not_apply_is_shown_as_such(settings: Settings) -> None:
    # Given no DLQ and a broker that is not Redis
    other = settings.model_copy(update={"sqs_dlq_url": None, "celery_broker_url": "memory://"})
    ledger = make_redis(other.redis_url, probe_timeout=2.0)
    sqs = make_sqs(other, probe_timeout=2.0)
    try:
        readings = {r.name: r for r in collect_stats(StatsSources(other, sqs, ledger, None))}
    finally:
        sqs.close()
        ledger.close()
    # Then those numbers are absent, with the reason, and not errors
    assert (readings["dlq_depth"].value, readings["dlq_depth"].note) == (
        None,
        "SQS_DLQ_URL not set",
    )
    assert readings["celery_queue_depth"].value is None
    assert readings["celery_queue_depth"].note == "broker is not Redis"
    assert all(r.error is None for r in readings.values())
