"""Recovery from what SQS holds (design.md section 3.6), against real Redis, moto's SQS
server and a real Redis broker, with a running poller (its loop in a thread):

- a held message received again (same MessageId, new receipt) is the same message: its
  new receipt is kept, never deleted as a copy;
- an event whose task a worker took and lost (its lease died) is dispatched again;
- an event nobody took while the Celery queue is empty is dispatched again after a grace;
- an event waiting its turn in the broker is never dispatched twice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from tasks.events.samples import build_event, to_body
from tasks.keys import Keys
from tasks.ledger.keeper import Keeper
from tasks.ledger.runs import JobRuns
from tests.integration.test_poller import Rig, make_rig


@contextmanager
def running(rig: Rig) -> Iterator[threading.Event]:
    """The poller's loop, running in a thread until the block ends."""
    stop = threading.Event()
    thread = threading.Thread(target=rig.poller.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(30)


def eventually(predicate: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def event_body(order: str) -> tuple[str, str]:
    event = build_event(
        "PACKAGE_DELIVERED", business_product_id="bp-1", order_id=order, delivery_id="d-1"
    )
    return to_body(event), str(event["detail"]["idempotencyKey"])  # type: ignore[index]


@pytest.fixture
def rig(sqs, queues, redis_url, key_prefix) -> Iterator[Rig]:  # type: ignore[no-untyped-def]
    r = make_rig(
        sqs,
        queues,
        redis_url,
        key_prefix,
        probes=True,
        wait_seconds=1,
        visibility_timeout=30,
        orphan_grace=0.5,
        max_queue_depth=0,
    )
    yield r
    r.redis.close()


def parked(rig: Rig) -> list[dict[str, str]]:
    """The DLQ's messages, as attributes plus body, left visible for the next look."""
    reply = rig.sqs.receive_message(  # type: ignore[attr-defined]
        QueueUrl=rig.dlq_url,
        MaxNumberOfMessages=10,
        MessageAttributeNames=["All"],
        VisibilityTimeout=0,
    )
    return [
        {**{k: v["StringValue"] for k, v in m["MessageAttributes"].items()}, "body": m["Body"]}
        for m in reply.get("Messages", [])
    ]


def published(rig: Rig) -> int:
    return rig.poller._intake._dispatcher.published  # type: ignore[attr-defined]


def test_a_held_message_received_again_keeps_its_new_receipt_and_is_not_deleted(
    rig: Rig,
) -> None:
    # Given a poller holding one message whose task has not finished
    body, _ = event_body("322-AGAIN-1")
    rig.send(body)
    with running(rig):
        eventually(lambda: len(rig.poller.held) == 1, what="the message held")
        [held] = rig.poller.held.all()
        first_receipt = held.receipt
        # When SQS hands the same message out again (its visibility lapsed, or a
        # duplicate delivery): here by making it visible at once
        rig.sqs.change_message_visibility(  # type: ignore[attr-defined]
            QueueUrl=rig.queue_url, ReceiptHandle=first_receipt, VisibilityTimeout=0
        )
        eventually(
            lambda: rig.poller.metrics.value("bwp_held_received_again_total") == 1,
            what="the message received again",
        )
        # Then it is still held, under its new receipt, and still in SQS: its only copy
        [again] = rig.poller.held.all()
        assert again.message_id == held.message_id
        assert again.receipt != first_receipt
        assert rig.counts(rig.queue_url) == (0, 1)
        assert rig.poller.totals.duplicates == 0
        assert published(rig) == 1
        # When its task finishes, the new receipt deletes it
        rig.work()
        eventually(lambda: rig.counts(rig.queue_url) == (0, 0), what="the message deleted")


def test_an_event_whose_worker_died_is_dispatched_again(rig: Rig) -> None:
    # Given a held event whose task a worker process took (a lease), then died: its keeper
    # stops renewing
    body, key = event_body("322-LOST-1")
    rig.send(body)
    event_key = Keys(rig.settings.redis_key_prefix).event(key)
    keeper = Keeper(rig.redis, 5.0, lease_ttl=1.0)
    with running(rig):
        eventually(lambda: published(rig) == 1, what="first dispatch")
        tenancy = keeper.take(event_key)
        eventually(lambda: rig.redis.hget(event_key, "lease") is not None, what="lease taken")
        keeper.drop(tenancy, release=False)  # SIGKILL: nobody renews it any more
        # When its lease dies (1 s), the poller dispatches it again, once
        eventually(lambda: published(rig) == 2, what="re-dispatch after the lease died")
        assert rig.poller.metrics.value("bwp_events_redispatched_total", why="task_lost") == 1
        assert rig.redis.hget(event_key, "state") == b"queued"
        assert rig.redis.hget(event_key, "lease") is None
        # And when the new task finishes, the message leaves SQS
        rig.work()
        eventually(lambda: rig.counts(rig.queue_url) == (0, 0), what="the message deleted")
    assert published(rig) == 2


def test_an_event_live_workers_hold_is_left_alone(rig: Rig) -> None:
    # Given a held event whose task a live worker holds (its keeper renews the lease)
    body, key = event_body("322-LIVE-1")
    rig.send(body)
    event_key = Keys(rig.settings.redis_key_prefix).event(key)
    keeper = Keeper(rig.redis, 5.0, lease_ttl=1.0)
    with running(rig):
        eventually(lambda: published(rig) == 1, what="first dispatch")
        rig.redis.delete(rig.settings.redis_key_prefix + "celery:" + rig.settings.celery_queue)
        tenancy = keeper.take(event_key)
        # When many lease lifetimes and grace periods pass, with the Celery queue empty
        time.sleep(3.0)
        # Then it was never dispatched again
        assert published(rig) == 1
        keeper.drop(tenancy, release=True)
        rig.work()
        eventually(lambda: rig.counts(rig.queue_url) == (0, 0), what="the message deleted")


def test_a_task_waiting_its_turn_in_the_broker_is_not_dispatched_twice(rig: Rig) -> None:
    # Given ten events dispatched while no worker consumes the Celery queue
    keys = []
    for i in range(10):
        body, key = event_body(f"322-WAIT-{i}")
        rig.send(body)
        keys.append(key)
    with running(rig):
        eventually(lambda: published(rig) == 10, what="ten dispatches")
        depth = rig.broker_depth()
        # When far more than the grace passes with no worker taking them
        time.sleep(3.0)
        # Then nothing was dispatched a second time: they wait in the broker
        assert published(rig) == 10
        assert rig.broker_depth() == depth == 10
        assert rig.poller.totals.redispatched == 0


def test_a_task_lost_on_its_way_to_a_worker_is_dispatched_again(rig: Rig) -> None:
    # Given a dispatched event whose broker message vanished before any worker leased it
    # (popped by a worker killed at once, or a broker that lost its list)
    body, _ = event_body("322-VANISHED-1")
    rig.send(body)
    with running(rig):
        eventually(lambda: published(rig) == 1, what="first dispatch")
        broker_key = rig.settings.redis_key_prefix + "celery:" + rig.settings.celery_queue
        rig.redis.delete(broker_key)
        # When the Celery queue stays empty and nobody takes it for the grace (0.5 s)
        eventually(lambda: published(rig) == 2, what="re-dispatch of a task never taken")
        assert rig.poller.metrics.value("bwp_events_redispatched_total", why="never_taken") == 1
        assert rig.broker_depth() == 1
        rig.work()
        eventually(lambda: rig.counts(rig.queue_url) == (0, 0), what="the message deleted")


def test_a_task_lost_again_and_again_is_parked_not_re_run_forever(  # type: ignore[no-untyped-def]
    sqs, queues, redis_url, key_prefix
) -> None:
    # Given a poller that re-dispatches a lost task at most twice
    rig = make_rig(
        sqs,
        queues,
        redis_url,
        key_prefix,
        probes=True,
        wait_seconds=1,
        orphan_grace=0.3,
        max_queue_depth=0,
        max_redispatches=2,
    )
    body, key = event_body("322-POISON-1")
    rig.send(body)
    broker_key = rig.settings.redis_key_prefix + "celery:" + rig.settings.celery_queue
    with running(rig):
        # When every dispatch of it is lost (a task that kills its worker each time)
        for dispatches in (1, 2, 3):
            eventually(lambda n=dispatches: published(rig) == n, what=f"dispatch {dispatches}")  # type: ignore[misc]
            rig.redis.delete(broker_key)
        # Then it is parked as retries-exhausted with its reason, and leaves the queue
        eventually(lambda: len(parked(rig)) == 1, what="parked", timeout=20)
        eventually(lambda: rig.counts(rig.queue_url) == (0, 0), what="the message deleted")
    [found] = parked(rig)
    assert found["bwp-error-kind"] == "retries-exhausted"
    assert "lost more than 2 times" in found["bwp-error"]
    assert found["bwp-event-id"] == key and found["body"] == body
    assert published(rig) == 3
    assert rig.redis.hget(Keys(key_prefix).event(key), "state") == b"parked"
    rig.redis.close()


def test_the_poller_exports_when_each_scheduled_job_last_ran(  # type: ignore[no-untyped-def]
    sqs, queues, redis_url, key_prefix
) -> None:
    rig = make_rig(sqs, queues, redis_url, key_prefix, job_runs=True)
    JobRuns(rig.redis, Keys(key_prefix), clock=lambda: 1_800_000_000.0).record("sweep")
    rig.poll()
    gauge = "bwp_scheduled_job_last_run_timestamp_seconds"
    assert rig.poller.metrics.value(gauge, job="sweep") == 1_800_000_000.0
    assert rig.poller.metrics.value(gauge, job="reconcile") == 0.0  # never ran: no series
    rig.redis.close()
