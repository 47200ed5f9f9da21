"""Milestone events, task side (no Celery), against real Redis and the sandbox API and OMS:
an event naming its order needs no index, one naming only its tracker waits for its
IN_TRANSIT, carrier codes of any case, coalescing per tracker, the milestones' share of
the API budget, one deadline per task, the index rebuilt by reconciliation, and a query
degraded when the credentials may not read the tracker fields."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import redis
from structlog.testing import capture_logs

from tasks.delivery.attempt import Parked, handle
from tasks.delivery.outcome import Outcome
from tasks.delivery.routing import route, route_delivery_event
from tasks.delivery.task_retry import Retry
from tasks.dispatch import claim_request
from tasks.errors import ApiAccessDenied
from tasks.events.envelope import DeliveryEvent, MilestoneEvent, parse_delivery_event
from tasks.events.samples import build_event, to_body
from tasks.http.deadline import Deadline
from tasks.keys import DeliveryRef, Keys
from tasks.ledger.milestones import MilestoneGate
from tasks.order_api.rate_limit import RateLimiter
from tasks.order_api.tracker_access import TrackerAccess
from tasks.reconcile import reconcile
from tasks.runtime import build_runtime
from tests.integration.test_sync import Side, make_settings, servers

__all__ = ["servers"]  # the module-scoped sandbox servers, shared with test_sync

BP = "bp-int"
_n = itertools.count(1)


@pytest.fixture
def side(servers, redis_url: str, key_prefix: str) -> Iterator[Side]:  # type: ignore[no-untyped-def]
    api, oms, _, _ = servers
    api.clear_faults()
    api.tracker_permission = True
    oms.reset()
    settings = make_settings(servers, redis_url, key_prefix)
    runtime = build_runtime(settings)
    yield Side(api, oms, runtime, settings)
    runtime.close()
    api.tracker_permission = True


def shipped(side: Side, carrier: str = "UPS", state: str = "IN_TRANSIT") -> tuple[str, str]:
    """An order whose d-1 the API shows ``state`` with a tracker; (order id, number)."""
    order_id, number = f"322-MS-{next(_n):05d}", f"1ZMS{next(_n):08d}"
    side.api.store.add_order(order_id, BP, [("li-1", 1, "d-1"), ("li-2", 1, "d-2")])
    side.api.store.update_delivery(
        order_id, "d-1", state=state, tracking_number=number, carrier_code=carrier
    )
    return order_id, number


def milestone(number: str, carrier: str = "ups", order_id: str | None = None) -> str:
    return to_body(
        build_event(
            "PACKAGE_TRACKER_MILESTONE_CHANGED",
            business_product_id=BP,
            order_id=order_id,
            tracker=(carrier, number),
        )
    )


def run(side: Side, body: str, failures: int = 0) -> Outcome | Parked | Retry:
    event = parse_delivery_event(body)
    assert isinstance(event, MilestoneEvent | DeliveryEvent)
    side.runtime.ledger.claim([claim_request(event)])
    return handle(body, event.envelope.dedup_key, side.runtime, failures=failures, busy=0)


def key_of(body: str) -> str:
    event = parse_delivery_event(body)
    assert isinstance(event, MilestoneEvent)
    return event.envelope.dedup_key


def in_transit(side: Side, order_id: str) -> str:
    body = to_body(
        build_event(
            "PACKAGE_DELIVERY_IN_TRANSIT",
            business_product_id=BP,
            order_id=order_id,
            delivery_id="d-1",
        )
    )
    return str(run(side, body))


def window_passes(side: Side, redis_client: redis.Redis, number: str) -> None:
    """Move the tracker's window start back past the coalescing window (Redis's clock
    decides; no test sleeps)."""
    key = Keys(side.settings.redis_key_prefix).milestone(BP, "ups", number)
    begun = int(redis_client.hget(key, "begun") or 0)
    window_ms = int(side.settings.milestone_coalesce_seconds * 1000)
    redis_client.hset(key, "begun", begun - window_ms - 1)


# --- which delivery a milestone syncs ----------------------------------------------------


def test_a_milestone_naming_its_order_syncs_without_any_index(side: Side) -> None:
    # Given a delivery in transit that was never pushed (no tracker index entry: the
    # IN_TRANSIT event was lost, or Redis lost the index), its carrier in lower case
    order_id, number = shipped(side)
    side.api.move(order_id, "d-1", None, milestone="OUT_FOR_DELIVERY")
    # When a milestone naming the order arrives (the form recorded in 2025)
    outcome = run(side, milestone(number, "ups", order_id))
    # Then that order's delivery with this tracker reached the OMS, with the milestone
    assert outcome == "pushed"
    [push] = side.pushes(order_id)
    assert (push["deliveryId"], push["tracking"]["milestone"]) == ("d-1", "OUT_FOR_DELIVERY")  # type: ignore[index]
    # And the order's trackers are indexed now: a later milestone naming only the tracker
    # finds the delivery without asking the API which one
    ref = side.runtime.deps.trackers.lookup(BP, "UPS", number)  # type: ignore[union-attr]
    assert ref == DeliveryRef(BP, order_id, "d-1")


def test_a_milestone_naming_only_its_tracker_waits_for_its_in_transit(
    side: Side, redis_client: redis.Redis
) -> None:
    # Given a milestone that arrives before the IN_TRANSIT event that indexes its tracker
    order_id, number = shipped(side)
    body = milestone(number, "ups")
    calls = side.calls(order_id)
    # When its task runs, it is retried (no query could tell which delivery)
    assert isinstance(run(side, body), Retry)
    assert side.calls(order_id) == calls
    # And once the IN_TRANSIT event was synced (its push indexes the tracker)
    assert in_transit(side, order_id) == "pushed"
    side.api.move(order_id, "d-1", None, milestone="OUT_FOR_DELIVERY")
    # Then the retry syncs the delivery: the OMS sees the milestone
    assert run(side, body, failures=1) == "pushed"
    assert side.pushes(order_id)[-1]["tracking"]["milestone"] == "OUT_FOR_DELIVERY"  # type: ignore[index]
    assert side.runtime.ledger.state(key_of(body)) == "done"


@pytest.mark.parametrize(("api_carrier", "event_carrier"), [("UPS", "ups"), ("usps", "USPS")])
def test_carrier_codes_match_whatever_their_case(
    side: Side, api_carrier: str, event_carrier: str
) -> None:
    # Given a delivery pushed with the API's carrier code
    order_id, number = shipped(side, carrier=api_carrier)
    assert in_transit(side, order_id) == "pushed"
    side.api.move(order_id, "d-1", None, milestone="DELAYED")
    # When the milestone names the carrier in the other case
    outcome = run(side, milestone(number, event_carrier))
    # Then the tracker is found
    assert outcome == "pushed"
    assert side.pushes(order_id)[-1]["tracking"]["milestone"] == "DELAYED"  # type: ignore[index]


def test_an_index_pointing_at_another_order_than_the_event_names_is_not_trusted(
    side: Side, redis_client: redis.Redis
) -> None:
    # Given a tracker index entry (stale) pointing at another order
    order_id, number = shipped(side)
    other = DeliveryRef(BP, "322-ELSEWHERE", "d-9")
    side.runtime.deps.trackers.remember(other, "UPS", number)  # type: ignore[union-attr]
    # When a milestone naming its real order arrives
    assert run(side, milestone(number, "ups", order_id)) == "pushed"
    # Then the named order's delivery was synced, and the index corrected
    assert [p["deliveryId"] for p in side.pushes(order_id)] == ["d-1"]
    assert side.runtime.deps.trackers.lookup(BP, "ups", number) == DeliveryRef(  # type: ignore[union-attr]
        BP, order_id, "d-1"
    )


def test_reconciliation_rebuilds_a_lost_tracker_index(
    side: Side, redis_client: redis.Redis
) -> None:
    # Given an open delivery pushed with its tracker, whose index entry Redis then lost
    order_id, number = shipped(side)
    assert in_transit(side, order_id) == "pushed"
    keys = Keys(side.settings.redis_key_prefix)
    redis_client.delete(keys.tracker(BP, "ups", number))
    assert side.runtime.deps.trackers.lookup(BP, "ups", number) is None  # type: ignore[union-attr]
    # When reconciliation re-syncs it (nothing changed: no push)
    report = reconcile(side.runtime.deps.deliveries, side.runtime.deps, older_than=0, limit=100)
    assert report.outcomes[Outcome.UNCHANGED] >= 1
    # Then the tracker points at the delivery again
    assert side.runtime.deps.trackers.lookup(BP, "ups", number) == DeliveryRef(  # type: ignore[union-attr]
        BP, order_id, "d-1"
    )


# --- coalescing and the budget share ----------------------------------------------------


def test_a_burst_of_milestones_for_one_tracker_costs_one_query_per_window(
    side: Side, redis_client: redis.Redis
) -> None:
    # Given a pushed, tracked delivery
    order_id, number = shipped(side)
    assert in_transit(side, order_id) == "pushed"
    calls = side.calls(order_id)
    # When ten milestones of its tracker arrive one after another
    side.api.move(order_id, "d-1", None, milestone="OUT_FOR_DELIVERY")
    bodies = [milestone(number) for _ in range(10)]
    first = run(side, bodies[0])
    # and the carrier moves on while the others wait
    side.api.move(order_id, "d-1", None, milestone="DELIVERY_ATTEMPTED")
    waiting = [run(side, body) for body in bodies[1:]]
    # Then the first queried, the other nine wait out the window without a query
    assert first == "pushed"
    assert all(isinstance(step, Retry) for step in waiting)
    assert side.calls(order_id) == calls + 1
    metrics = side.runtime.deps.metrics.registry
    assert metrics.get_sample_value("bwp_milestones_deferred_total") == 9
    # When the window has passed and their retries run
    window_passes(side, redis_client, number)
    again = [run(side, body, failures=1) for body in bodies[1:]]
    # Then one of them queried (and pushed the later milestone), the rest were covered by
    # it: two queries for ten events, and no milestone lost
    assert again[0] == "pushed"
    assert again[1:] == ["coalesced"] * 8
    assert side.calls(order_id) == calls + 2
    assert side.pushes(order_id)[-1]["tracking"]["milestone"] == "DELIVERY_ATTEMPTED"  # type: ignore[index]
    assert metrics.get_sample_value("bwp_milestones_coalesced_total") == 8
    assert all(side.runtime.ledger.state(key_of(b)) == "done" for b in bodies)


def test_milestone_queries_take_their_share_of_the_api_budget(
    side: Side, redis_client: redis.Redis
) -> None:
    # Given a limiter for milestones at a quarter of 20 calls/s, burst 2, that records
    # its waits instead of sleeping
    waits: list[float] = []
    keys = Keys(side.settings.redis_key_prefix)
    limiter = RateLimiter(
        redis_client, keys.api_rate_milestones, rate=5, burst=2, sleep=waits.append
    )
    gate = MilestoneGate(redis_client, keys, window=10, limiter=limiter)
    deps = replace(side.runtime.deps, milestones=gate)
    # When milestones of eight different trackers are synced at once
    orders = [shipped(side) for _ in range(8)]
    for order_id, _ in orders:
        assert in_transit(side, order_id) == "pushed"
    for _, number in orders:
        event = parse_delivery_event(milestone(number))
        assert isinstance(event, MilestoneEvent)
        route(event, deps)
    # Then past the burst each one waited for its slot of the milestones' share
    assert limiter.throttled == 8 - 2
    assert sum(waits) >= (8 - 2) / 5 * 0.9


# --- one deadline per task -----------------------------------------------------------------


class Recording:
    """The real order source, noting the deadline each query ran under."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.deadlines = inner, []  # type: ignore[var-annotated]

    def reserve(self) -> None:
        self.inner.reserve()

    def fetch_order(self, *args: Any, deadline: Deadline | None = None, **kw: Any) -> Any:
        self.deadlines.append(deadline)
        return self.inner.fetch_order(*args, deadline=deadline, **kw)


def test_every_pair_of_an_event_runs_under_one_deadline(side: Side) -> None:
    # Given an event naming three deliveries
    order_id = f"322-MS-{next(_n):05d}"
    items = [(f"li-{i}", 1, f"d-{i}") for i in range(1, 4)]
    side.api.store.add_order(order_id, BP, items)
    for _, _, delivery in items:
        side.api.store.update_delivery(order_id, delivery, state="DELIVERED")
    event = build_event(
        "PACKAGE_DELIVERED", business_product_id=BP, order_id=order_id, delivery_id="d-1"
    )
    event["resources"] += [f"businessProduct/{BP}/order/{order_id}/delivery/d-{i}" for i in (2, 3)]
    parsed = parse_delivery_event(to_body(event))
    assert isinstance(parsed, DeliveryEvent)
    recording = Recording(side.runtime.deps.api)
    # When its task syncs them
    assert route(parsed, replace(side.runtime.deps, api=recording)) == "pushed"
    # Then all three queries ran under the one deadline of the task
    assert len(recording.deadlines) == 3
    assert recording.deadlines[0] is not None
    assert all(d is recording.deadlines[0] for d in recording.deadlines)


# --- credentials without the package-tracker permission -----------------------------------


def test_a_query_refused_the_tracker_fields_is_degraded_not_parked(side: Side) -> None:
    # Given credentials the API refuses packageTracker (Read Order only)
    side.api.tracker_permission = False
    order_id, _ = shipped(side)
    side.api.store.update_delivery(order_id, "d-2", state="DELIVERED")
    metrics = side.runtime.deps.metrics.registry
    # When two delivery events are synced
    with capture_logs() as logs:
        outcomes = [
            route_delivery_event(
                event(side, "PACKAGE_DELIVERY_IN_TRANSIT", order_id, "d-1"), side.runtime.deps
            ),
            route_delivery_event(
                event(side, "PACKAGE_DELIVERED", order_id, "d-2"), side.runtime.deps
            ),
        ]
    # Then both deliveries reached the OMS, without tracking; one warning, each counted
    assert outcomes == [Outcome.PUSHED, Outcome.PUSHED]
    assert [p["tracking"] for p in side.pushes(order_id)] == [None, None]
    warnings = [e for e in logs if e["event"] == "order_query_without_tracker"]
    assert len(warnings) == 1
    assert metrics.get_sample_value("bwp_order_queries_without_tracker_total") == 2
    # (the first query was refused and sent again without the tracker fields; the second
    # went without them at once)
    assert side.api.stats()["tracker_denied"] >= 1


def test_access_denied_without_the_tracker_fields_too_still_parks(side: Side) -> None:
    # Given an order of another business product than the one the event names (the API
    # denies it whatever the fields: x-api-target-id is the event's business product)
    order_id = f"322-MS-{next(_n):05d}"
    side.api.store.add_order(order_id, "bp-someone-else", [("li-1", 1, "d-1")])
    side.api.store.update_delivery(order_id, "d-1", state="DELIVERED")
    # When it is synced, the query without the tracker fields is denied too
    with pytest.raises(ApiAccessDenied):
        route_delivery_event(event(side, "PACKAGE_DELIVERED", order_id, "d-1"), side.runtime.deps)
    # Then nothing was pushed, and later queries keep their tracker fields
    assert side.pushes(order_id) == []
    assert not side.runtime.deps.api.degraded  # type: ignore[attr-defined]


def test_the_full_query_is_tried_again_after_the_recheck(side: Side) -> None:
    # Given a degraded order source whose recheck time has come
    now = [0.0]
    access = TrackerAccess(
        side.runtime.api,
        api_version="2024-11-01",
        degraded=side.runtime.deps.metrics.queries_without_tracker,
        clock=lambda: now[0],
        recheck=60,
    )
    deps = replace(side.runtime.deps, api=access)
    side.api.tracker_permission = False
    order_id, number = shipped(side)
    assert (
        route_delivery_event(event(side, "PACKAGE_DELIVERY_IN_TRANSIT", order_id, "d-1"), deps)
        is Outcome.PUSHED
    )
    assert access.degraded
    # When the permission was granted meanwhile and the recheck time passed
    side.api.tracker_permission = True
    now[0] += 61
    side.api.store.update_delivery(order_id, "d-1", state="DELIVERED")
    assert (
        route_delivery_event(event(side, "PACKAGE_DELIVERED", order_id, "d-1"), deps)
        is Outcome.PUSHED
    )
    # Then the push carries the tracking again
    assert not access.degraded
    assert side.pushes(order_id)[-1]["tracking"]["trackingNumber"] == number  # type: ignore[index]


def event(side: Side, detail_type: str, order_id: str, delivery_id: str) -> DeliveryEvent:
    parsed = parse_delivery_event(
        to_body(
            build_event(
                detail_type, business_product_id=BP, order_id=order_id, delivery_id=delivery_id
            )
        )
    )
    assert isinstance(parsed, DeliveryEvent)
    return parsed
