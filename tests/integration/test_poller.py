"""The poller against real Redis, moto's SQS server and a real Celery broker (Redis).

Each test drives single polls (``max_polls``) and checks where every message ended:
dispatched (broker list + `queued` record), deleted as a duplicate, parked with its
reason, or still in SQS.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis

from config.clients import make_redis
from config.settings import Settings
from tasks.celery import broker_prefix, celery_queue_key, make_app
from tasks.dispatch import Dispatcher
from tasks.events.samples import build_event, to_body
from tasks.keys import DeliveryRef, Keys
from tasks.ledger.runs import JobRuns
from tasks.runtime import make_ledger
from tasks.sqs.dlq import DeadLetters
from tests.integration.workers import finish_queued
from worker.poller.config import PollerConfig
from worker.poller.loop import Poller
from worker.poller.runner import dependency_probe, queue_depth_probe

CLOSED_PORT_URL = "redis://127.0.0.1:1/0"


@dataclass
class Rig:
    poller: Poller
    settings: Settings
    queue_url: str
    dlq_url: str
    sqs: object
    redis: redis.Redis

    def send(self, body: str) -> None:
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=body)  # type: ignore[attr-defined]

    def poll(self, times: int = 1) -> None:
        self.poller.run(threading.Event(), max_polls=self.poller.totals.polls + times)

    def work(self) -> int:
        """Stand in for the Celery workers: every `queued` event is done now."""
        return finish_queued(self.redis, self.settings)

    def broker_depth(self) -> int:
        key = broker_prefix(self.settings) + self.settings.celery_queue
        return int(self.redis.llen(key))

    def broker_messages(self) -> list[dict[str, object]]:
        key = broker_prefix(self.settings) + self.settings.celery_queue
        return [json.loads(raw) for raw in self.redis.lrange(key, 0, -1)]

    def counts(self, url: str) -> tuple[int, int]:
        attrs = self.sqs.get_queue_attributes(  # type: ignore[attr-defined]
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]), int(
            attrs["ApproximateNumberOfMessagesNotVisible"]
        )

    def dlq_messages(self) -> list[dict[str, object]]:
        reply = self.sqs.receive_message(  # type: ignore[attr-defined]
            QueueUrl=self.dlq_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        )
        return list(reply.get("Messages", []))


def make_rig(
    sqs,
    queues,
    redis_url,
    key_prefix,
    *,
    broker_url=None,
    ledger_url=None,
    probes=False,
    job_runs=False,
    **cfg,
) -> Rig:  # type: ignore[no-untyped-def]
    queue_url, dlq_url = queues
    settings = Settings(
        redis_url=ledger_url or redis_url,
        celery_broker_url=broker_url or redis_url,
        redis_key_prefix=key_prefix,
        celery_queue=f"{key_prefix}q",
        sqs_queue_url=queue_url,
        sqs_dlq_url=dlq_url,
    )
    ledger_client = redis.Redis.from_url(
        settings.redis_url, socket_timeout=1, socket_connect_timeout=1
    )
    # the production probes (runner.py): Redis PING and the Celery queue's LLEN
    broker = make_redis(settings.broker_url) if probes else None
    other_broker = broker if settings.broker_url != settings.redis_url else None
    queue_key = celery_queue_key(settings)
    poller = Poller(
        sqs,
        make_ledger(ledger_client, settings),
        Dispatcher.for_settings(make_app(settings), settings),
        DeadLetters(sqs, dlq_url),
        PollerConfig(
            **{
                "queue_url": queue_url,
                "wait_seconds": 0,
                "visibility_timeout": 30,
                "error_backoff": 0,
                **cfg,
            }
        ),
        queue_depth=queue_depth_probe(broker, queue_key) if broker and queue_key else None,
        probe=dependency_probe(ledger_client, other_broker) if probes else None,
        job_runs=JobRuns(ledger_client, Keys(key_prefix)) if job_runs else None,
    )
    return Rig(poller, settings, queue_url, dlq_url, sqs, redis.Redis.from_url(redis_url))


@pytest.fixture
def rig(sqs, queues, redis_url, key_prefix) -> Iterator[Rig]:  # type: ignore[no-untyped-def]
    r = make_rig(sqs, queues, redis_url, key_prefix)
    yield r
    r.redis.close()


def delivered(order: str = "322-AAA-1", delivery: str = "d-1", **kw: object) -> dict[str, object]:
    return build_event(
        "PACKAGE_DELIVERED", business_product_id="bp-1", order_id=order, delivery_id=delivery, **kw
    )  # type: ignore[arg-type]


def test_new_event_is_published_recorded_queued_and_held_until_done(rig: Rig) -> None:
    # Given one delivery event in the queue
    event = delivered()
    rig.send(to_body(event))
    # When the poller polls once
    rig.poll()
    # Then one task carries the body and the dedup key, the ledger says queued, and the
    # message stays in SQS (held, then handed back as the poll ended: its task runs)
    messages = rig.broker_messages()
    assert len(messages) == 1
    assert messages[0]["headers"]["task"] == "bwp.sync_delivery"  # type: ignore[index]
    key = Keys(rig.settings.redis_key_prefix).event(event["detail"]["idempotencyKey"])  # type: ignore[index]
    assert rig.redis.hget(key, "state") == b"queued"
    assert json.loads(rig.redis.hget(key, "body")) == event  # type: ignore[arg-type]
    assert rig.counts(rig.queue_url) == (1, 0)
    assert rig.poller.totals.dispatched == 1
    # When its task is done and the message comes back
    assert rig.work() == 1
    rig.poll()
    # Then it is deleted, and no second task was published
    assert rig.counts(rig.queue_url) == (0, 0)
    assert rig.broker_depth() == 1


def test_redelivered_message_is_dispatched_once(rig: Rig) -> None:
    body = to_body(delivered())
    rig.send(body)
    rig.send(body)
    rig.poll(2)
    assert rig.broker_depth() == 1
    # a copy is deleted only while another copy is held: one message is left
    assert rig.counts(rig.queue_url) == (1, 0)
    rig.work()
    rig.poll()
    assert rig.broker_depth() == 1
    assert rig.poller.totals.duplicates == 2
    assert rig.counts(rig.queue_url) == (0, 0)


def test_a_batch_costs_one_receive_and_one_delete(rig: Rig) -> None:
    for i in range(10):
        rig.send(to_body(delivered(order=f"322-BATCH-{i}")))
    rig.poll()
    total = rig.poller.totals.received
    # moto may hand back fewer than 10 per receive; every receive costs one delete at most
    assert rig.poller.sqs_requests <= 2
    assert rig.broker_depth() == total > 0


def test_delivered_event_for_a_delivery_already_delivered_costs_no_task(rig: Rig) -> None:
    # Given the ledger shows DELIVERED already pushed for the delivery
    ref = DeliveryRef("bp-1", "322-AAA-1", "d-1")
    rig.redis.hset(
        Keys(rig.settings.redis_key_prefix).delivery(ref),
        mapping={"fp": "x", "rank": 2, "state": "DELIVERED"},
    )
    # When a twin DELIVERY_COMPLETED arrives
    twin = build_event(
        "DELIVERY_COMPLETED", business_product_id="bp-1", order_id="322-AAA-1", delivery_id="d-1"
    )
    rig.send(to_body(twin))
    rig.poll()
    # Then it is acknowledged without any task
    assert rig.broker_depth() == 0
    assert rig.poller.totals.no_news == 1
    assert rig.counts(rig.queue_url) == (0, 0)


@pytest.mark.parametrize("key", ["ab/cd+ef==", "MGQ1/Yj+E4ZGE=", "A" * 300 + "/+=="])
def test_a_base64_idempotency_key_with_slash_plus_and_padding_is_dispatched(
    rig: Rig, key: str
) -> None:
    # Given an event whose dedup key holds "/", "+" and "=" (the documented base64 form)
    rig.send(to_body(delivered(idempotency_key=key)))
    # When it arrives twice
    rig.send(to_body(delivered(idempotency_key=key)))
    rig.poll(2)
    # Then one task and one `queued` record under exactly that key
    assert rig.broker_depth() == 1
    assert rig.redis.hget(Keys(rig.settings.redis_key_prefix).event(key), "state") == b"queued"
    # And once its task is done, the held copy is settled and deleted: no second task
    assert rig.work() == 1
    rig.poll()
    assert rig.counts(rig.queue_url) == (0, 0)
    assert rig.broker_depth() == 1


def test_a_milestone_event_is_dispatched_even_when_its_delivery_shows_a_state(rig: Rig) -> None:
    # Given a delivery already DELIVERED in the ledger (a milestone names no delivery anyway)
    ref = DeliveryRef("bp-1", "322-AAA-1", "d-1")
    rig.redis.hset(
        Keys(rig.settings.redis_key_prefix).delivery(ref), mapping={"fp": "x", "rank": 2}
    )
    milestone = build_event(
        "PACKAGE_TRACKER_MILESTONE_CHANGED", business_product_id="bp-1", tracker=("UPS", "1Z9")
    )
    # When a milestone event arrives
    rig.send(to_body(milestone))
    rig.poll()
    # Then it becomes a task (no "no news" shortcut: the task finds the delivery)
    assert rig.broker_depth() == 1
    assert rig.poller.totals.no_news == 0
    assert rig.poller.totals.unsupported == 0


def test_an_event_naming_two_deliveries_skips_no_news(rig: Rig) -> None:
    # Given d-1 already DELIVERED, and an event naming d-1 and d-2
    ref = DeliveryRef("bp-1", "322-AAA-1", "d-1")
    rig.redis.hset(
        Keys(rig.settings.redis_key_prefix).delivery(ref), mapping={"fp": "x", "rank": 2}
    )
    event = delivered()
    event["resources"] = [  # type: ignore[index]
        "businessProduct/bp-1/order/322-AAA-1/delivery/d-1",
        "businessProduct/bp-1/order/322-AAA-1/delivery/d-2",
    ]
    rig.send(to_body(event))
    rig.poll()
    # Then the task runs, since d-2 may have news
    assert rig.broker_depth() == 1


@pytest.mark.parametrize(
    ("body", "reason_part"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "JSON list"),
        (
            json.dumps(
                {"id": "x", "detail-type": "PACKAGE_DELIVERED", "time": "2026-01-01T00:00:00Z"}
            ),
            "resources",
        ),
        (
            to_body(
                build_event(
                    "PACKAGE_DELIVERED", business_product_id="bp", order_id="o", delivery_id="d"
                )
            ).replace("businessProduct/bp/", "merchant/bp/"),
            "lack order/<id> and delivery/<id>",
        ),
    ],
)
def test_malformed_message_is_parked_with_its_reason_at_once(
    rig: Rig, body: str, reason_part: str
) -> None:
    rig.send(body)
    rig.poll()
    parked = rig.dlq_messages()
    assert len(parked) == 1
    attrs = parked[0]["MessageAttributes"]
    assert attrs["bwp-error-kind"]["StringValue"] == "malformed"  # type: ignore[index]
    assert reason_part in attrs["bwp-error"]["StringValue"]  # type: ignore[index]
    assert parked[0]["Body"] == body
    assert rig.counts(rig.queue_url) == (0, 0)
    assert rig.broker_depth() == 0


def test_unsupported_event_is_acknowledged_and_counted(rig: Rig) -> None:
    rig.send(to_body(build_event("ORDER_CONFIRMED", business_product_id="bp-1", order_id="322-X")))
    rig.poll()
    assert rig.poller.totals.unsupported == 1
    assert rig.counts(rig.queue_url) == (0, 0)
    assert rig.dlq_messages() == []


def test_unsupported_event_is_parked_when_configured(sqs, queues, redis_url, key_prefix) -> None:  # type: ignore[no-untyped-def]
    rig = make_rig(sqs, queues, redis_url, key_prefix, park_unsupported=True)
    rig.send(to_body(build_event("REFUND_REQUESTED", business_product_id="bp-1", order_id="322-X")))
    rig.poll()
    [parked] = rig.dlq_messages()
    assert parked["MessageAttributes"]["bwp-error-kind"]["StringValue"] == "unsupported"  # type: ignore[index]


def test_same_id_with_other_payload_is_parked_as_conflict(rig: Rig) -> None:
    first = delivered(event_id="evt-1", idempotency_key="key-1")
    second = delivered(delivery="d-2", event_id="evt-1", idempotency_key="key-1")
    rig.send(to_body(first))
    rig.poll()
    rig.send(to_body(second))
    rig.poll()
    [parked] = rig.dlq_messages()
    assert parked["MessageAttributes"]["bwp-error-kind"]["StringValue"] == "conflict"  # type: ignore[index]
    assert parked["MessageAttributes"]["bwp-event-id"]["StringValue"] == "key-1"  # type: ignore[index]
    assert rig.broker_depth() == 1


@pytest.mark.parametrize("in_one_batch", [False, True])
def test_a_copy_whose_event_time_and_data_changed_is_a_counted_duplicate(
    rig: Rig, in_one_batch: bool
) -> None:
    # Given a 2024-11-01 event (the whole webhook body in its detail) and a copy
    # re-published under its idempotencyKey with another envelope id, time, eventTime, data
    first = delivered(idempotency_key="key-7")
    first["detail"] = {**first["detail"], "eventTime": first["time"], "data": {"v": 1}}  # type: ignore[dict-item]
    again = {
        **first,
        "id": "evt-republished",
        "time": "2030-01-01T00:00:00Z",
        "detail": {**first["detail"], "eventTime": "2030-01-01T00:00:00Z", "data": {"v": 2}},  # type: ignore[dict-item]
    }
    rig.send(to_body(first))
    if not in_one_batch:
        rig.poll()
    rig.send(to_body(again))
    rig.poll()
    # Then the copy is a duplicate, counted as one; nothing is parked, one task
    assert rig.dlq_messages() == []
    assert rig.broker_depth() == 1
    assert rig.poller.totals.duplicates == 1
    assert rig.poller.metrics.registry.get_sample_value("bwp_duplicates_total") == 1


def test_the_poller_parks_an_event_naming_more_deliveries_than_allowed(
    sqs, queues, redis_url, key_prefix
) -> None:  # type: ignore[no-untyped-def]
    # Given a poller allowing two deliveries per event (MAX_DELIVERIES_PER_EVENT)
    rig = make_rig(sqs, queues, redis_url, key_prefix, max_deliveries=2)
    try:
        event = delivered()
        event["resources"] = [f"businessProduct/bp-1/order/o-1/delivery/d-{i}" for i in range(3)]
        rig.send(to_body(event))
        rig.poll()
        # Then the event is parked as malformed with the count, and no task is published
        [parked] = rig.dlq_messages()
        attributes = parked["MessageAttributes"]
        assert attributes["bwp-error-kind"]["StringValue"] == "malformed"  # type: ignore[index]
        assert (
            "names 3 order/delivery pairs, over the cap of 2"
            in (
                attributes["bwp-error"]["StringValue"]  # type: ignore[index]
            )
        )
        assert rig.broker_depth() == 0
    finally:
        rig.redis.close()


def test_broker_down_leaves_the_message_in_sqs_and_releases_the_claim(
    sqs, queues, redis_url, key_prefix
) -> None:  # type: ignore[no-untyped-def]
    rig = make_rig(sqs, queues, redis_url, key_prefix, broker_url=CLOSED_PORT_URL)
    event = delivered()
    rig.send(to_body(event))
    rig.poll()
    assert rig.poller.totals.dispatched == 0
    assert rig.counts(rig.queue_url) == (1, 0)  # handed back at once, for the next poll
    key = Keys(key_prefix).event(event["detail"]["idempotencyKey"])  # type: ignore[index]
    assert rig.redis.exists(key) == 0  # the claim was released: a redelivery is new again


def test_redis_down_leaves_messages_in_sqs_and_the_loop_alive(
    sqs, queues, redis_url, key_prefix
) -> None:  # type: ignore[no-untyped-def]
    rig = make_rig(sqs, queues, redis_url, key_prefix, ledger_url=CLOSED_PORT_URL)
    rig.send(to_body(delivered()))
    rig.send("garbage")
    rig.poll(2)
    assert rig.poller.totals.polls == 2
    assert rig.poller.totals.dispatched == 0
    # the delivery event stays in SQS (handed back); bad input is still parked without Redis
    assert rig.counts(rig.queue_url) == (1, 0)
    assert len(rig.dlq_messages()) == 1


def test_a_batch_is_published_in_one_redis_round_trip_as_celery_messages(rig: Rig) -> None:
    # Given ten new events received in one batch
    for i in range(10):
        rig.send(to_body(delivered(order=f"322-PUB-{i}")))
    calls_before = int(rig.redis.info("commandstats").get("cmdstat_lpush", {}).get("calls", 0))
    rig.poll()
    received = rig.poller.totals.received
    # Then one LPUSH carried them all, each a Celery protocol 2 message Celery can read
    calls = int(rig.redis.info("commandstats")["cmdstat_lpush"]["calls"]) - calls_before
    assert calls == 1
    messages = rig.broker_messages()
    assert len(messages) == received
    from kombu.utils.json import loads

    for message in messages:
        headers, properties = message["headers"], message["properties"]  # type: ignore[index]
        assert headers["task"] == "bwp.sync_delivery" and headers["id"]  # type: ignore[index]
        assert properties["body_encoding"] == "base64"  # type: ignore[index]
        args, kwargs, embed = loads(base64.b64decode(message["body"]))  # type: ignore[arg-type]
        assert kwargs == {} and embed["callbacks"] is None
        assert json.loads(args[0])["detail"]["idempotencyKey"] == args[1]
