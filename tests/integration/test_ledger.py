"""The dedup ledger's transitions against real Redis: claimed → queued → done, each one
atomic, none able to undo a later one."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from tasks.keys import DeliveryRef, Keys
from tasks.ledger.events import (
    Claim,
    ClaimRequest,
    EventState,
    EventView,
    Lease,
    Ledger,
    Orphan,
    QueuedEvent,
    Reclaim,
)
from tasks.ledger.keeper import Keeper
from tasks.ledger.runs import JobRuns


@pytest.fixture
def ledger(redis_client: redis.Redis, key_prefix: str) -> Iterator[Ledger]:
    yield Ledger(redis_client, Keys(key_prefix), claim_ttl=30, queued_ttl=600, done_ttl=3600)


def test_a_batch_is_claimed_in_one_call_with_one_answer_per_event(
    ledger: Ledger, redis_client: redis.Redis, key_prefix: str
) -> None:
    ref = DeliveryRef("bp", "322-L-1", "d-1")
    redis_client.hset(
        Keys(key_prefix).delivery(ref), mapping={"fp": "x", "rank": 1, "state": "IN_TRANSIT"}
    )
    ledger.claim([ClaimRequest("queued-1", "h")])
    ledger.mark_queued([QueuedEvent("queued-1", "{}")])
    ledger.claim([ClaimRequest("claimed-1", "h")])
    ledger.claim([ClaimRequest("done-1", "h")])
    ledger.complete("done-1", how="pushed")
    answers = ledger.claim(
        [
            ClaimRequest("fresh", "h"),
            ClaimRequest("queued-1", "h"),
            ClaimRequest("queued-1", "other-hash"),
            ClaimRequest("claimed-1", "h"),
            ClaimRequest("done-1", "h"),
            ClaimRequest("twin", "h", ref, implied_rank=1, implied_state="IN_TRANSIT"),
            ClaimRequest("news", "h", ref, implied_rank=2, implied_state="DELIVERED"),
        ]
    )
    assert answers == [
        Claim.NEW,
        Claim.QUEUED,
        Claim.CONFLICT,
        Claim.INFLIGHT,
        Claim.DONE,
        Claim.NO_NEWS,
        Claim.NEW,
    ]
    assert ledger.state("twin") == "done"


def test_marking_queued_never_undoes_a_finished_event(
    ledger: Ledger, redis_client: redis.Redis, key_prefix: str
) -> None:
    # Given an event a fast worker finished before the poller marked it queued
    ledger.claim([ClaimRequest("fast", "h"), ClaimRequest("slow", "h")])
    ledger.complete("fast", how="pushed")
    # When the poller marks the batch queued
    moved = ledger.mark_queued([QueuedEvent("fast", "{}"), QueuedEvent("slow", "{}")])
    # Then only the unfinished one moves, and only it waits for the sweep
    assert moved == 1
    assert ledger.state("fast") == "done"
    assert ledger.state("slow") == "queued"
    assert redis_client.zrange(Keys(key_prefix).queued_index, 0, -1) == [b"slow"]


def test_a_failed_publish_releases_only_claims(ledger: Ledger) -> None:
    ledger.claim([ClaimRequest("a", "h"), ClaimRequest("b", "h")])
    ledger.mark_queued([QueuedEvent("b", "{}")])
    assert ledger.release_claims(["a", "b"]) == 1
    assert ledger.state("a") is None
    assert ledger.state("b") == "queued"


def test_the_sweep_finds_events_queued_too_long_and_forgets_finished_ones(ledger: Ledger) -> None:
    ledger.claim([ClaimRequest("lost", "h"), ClaimRequest("finished", "h")])
    ledger.mark_queued([QueuedEvent("lost", '{"id": "lost"}'), QueuedEvent("finished", "{}")])
    ledger.complete("finished", how="pushed")
    stale = ledger.stale_queued(older_than=-1, limit=10)
    assert stale == [QueuedEvent("lost", '{"id": "lost"}')]
    # a retry pushed back the sweep: not stale any more
    ledger.postpone_sweep("lost", 300)
    assert ledger.stale_queued(older_than=-1, limit=10) == []


def test_the_sweep_re_dispatches_a_lost_task_through_the_broker(
    redis_client: redis.Redis, redis_url: str, key_prefix: str
) -> None:
    from config.settings import Settings
    from tasks.celery import celery_queue_key, make_app
    from tasks.runtime import make_ledger
    from tasks.sweep import sweep_stale

    # Given an event queued long ago whose task never ran (a SIGKILLed worker lost it)
    settings = Settings(
        redis_url=redis_url,
        redis_key_prefix=key_prefix,
        celery_queue=f"{key_prefix}q",
        sweep_after_seconds=5,
    )
    ledger = make_ledger(redis_client, settings)
    ledger.claim([ClaimRequest("lost", "h")])
    ledger.mark_queued([QueuedEvent("lost", '{"id": "lost"}')])
    redis_client.zadd(Keys(key_prefix).queued_index, {"lost": 0})  # queued at the epoch
    # When the sweep runs
    assert sweep_stale(ledger, make_app(settings), settings) == 1
    # Then one task carries the event again, and the event is not stale any more
    key = celery_queue_key(settings)
    assert key is not None and redis_client.llen(key) == 1
    assert ledger.stale_queued(older_than=5, limit=10) == []


def test_cancelled_after_delivered_is_news_though_both_are_terminal(
    ledger: Ledger, redis_client: redis.Redis, key_prefix: str
) -> None:
    # Given DELIVERED was pushed for a delivery (rank 2, as CANCELLED)
    ref = DeliveryRef("bp", "322-L-2", "d-1")
    redis_client.hset(
        Keys(key_prefix).delivery(ref), mapping={"fp": "x", "rank": 2, "state": "DELIVERED"}
    )
    # When a CANCELLED event and a DELIVERED twin are claimed
    answers = ledger.claim(
        [
            ClaimRequest("cancelled", "h", ref, implied_rank=2, implied_state="CANCELLED"),
            ClaimRequest("delivered", "h", ref, implied_rank=2, implied_state="DELIVERED"),
        ]
    )
    # Then the CANCELLED one is asked about (a task), the twin costs nothing
    assert answers == [Claim.NEW, Claim.NO_NEWS]


def test_a_done_record_redis_rebuilt_without_its_hash_is_no_conflict(ledger: Ledger) -> None:
    # Given an event completed by a task after Redis lost its record (no claim, no hash)
    ledger.complete("rebuilt", how="pushed", payload_hash="h")
    ledger.complete("no-hash", how="pushed")
    # When copies of them arrive
    answers = ledger.claim([ClaimRequest("rebuilt", "h"), ClaimRequest("no-hash", "h")])
    # Then they are duplicates of a done event, never conflicts
    assert answers == [Claim.DONE, Claim.DONE]


def test_a_parked_event_is_claimed_anew_when_replayed(ledger: Ledger) -> None:
    ledger.claim([ClaimRequest("parked", "h")])
    ledger.mark_parked("parked", "permanent-api-error")
    assert ledger.states(["parked", "gone"]) == ["parked", None]
    assert ledger.claim([ClaimRequest("parked", "h")]) == [Claim.NEW]


def _queued(ledger: Ledger, key: str) -> None:
    ledger.claim([ClaimRequest(key, "h")])
    ledger.mark_queued([QueuedEvent(key, "{}")])


def test_a_lease_lives_while_renewed_and_dies_with_its_holder(
    ledger: Ledger, redis_client: redis.Redis, key_prefix: str
) -> None:
    # Given a worker process that took the task of a queued event
    _queued(ledger, "leased")
    keeper = Keeper(redis_client, 5.0, lease_ttl=1.0)
    tenancy = keeper.take(Keys(key_prefix).event("leased"))
    keeper.renew_now()
    assert ledger.views(["leased"]) == [EventView(EventState.QUEUED, Lease.LIVE, takes=1)]
    # When it stops renewing (SIGKILL) for longer than the lease
    keeper.drop(tenancy, release=False)
    time.sleep(1.2)
    # Then the poller sees the lease dead, and exactly one reclaim takes it back
    assert ledger.views(["leased"])[0].lease is Lease.DEAD
    orphan = Orphan("leased", "dead")
    assert ledger.reclaim([orphan], most=5) == [Reclaim.OK]
    assert ledger.reclaim([orphan], most=5) == [Reclaim.NO]
    assert ledger.views(["leased"]) == [
        EventView(EventState.QUEUED, Lease.NONE, takes=1, redispatches=1)
    ]


def test_a_released_lease_means_back_in_the_broker_and_a_take_in_between_wins(
    ledger: Ledger, redis_client: redis.Redis, key_prefix: str
) -> None:
    _queued(ledger, "retried")
    event_key = Keys(key_prefix).event("retried")
    first, second = Keeper(redis_client, 5.0), Keeper(redis_client, 5.0)
    old = first.take(event_key)
    first.renew_now()
    # the retry is taken by another process before the first one releases its lease
    second.take(event_key)
    second.renew_now()
    first.drop(old, release=True)
    first.renew_now()
    # the release of a lease no longer the first one's leaves the new one alone
    assert ledger.views(["retried"])[0] == EventView(EventState.QUEUED, Lease.LIVE, takes=2)
    # and an unleased event is reclaimed only while nobody took it since it was seen
    _queued(ledger, "waiting")
    assert ledger.reclaim([Orphan("waiting", "none", takes=1)], most=5) == [Reclaim.NO]
    assert ledger.reclaim([Orphan("waiting", "none", takes=0)], most=5) == [Reclaim.OK]


def test_a_finished_event_has_no_lease_and_a_failed_one_keeps_its_reason(
    ledger: Ledger, redis_client: redis.Redis, key_prefix: str
) -> None:
    _queued(ledger, "done")
    _queued(ledger, "failed")
    keeper = Keeper(redis_client, 5.0)
    for key in ("done", "failed"):
        keeper.take(Keys(key_prefix).event(key))
    keeper.renew_now()
    ledger.complete("done", how="pushed")
    assert ledger.mark_failed("failed", "permanent-oms-error", "OMS answered HTTP 422")
    assert ledger.views(["done", "failed"]) == [
        EventView(EventState.DONE, Lease.NONE, takes=1),
        EventView(
            EventState.FAILED,
            Lease.NONE,
            takes=1,
            kind="permanent-oms-error",
            reason="OMS answered HTTP 422",
        ),
    ]
    # a failed event is not run again when its message comes back; a done one is not failed
    assert ledger.claim([ClaimRequest("failed", "h")]) == [Claim.FAILED]
    assert not ledger.mark_failed("done", "permanent-oms-error", "late")


def test_the_sweep_leaves_alone_an_event_a_live_worker_holds(
    ledger: Ledger, redis_client: redis.Redis, key_prefix: str
) -> None:
    _queued(ledger, "held")
    keeper = Keeper(redis_client, 5.0)
    keeper.take(Keys(key_prefix).event("held"))
    keeper.renew_now()
    assert ledger.stale_queued(older_than=-1, limit=10) == []


def test_scheduled_job_runs_are_recorded(redis_client: redis.Redis, key_prefix: str) -> None:
    runs = JobRuns(redis_client, Keys(key_prefix), clock=lambda: 1234.5)
    assert runs.last() == {}
    runs.record("sweep")
    assert runs.last() == {"sweep": 1234.5}


class _RoundTrips(redis.Connection):
    """Counts what goes on the wire: one send per command, or per pipeline."""

    sent = 0

    def send_packed_command(self, command: object, check_health: bool = True) -> None:
        type(self).sent += 1
        super().send_packed_command(command, check_health)


def test_a_round_that_only_takes_a_lease_is_one_round_trip(
    ledger: Ledger, redis_client: redis.Redis, key_prefix: str
) -> None:
    # Given a keeper on a client that counts its round trips, its script already loaded
    _queued(ledger, "first")
    _queued(ledger, "second")
    options = redis_client.connection_pool.connection_kwargs
    pool = redis.ConnectionPool(connection_class=_RoundTrips, **options)
    counted = redis.Redis(connection_pool=pool)
    keeper = Keeper(counted, 5.0)
    keeper.take(Keys(key_prefix).event("first"))
    keeper.renew_now()
    # When the next task's lease is taken (the usual round: no lock due)
    before = _RoundTrips.sent
    keeper.take(Keys(key_prefix).event("second"))
    keeper.renew_now()
    # Then it cost one EVALSHA, not a pipeline with its SCRIPT EXISTS
    assert _RoundTrips.sent - before == 1
    assert ledger.views(["second"])[0].lease is Lease.LIVE
    keeper.drop_all()
    counted.close()
    pool.disconnect()


def _calls(client: redis.Redis, command: str) -> int:
    stats = client.info("commandstats").get(f"cmdstat_{command}", {})
    return int(stats.get("calls", 0))


def test_a_first_claim_deletes_nothing_and_a_replay_clears_what_the_park_left(
    ledger: Ledger, redis_client: redis.Redis, key_prefix: str
) -> None:
    # Given events never seen (counted by the server: commands inside the script too)
    before = _calls(redis_client, "hdel")
    # When they are claimed
    answers = ledger.claim([ClaimRequest("fresh-1", "h"), ClaimRequest("fresh-2", "h")])
    # Then nothing was deleted from records that held nothing
    assert answers == [Claim.NEW, Claim.NEW]
    assert _calls(redis_client, "hdel") == before
    # ... while a parked event claimed anew loses how it ended, as before
    ledger.mark_parked("fresh-1", "permanent-api-error")
    assert redis_client.hget(Keys(key_prefix).event("fresh-1"), "how") is not None
    assert ledger.claim([ClaimRequest("fresh-1", "h")]) == [Claim.NEW]
    assert ledger.views(["fresh-1"])[0].state is EventState.CLAIMED
    assert redis_client.hget(Keys(key_prefix).event("fresh-1"), "how") is None
