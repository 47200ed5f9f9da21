"""The task side without Celery: sync, reconciliation, token sharing, API and OMS failure
handling, against real Redis and the sandbox API and OMS over HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

import httpx
import pytest
import redis
from structlog.testing import capture_logs

from config.settings import Settings
from sandbox.bwp_api import SandboxApi
from sandbox.bwp_api import build_app as api_app
from sandbox.http import ServerHandle, serve_asgi
from sandbox.oms import SandboxOms
from sandbox.oms import build_app as oms_app
from tasks.delivery.attempt import handle
from tasks.delivery.outcome import Outcome
from tasks.delivery.routing import route_delivery_event
from tasks.delivery.sync import sync_for_source, synthetic_source
from tasks.delivery.task_retry import Retry
from tasks.dispatch import claim_request
from tasks.errors import (
    ApiBehindEvent,
    ApiUnavailable,
    DeliveryBusy,
    OrderNotVisibleYet,
    PermanentApiError,
    PermanentOmsError,
)
from tasks.events.envelope import (
    DeliveryEvent,
    MilestoneEvent,
    parse_delivery_event,
    parse_envelope,
)
from tasks.events.samples import build_event, to_body
from tasks.keys import DeliveryRef, Keys
from tasks.oms.client import OmsClient
from tasks.order_api.rate_limit import RateLimiter
from tasks.reconcile import reconcile
from tasks.runtime import Runtime, build_runtime

SECRET = "integration-signing-secret"


@dataclass
class Side:
    api: SandboxApi
    oms: SandboxOms
    runtime: Runtime
    settings: Settings

    def event(self, detail_type: str, order_id: str, delivery_id: str = "d-1") -> DeliveryEvent:
        body = to_body(
            build_event(
                detail_type,
                business_product_id="bp-int",
                order_id=order_id,
                delivery_id=delivery_id,
            )
        )
        parsed = parse_delivery_event(body)
        assert isinstance(parsed, DeliveryEvent)
        return parsed

    def calls(self, order_id: str) -> int:
        return int(self.api.stats()["order_queries_by_order"].get(order_id, 0))

    def pushes(self, order_id: str) -> list[dict[str, object]]:
        return [p.body for p in self.oms.received if p.body["orderId"] == order_id]


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[SandboxApi, SandboxOms, ServerHandle, ServerHandle]]:
    api, oms = SandboxApi(), SandboxOms(signing_secret=SECRET)
    with serve_asgi(api_app(api)) as api_server, serve_asgi(oms_app(oms)) as oms_server:
        yield api, oms, api_server, oms_server


def make_settings(servers, redis_url: str, key_prefix: str, **extra: object) -> Settings:  # type: ignore[no-untyped-def]
    api, _, api_server, oms_server = servers
    return Settings(
        redis_url=redis_url,
        redis_key_prefix=key_prefix,
        bwp_api_url=f"{api_server.url}/graphql",
        bwp_token_url=f"{api_server.url}/token",
        bwp_client_id=api.client_id,
        bwp_client_secret=api.client_secret,
        oms_url=f"{oms_server.url}/deliveries",
        oms_signing_secret=SECRET,
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture
def side(servers, redis_url: str, key_prefix: str) -> Iterator[Side]:  # type: ignore[no-untyped-def]
    api, oms, _, _ = servers
    api.clear_faults()
    oms.reset()
    settings = make_settings(servers, redis_url, key_prefix)
    runtime = build_runtime(settings)
    yield Side(api, oms, runtime, settings)
    runtime.close()


_n = iter(range(1, 10**6))


def order(side: Side, state: str = "IN_TRANSIT", **kw: str) -> str:
    order_id = f"322-INT-{next(_n):05d}"
    side.api.store.add_order(order_id, "bp-int", [("li-1", 2, "d-1")])
    side.api.store.update_delivery(order_id, "d-1", state=state, **kw)
    return order_id


def test_an_event_is_pushed_once_and_its_twin_needs_no_query(side: Side) -> None:
    order_id = order(side, "DELIVERED", tracking_number="TN", carrier_code="UPS")
    first = side.event("PACKAGE_DELIVERED", order_id)
    assert route_delivery_event(first, side.runtime.deps) is Outcome.PUSHED
    assert route_delivery_event(first, side.runtime.deps) is Outcome.ALREADY_DONE
    assert (
        route_delivery_event(side.event("ITEM_DELIVERED", order_id), side.runtime.deps)
        is Outcome.NO_NEWS
    )
    assert side.calls(order_id) == 1
    [body] = side.pushes(order_id)
    assert body["state"] == "DELIVERED"


def test_an_api_lagging_behind_the_event_is_asked_again(side: Side) -> None:
    # Given the API still shows IN_TRANSIT when the DELIVERED event arrives
    order_id = order(side, "IN_TRANSIT")
    event = side.event("DELIVERY_COMPLETED", order_id)
    key = event.envelope.dedup_key
    # When the task runs, it pushes nothing, leaves the event open, and asks to be retried
    with pytest.raises(ApiBehindEvent, match="shows IN_TRANSIT for an event announcing DELIVERED"):
        route_delivery_event(event, side.runtime.deps)
    assert side.pushes(order_id) == []
    assert side.runtime.ledger.state(key) is None
    # Then, once the API caught up, the retry pushes DELIVERED and closes the event
    side.api.store.update_delivery(order_id, "d-1", state="DELIVERED")
    assert route_delivery_event(event, side.runtime.deps) is Outcome.PUSHED
    assert [b["state"] for b in side.pushes(order_id)] == ["DELIVERED"]
    assert side.runtime.ledger.state(key) == "done"


def test_a_cancelled_event_while_the_api_still_shows_delivered_is_never_closed_by_that_read(
    side: Side,
) -> None:
    # Given DELIVERED was pushed, and a CANCELLED event arrives while the API still says
    # DELIVERED (same rank, not the event's fact)
    order_id = order(side, "DELIVERED")
    assert route_delivery_event(side.event("PACKAGE_DELIVERED", order_id), side.runtime.deps) is (
        Outcome.PUSHED
    )
    body = to_body(
        build_event(
            "PACKAGE_DELIVERY_CANCELLED",
            business_product_id="bp-int",
            order_id=order_id,
            delivery_id="d-1",
        )
    )
    key = parse_envelope(body).dedup_key
    # When its task runs with retries left: retried, nothing pushed, the event still open
    step = handle(body, key, side.runtime, failures=0, busy=0)
    assert isinstance(step, Retry)
    assert [b["state"] for b in side.pushes(order_id)] == ["DELIVERED"]
    assert side.runtime.ledger.state(key) is None
    # And with its budget spent: parked with both states, never marked done
    outcome = handle(body, key, side.runtime, failures=side.settings.task_max_retries, busy=0)
    assert str(outcome) == "failed:retries-exhausted"  # no DLQ configured in this rig
    record = side.runtime.ledger.views([key])[0]
    assert record.kind == "retries-exhausted"
    assert "shows DELIVERED for an event announcing CANCELLED" in record.reason
    assert [b["state"] for b in side.pushes(order_id)] == ["DELIVERED"]


def test_after_the_ledger_was_wiped_a_lagging_read_is_not_pushed_below_the_event(
    side: Side, redis_client: redis.Redis, key_prefix: str
) -> None:
    # Given DELIVERED was pushed, then Redis lost everything (no recorded rank any more)
    order_id = order(side, "DELIVERED")
    delivered = side.event("PACKAGE_DELIVERED", order_id)
    assert route_delivery_event(delivered, side.runtime.deps) is Outcome.PUSHED
    for key in redis_client.scan_iter(match=f"{key_prefix}*"):
        redis_client.delete(key)
    # When the DELIVERED event is run again (re-dispatched) and the API read lags
    side.api.store.update_delivery(order_id, "d-1", state="IN_TRANSIT")
    with pytest.raises(ApiBehindEvent):
        route_delivery_event(delivered, side.runtime.deps)
    # Then no IN_TRANSIT snapshot reached the OMS after DELIVERED
    assert [b["state"] for b in side.pushes(order_id)] == ["DELIVERED"]


def test_a_snapshot_that_would_go_backwards_is_not_pushed(side: Side) -> None:
    order_id = order(side, "DELIVERED")
    route_delivery_event(side.event("PACKAGE_DELIVERED", order_id), side.runtime.deps)
    side.api.store.update_delivery(order_id, "d-1", state="IN_TRANSIT", tracking_number="NEW")
    ref = DeliveryRef("bp-int", order_id, "d-1")
    source = synthetic_source("MANUAL_SYNC", side.runtime.deps.now())
    assert sync_for_source(ref, side.runtime.deps, source) is Outcome.BACKWARDS
    assert [b["state"] for b in side.pushes(order_id)] == ["DELIVERED"]


def test_reconciliation_repairs_a_dropped_event(side: Side) -> None:
    # Given IN_TRANSIT was pushed, then the delivery completed but its event was dropped
    order_id = order(side, "IN_TRANSIT", tracking_number="TN-R")
    route_delivery_event(side.event("PACKAGE_DELIVERY_IN_TRANSIT", order_id), side.runtime.deps)
    side.api.store.update_delivery(order_id, "d-1", state="DELIVERED")
    deliveries = side.runtime.deps.deliveries
    # When reconciliation runs
    report = reconcile(deliveries, side.runtime.deps, older_than=0, limit=100)
    # Then the OMS is right, and the now-terminal delivery is no longer watched
    assert report.outcomes[Outcome.PUSHED] == 1
    assert side.pushes(order_id)[-1]["state"] == "DELIVERED"
    assert side.pushes(order_id)[-1]["sourceEvent"]["detailType"] == "RECONCILIATION"  # type: ignore[index]
    assert reconcile(deliveries, side.runtime.deps, older_than=0, limit=100).checked == 0


def test_reconciliation_is_bounded_per_run(side: Side) -> None:
    orders = [order(side, "IN_TRANSIT") for _ in range(5)]
    for order_id in orders:
        route_delivery_event(side.event("DELIVERY_IN_TRANSIT", order_id), side.runtime.deps)
    assert (
        reconcile(side.runtime.deps.deliveries, side.runtime.deps, older_than=0, limit=3).checked
        == 3
    )


def test_reconciliation_forgets_deliveries_that_fail_for_good_or_expired(
    side: Side, redis_client: redis.Redis
) -> None:
    # Given two open deliveries: one whose order the API now refuses for good, one whose
    # delivery record expired (no push for the state TTL)
    refused, expired = order(side, "IN_TRANSIT"), order(side, "IN_TRANSIT")
    for order_id in (refused, expired):
        route_delivery_event(side.event("DELIVERY_IN_TRANSIT", order_id), side.runtime.deps)
    keys = Keys(side.runtime.settings.redis_key_prefix)
    redis_client.delete(keys.delivery(DeliveryRef("bp-int", expired, "d-1")))
    side.api.inject("validation", 1)
    deliveries = side.runtime.deps.deliveries
    # When reconciliation runs
    report = reconcile(deliveries, side.runtime.deps, older_than=0, limit=100)
    # Then it asked about the refused one once, dropped the expired one unasked, and
    # neither is asked about again
    assert (report.checked, report.errors) == (1, 1)
    assert reconcile(deliveries, side.runtime.deps, older_than=0, limit=100).checked == 0


def test_workers_share_one_token_and_a_401_forces_one_refresh(
    side: Side, servers, redis_url, key_prefix
) -> None:  # type: ignore[no-untyped-def]
    other = build_runtime(make_settings(servers, redis_url, key_prefix))
    try:
        before = side.api.stats()["token_requests"]
        a, b = order(side), order(side)
        route_delivery_event(side.event("ITEM_IN_TRANSIT", a), side.runtime.deps)
        route_delivery_event(side.event("ITEM_IN_TRANSIT", b), other.deps)
        assert side.api.stats()["token_requests"] - before == 1
        side.api.invalidate_tokens()
        c = order(side)
        route_delivery_event(side.event("ITEM_IN_TRANSIT", c), other.deps)
        assert side.api.stats()["token_requests"] - before == 2
        assert len(side.pushes(c)) == 1
    finally:
        other.close()


@pytest.mark.parametrize(
    ("kind", "count", "expected"),
    [
        ("throttle", 2, Outcome.PUSHED),
        ("internal", 2, Outcome.PUSHED),
        ("http503", 2, Outcome.PUSHED),
        ("http429", 3, ApiUnavailable),
        ("not_found", 1, OrderNotVisibleYet),
        ("validation", 1, PermanentApiError),
        # denied twice: with the tracker fields, then without them (tasks.order_api.tracker_access)
        ("access_denied", 2, PermanentApiError),
    ],
)
def test_api_errors_are_retried_in_the_call_or_classified(
    side: Side, kind: str, count: int, expected: object
) -> None:
    order_id = order(side)
    side.api.inject(kind, count, retry_after=0 if kind == "http429" else None)
    event = side.event("PACKAGE_DELIVERY_IN_TRANSIT", order_id)
    if isinstance(expected, Outcome):
        assert route_delivery_event(event, side.runtime.deps) is expected
        assert side.calls(order_id) == count + 1
    else:
        with pytest.raises(expected):  # type: ignore[call-overload]
            route_delivery_event(event, side.runtime.deps)
        assert side.pushes(order_id) == []
        assert side.runtime.ledger.state(event.envelope.dedup_key) is None


def test_oms_failures_are_retried_with_the_same_idempotency_key(side: Side) -> None:
    order_id = order(side)
    side.oms.fail_next(2, status=503)
    assert (
        route_delivery_event(side.event("PACKAGE_DELIVERY_IN_TRANSIT", order_id), side.runtime.deps)
        is Outcome.PUSHED
    )
    keys = [a.headers.get("idempotency-key") for a in side.oms.attempts if order_id in a.body]
    assert len(keys) == 3 and len(set(keys)) == 1


def test_an_oms_refusal_is_permanent_and_nothing_is_recorded(side: Side) -> None:
    order_id = order(side)
    side.oms.fail_next(1, status=422)
    event = side.event("PACKAGE_DELIVERY_IN_TRANSIT", order_id)
    with pytest.raises(PermanentOmsError, match="422"):
        route_delivery_event(event, side.runtime.deps)
    # the delivery is not marked pushed: a replay pushes it
    assert side.runtime.deps.deliveries.last_pushed(DeliveryRef("bp-int", order_id, "d-1")) is None


def test_many_workers_together_stay_under_the_api_rate(redis_url: str, key_prefix: str) -> None:
    # Given four workers, each with its own connection, sharing one limit of 40/s, burst 4
    rate, burst, workers, calls_each = 40.0, 4, 4, 15
    key = Keys(key_prefix).api_rate
    stamps: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        client = redis.Redis.from_url(redis_url)
        limiter = RateLimiter(client, key, rate=rate, burst=burst)
        for _ in range(calls_each):
            limiter.acquire()
            with lock:
                stamps.append(time.monotonic())
        client.close()

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then 60 calls took at least (60 - burst) / rate seconds, and no one-second window
    # holds more than rate + burst calls
    stamps.sort()
    assert len(stamps) == workers * calls_each
    assert stamps[-1] - stamps[0] >= (len(stamps) - burst) / rate * 0.95
    busiest = max(sum(1 for s in stamps if t <= s < t + 1.0) for t in stamps)
    assert busiest <= rate + burst


# --- issue 12: per-delivery units, odd siblings, milestones, several pairs ------------


@pytest.fixture(params=["2024-04-01", "2024-11-01"])
def versioned(request, servers, redis_url: str, key_prefix: str) -> Iterator[Side]:  # type: ignore[no-untyped-def]
    api, oms, _, _ = servers
    api.clear_faults()
    oms.reset()
    settings = make_settings(servers, redis_url, key_prefix, bwp_api_version=request.param)
    runtime = build_runtime(settings)
    yield Side(api, oms, runtime, settings)
    runtime.close()


def test_a_split_line_item_pushes_each_deliverys_own_units(versioned: Side) -> None:
    side = versioned
    # Given 3 x li-1 ordered in d-1; 1 unit split off to d-2 and cancelled as unfulfillable
    order_id = f"322-INT-{next(_n):05d}"
    side.api.store.add_order(order_id, "bp-int", [("li-1", 3, "d-1"), ("li-2", 1, "d-1")])
    side.api.store.split(order_id, "li-1", "d-1", "d-2", 1)
    side.api.store.update_delivery(order_id, "d-2", state="CANCELLED", reason="UNFULFILLABLE")
    side.api.store.update_delivery(
        order_id, "d-1", state="IN_TRANSIT", tracking_number="TN", carrier_code="UPS"
    )
    # When both deliveries' events are synced
    deps = side.runtime.deps
    assert (
        route_delivery_event(side.event("DELIVERY_CANCELLED", order_id, "d-2"), deps)
        is Outcome.PUSHED
    )
    assert (
        route_delivery_event(side.event("DELIVERY_IN_TRANSIT", order_id, "d-1"), deps)
        is Outcome.PUSHED
    )
    # Then each push carries only that delivery's units, not the ordered 3
    by_delivery = {p["deliveryId"]: p for p in side.pushes(order_id)}
    assert by_delivery["d-2"]["lineItems"] == [{"lineItemId": "li-1", "quantity": 1}]
    assert by_delivery["d-2"]["reason"] == "UNFULFILLABLE"
    assert by_delivery["d-1"]["lineItems"] == [
        {"lineItemId": "li-1", "quantity": 2},
        {"lineItemId": "li-2", "quantity": 1},
    ]


@dataclass
class OddSibling:
    """The real sandbox API, except that d-2 comes back in a state no one documented."""

    inner: object

    def reserve(self) -> None:
        self.inner.reserve()  # type: ignore[attr-defined]

    def fetch_order(
        self, business_product_id: str, order_id: str, **options: object
    ) -> dict[str, object]:
        order = self.inner.fetch_order(business_product_id, order_id, **options)  # type: ignore[attr-defined]
        for holder in [order, *order["lineItems"]]:
            info = holder.get("packageInformation") or holder.get("deliveryInformation") or {}
            for detail in info.get("details") or []:
                if detail["id"] == "d-2" and "state" in detail:
                    detail["state"] = "TELEPORTED"
        return order  # type: ignore[no-any-return]


def test_a_sibling_in_an_unknown_state_does_not_stop_the_events_delivery(
    versioned: Side,
) -> None:
    side = versioned
    # Given an order whose other delivery holds a state the worker does not know
    order_id = f"322-INT-{next(_n):05d}"
    side.api.store.add_order(order_id, "bp-int", [("li-1", 1, "d-1"), ("li-2", 1, "d-2")])
    side.api.store.update_delivery(order_id, "d-1", state="DELIVERED")
    deps = replace(side.runtime.deps, api=OddSibling(side.runtime.deps.api))
    # When the event for d-1 is synced
    with capture_logs() as logs:
        outcome = route_delivery_event(side.event("DELIVERY_COMPLETED", order_id, "d-1"), deps)
    # Then d-1 is pushed, and the sibling is skipped with a warning and a count
    assert outcome is Outcome.PUSHED
    assert [p["deliveryId"] for p in side.pushes(order_id)] == ["d-1"]
    assert any(e["event"] == "sibling_delivery_skipped" for e in logs)
    assert deps.metrics.registry.get_sample_value("bwp_sibling_deliveries_skipped_total") == 1
    # But an event naming d-2 itself is refused as a permanent API error
    with pytest.raises(PermanentApiError):
        route_delivery_event(side.event("DELIVERY_COMPLETED", order_id, "d-2"), deps)


def milestone_body(tracking_number: str, carrier: str = "UPS") -> str:
    return to_body(
        build_event(
            "PACKAGE_TRACKER_MILESTONE_CHANGED",
            business_product_id="bp-int",
            tracker=(carrier, tracking_number),
        )
    )


def test_a_milestone_for_a_known_tracker_updates_the_oms_once(side: Side) -> None:
    # Given a delivery pushed IN_TRANSIT with a tracking number (2024-11-01)
    order_id = f"322-INT-{next(_n):05d}"
    number = f"1ZMS{next(_n):06d}"
    side.api.store.add_order(order_id, "bp-int", [("li-1", 1, "d-1")])
    side.api.move(order_id, "d-1", "IN_TRANSIT", tracking_number=number, carrier_code="UPS")
    deps = side.runtime.deps
    assert (
        route_delivery_event(side.event("PACKAGE_DELIVERY_IN_TRANSIT", order_id), deps)
        is Outcome.PUSHED
    )
    # When the carrier reports OUT_FOR_DELIVERY and the milestone event arrives twice
    side.api.move(order_id, "d-1", None, milestone="OUT_FOR_DELIVERY")
    first, twin = milestone_body(number), milestone_body(number)
    for body in (first, twin):
        event = parse_delivery_event(body)
        assert isinstance(event, MilestoneEvent)
        side.runtime.ledger.claim([claim_request(event)])
    calls = side.calls(order_id)
    outcomes = [
        handle(body, parse_envelope(body).dedup_key, side.runtime, failures=0, busy=0)
        for body in (first, twin)
    ]
    # Then the OMS got one more push, carrying the milestone; the second event, inside its
    # tracker's coalescing window, waits it out without a query (tests/integration/
    # test_milestones.py follows it to its end)
    assert outcomes[0] == "pushed"
    assert isinstance(outcomes[1], Retry)
    assert outcomes[1].countdown >= 1.0
    assert side.calls(order_id) == calls + 1
    pushes = side.pushes(order_id)
    assert len(pushes) == 2
    assert pushes[-1]["tracking"]["milestone"] == "OUT_FOR_DELIVERY"  # type: ignore[index]
    assert pushes[-1]["sourceEvent"]["detailType"] == "PACKAGE_TRACKER_MILESTONE_CHANGED"  # type: ignore[index]
    assert side.runtime.ledger.state(parse_envelope(first).dedup_key) == "done"


def test_a_milestone_for_an_unknown_tracker_is_retried_then_acknowledged_and_counted(
    side: Side,
) -> None:
    # Given a milestone naming no order, for a tracker no push ever carried
    body = milestone_body("NEVER-SEEN-1")
    key = parse_envelope(body).dedup_key
    side.runtime.ledger.claim([claim_request(parse_delivery_event(body))])  # type: ignore[arg-type]
    metrics = side.runtime.deps.metrics.registry
    budget = side.settings.not_found_max_retries
    # When its task runs, it is retried while the not-found budget lasts (its IN_TRANSIT
    # may be on the way), neither done nor counted yet
    first = handle(body, key, side.runtime, failures=0, busy=0)
    assert isinstance(first, Retry)
    assert side.runtime.ledger.state(key) in ("claimed", "queued")
    assert metrics.get_sample_value("bwp_milestone_unknown_trackers_total") == 0
    # Then, the budget spent, the event is acknowledged (done) and counted, not parked
    last = handle(body, key, side.runtime, failures=budget, busy=0)
    assert last == "unknown_tracker"
    assert side.runtime.ledger.state(key) == "done"
    assert metrics.get_sample_value("bwp_milestone_unknown_trackers_total") == 1
    assert side.oms.received == []


def test_every_delivery_named_by_the_event_is_synced(side: Side) -> None:
    # Given an event whose resources name two deliveries of one order
    order_id = f"322-INT-{next(_n):05d}"
    side.api.store.add_order(order_id, "bp-int", [("li-1", 1, "d-1"), ("li-2", 1, "d-2")])
    side.api.store.update_delivery(order_id, "d-1", state="DELIVERED")
    side.api.store.update_delivery(order_id, "d-2", state="DELIVERED")
    event = build_event(
        "PACKAGE_DELIVERED", business_product_id="bp-int", order_id=order_id, delivery_id="d-1"
    )
    event["resources"].append(f"businessProduct/bp-int/order/{order_id}/delivery/d-2")
    body = to_body(event)
    key = parse_envelope(body).dedup_key
    # When its one task runs
    assert handle(body, key, side.runtime, failures=0, busy=0) == "pushed"
    # Then both deliveries reached the OMS, and the event is done
    assert sorted(p["deliveryId"] for p in side.pushes(order_id)) == ["d-1", "d-2"]  # type: ignore[type-var]
    assert side.runtime.ledger.state(key) == "done"


def test_a_lock_lost_between_two_push_attempts_stops_the_second(
    side: Side, redis_client: redis.Redis, key_prefix: str
) -> None:
    # Given an OMS whose first answer is a 503, and a newer sync that takes the delivery's
    # lock while that answer is on its way back (a failover lost it, or its keeper died)
    order_id = order(side, "IN_TRANSIT")
    ref = DeliveryRef("bp-int", order_id, "d-1")
    posts: list[bytes] = []

    def oms(request: httpx.Request) -> httpx.Response:
        posts.append(request.content)
        redis_client.set(Keys(key_prefix).delivery_lock(ref), "a-newer-sync")
        return httpx.Response(503)

    client = httpx.Client(transport=httpx.MockTransport(oms))
    deps = replace(
        side.runtime.deps,
        oms=OmsClient(
            client, url="https://oms.invalid/d", signing_secret=None, auth_token=None, attempts=3
        ),
    )
    # When the task pushes
    with pytest.raises(DeliveryBusy, match="lock was lost before a push attempt"):
        route_delivery_event(side.event("PACKAGE_DELIVERY_IN_TRANSIT", order_id), deps)
    # Then the in-call retry never went out: one POST, and nothing recorded
    assert len(posts) == 1
    assert side.runtime.deps.deliveries.last_pushed(ref) is None
    client.close()
