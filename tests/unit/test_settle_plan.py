"""The settling tick's decisions (worker/poller/plan.py): a table of held events and what
their records say, and the fate each one gets. Pure: no Redis, no SQS."""

from __future__ import annotations

import pytest

from tasks.ledger.events import ClaimRequest, EventState, EventView, Lease
from worker.poller.held import Held, Suspect
from worker.poller.plan import plan

GRACE = 10.0


def held(key: str, message_id: str | None = None, *, dispatched_at: float = 0.0) -> Held:
    return Held(
        message_id or f"m-{key}",
        f"r-{key}",
        ClaimRequest(key, "hash"),
        "{}",
        visible_at=60.0,
        received_at=0.0,
        dispatched_at=dispatched_at,
    )


def decide(
    helds: list[Held],
    views: dict[str, EventView],
    *,
    now: float = 100.0,
    dlq: bool = True,
    empty: bool | None = True,
) -> tuple[dict[str, list[str]], int]:
    asked = []

    def broker_empty() -> bool | None:
        asked.append(1)
        return empty

    out = plan(helds, views, now=now, grace=GRACE, dlq=dlq, broker_empty=broker_empty)
    fates = {
        "settled": [h.request.dedup_key for h, _ in out.settled],
        "park": [h.request.dedup_key for h, _ in out.park],
        "let_go": [h.request.dedup_key for h in out.let_go],
        "lost": [h.request.dedup_key for h in out.lost],
        "orphans": [f"{o.dedup_key}:{o.mode}" for _, o in out.orphans],
    }
    return {k: v for k, v in fates.items() if v}, len(asked)


@pytest.mark.parametrize(
    ("view", "dlq", "fate"),
    [
        (EventView(EventState.DONE), True, {"settled": ["e"]}),
        (EventView(EventState.PARKED), True, {"settled": ["e"]}),
        (EventView(EventState.FAILED, kind="permanent-oms-error"), True, {"park": ["e"]}),
        (EventView(EventState.FAILED, kind="permanent-oms-error"), False, {"let_go": ["e"]}),
        (EventView(None), True, {"lost": ["e"]}),
        (EventView(EventState.QUEUED, Lease.LIVE), True, {}),
        (EventView(EventState.QUEUED, Lease.DEAD), True, {"orphans": ["e:dead"]}),
        (EventView(EventState.CLAIMED), True, {}),
    ],
)
def test_each_record_gets_its_fate(view: EventView, dlq: bool, fate: dict[str, list[str]]) -> None:
    assert decide([held("e")], {"e": view}, dlq=dlq)[0] == fate


def test_nothing_is_decided_for_an_event_redis_could_not_be_asked_about() -> None:
    assert decide([held("e")], {}) == ({}, 0)


def test_two_copies_of_a_lost_task_make_one_orphan() -> None:
    fates, _ = decide(
        [held("e", "m-1"), held("e", "m-2")], {"e": EventView(EventState.QUEUED, Lease.DEAD)}
    )
    assert fates == {"orphans": ["e:dead"]}


def test_an_unleased_event_is_suspect_then_orphaned_only_while_the_broker_stays_empty() -> None:
    h = held("e")
    view = EventView(EventState.QUEUED, Lease.NONE, takes=2)
    # first sighting with the Celery queue empty: suspect, not yet orphaned
    assert decide([h], {"e": view}, now=100.0) == ({}, 1)
    assert h.suspect == Suspect(2, 100.0)
    # still so, and untaken, a grace later: orphaned, with the takes it was seen with
    assert decide([h], {"e": view}, now=100.0 + GRACE) == ({"orphans": ["e:none"]}, 1)


def test_a_take_in_between_restarts_the_watch() -> None:
    h = held("e")
    decide([h], {"e": EventView(EventState.QUEUED, Lease.NONE, takes=0)}, now=100.0)
    # a worker took it meanwhile (takes 1), then released it back to the broker (a retry)
    fates, _ = decide([h], {"e": EventView(EventState.QUEUED, Lease.NONE, takes=1)}, now=111.0)
    assert fates == {}
    assert h.suspect == Suspect(1, 111.0)


@pytest.mark.parametrize("empty", [False, None])
def test_an_unleased_event_may_be_waiting_in_the_broker(empty: bool | None) -> None:
    # a non-empty (or unknown) Celery queue may hold it: it is never orphaned
    h = held("e")
    view = EventView(EventState.QUEUED, Lease.NONE)
    for now in (100.0, 200.0, 300.0):
        assert decide([h], {"e": view}, now=now, empty=empty) == ({}, 1)
    assert h.suspect is None


def test_the_broker_depth_is_asked_only_about_events_older_than_the_grace() -> None:
    young = held("e", dispatched_at=95.0)
    view = EventView(EventState.QUEUED, Lease.NONE)
    assert decide([young], {"e": view}, now=100.0) == ({}, 0)
    # and at most once per tick, however many are waiting
    many = [held(f"e{i}") for i in range(5)]
    views = {f"e{i}": view for i in range(5)}
    assert decide(many, views)[1] == 1
