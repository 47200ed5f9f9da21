"""Sync one delivery to the OMS: query the order, guard, push, finish in the ledger.

- ``sync_for_event``: the delivery an event leads to (``tasks.delivery.routing`` says
  which), under its lock; finishing it marks the event `done`;
- ``sync_for_source``: a delivery no event of its own names (an event's other pairs,
  reconciliation), under its lock;
- ``sync_order``: every delivery of an order (``bwp-worker sync-order``).

Collaborators are passed in (``SyncDeps``), so tests drive them with real Redis and
sandbox servers and no Celery at all.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from tasks.delivery.guard import Decision, covers, decide
from tasks.delivery.outcome import Outcome
from tasks.delivery.snapshot import read_order
from tasks.errors import ApiBehindEvent, OrderNotVisibleYet
from tasks.events.catalog import TERMINAL_STATES, DeliveryState, rank
from tasks.events.envelope import Envelope
from tasks.http.circuit import API, OMS, Circuits
from tasks.http.deadline import Deadline
from tasks.keys import DeliveryRef
from tasks.ledger.deliveries import DeliveryStates, Lease, Record
from tasks.ledger.events import Ledger
from tasks.ledger.milestones import MilestoneGate
from tasks.ledger.trackers import Trackers
from tasks.metrics import TaskMetrics
from tasks.model.pushed import Pushed
from tasks.model.snapshot import Snapshot
from tasks.oms.payload import delivery_update, rfc3339

log = structlog.get_logger("bwp.sync")


class OrderSource(Protocol):
    def reserve(self) -> None: ...

    def fetch_order(
        self,
        business_product_id: str,
        order_id: str,
        *,
        deadline: Deadline | None = None,
        reserved: bool = False,
    ) -> dict[str, Any]: ...


class Pusher(Protocol):
    def push(
        self,
        body: dict[str, Any],
        *,
        deadline: Deadline | None = None,
        still_held: Callable[[], bool] | None = None,
    ) -> int: ...


@dataclass(frozen=True, slots=True)
class SyncDeps:
    ledger: Ledger
    deliveries: DeliveryStates
    api: OrderSource
    oms: Pusher
    api_version: str
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    #: seconds one sync may take in all (HTTP calls end by then: TASK_DEADLINE_SECONDS)
    deadline_seconds: float = 120.0
    #: where pushed tracking numbers are indexed for milestone events (None: not indexed)
    trackers: Trackers | None = None
    metrics: TaskMetrics = field(default_factory=TaskMetrics)
    #: the shared circuits of the dependencies (None: operators' tools, some tests)
    circuits: Circuits | None = None

    def hold_back(self) -> None:
        """DependencyDown before anything is spent while the OMS's or the API's circuit is
        open and being probed: no order query for a push that cannot go out."""
        if self.circuits is not None:
            self.circuits.hold_back(OMS, API)

    #: milestone coalescing and the milestones' share of the API budget (None: neither)
    milestones: MilestoneGate | None = None


@dataclass(frozen=True, slots=True)
class Source:
    """What led to a push: the OMS sees it as ``sourceEvent``."""

    id: str
    detail_type: str
    time: str


def synthetic_source(detail_type: str, now: datetime) -> Source:
    """A source for pushes no event led to (reconciliation, ``sync-order``)."""
    return Source(f"{detail_type.lower()}-{uuid.uuid4()}", detail_type, rfc3339(now))


def sync_for_event(
    ref: DeliveryRef,
    envelope: Envelope,
    deps: SyncDeps,
    *,
    implied_state: DeliveryState | None = None,
    deadline: Deadline | None = None,
) -> Outcome:
    """Bring the OMS up to date with delivery ``ref`` for the event in ``envelope``, and
    mark the event `done` in the ledger when finished.

    ``implied_state``: the state the event announces (None for an event that implies
    none, a tracker milestone: then the order is always queried). Raises ApiBehindEvent
    (nothing pushed, the event left open) while the API shows less than the event
    announces, another RetryableError when a later attempt may succeed, a PermanentError
    when none can. ``deadline``: the task's, when it does more than this (else one of
    ``deps.deadline_seconds`` from now).
    """
    key = envelope.dedup_key
    implied = rank(implied_state) if implied_state is not None else -1
    deadline = deadline or Deadline(deps.deadline_seconds)
    deps.hold_back()
    # The rate-limit slot and the token before the lock: no lock waits on the limiter.
    deps.api.reserve()
    lease = deps.deliveries.begin(ref, key)
    if lease is None:
        return Outcome.ALREADY_DONE
    try:
        if implied_state is not None and lease.shows(implied, implied_state):
            deps.deliveries.finish(lease, complete=(key, Outcome.NO_NEWS, envelope.payload_hash))
            return Outcome.NO_NEWS
        snapshot = _read_snapshot(ref, deps, deadline)
        if implied_state is not None and not covers(snapshot.state, implied_state):
            # A read lag: pushing it could show the OMS less than the event's fact (after
            # a Redis loss, even below what was pushed), and closing the event would lose
            # that fact. Neither: retry, then park with both states.
            raise ApiBehindEvent(
                f"order API shows {snapshot.state} for an event announcing {implied_state}"
            )
        outcome, record = _apply(
            snapshot,
            lease,
            Source(envelope.id, envelope.detail_type, envelope.time),
            deps,
            deadline,
        )
        deps.deliveries.finish(
            lease, record=record, complete=(key, str(outcome), envelope.payload_hash)
        )
    except BaseException:
        deps.deliveries.release(lease)
        raise
    return outcome


def sync_for_source(
    ref: DeliveryRef,
    deps: SyncDeps,
    source: Source,
    *,
    deadline: Deadline | None = None,
    seen: Callable[[Snapshot], None] | None = None,
) -> Outcome:
    """Query the order and push the delivery's snapshot if it changed (same guard).

    The query happens under the delivery's lock, so a concurrent event task cannot push
    a newer snapshot between this read and this push. Raises like ``sync_for_event``.
    ``seen`` is called with the snapshot read, whatever the outcome (reconciliation
    re-indexes trackers with it).
    """
    deadline = deadline or Deadline(deps.deadline_seconds)
    deps.hold_back()
    deps.api.reserve()
    lease = deps.deliveries.begin(ref)
    assert lease is not None  # no event: never "already done"
    try:
        snapshot = _read_snapshot(ref, deps, deadline)
        if seen is not None:
            seen(snapshot)
        outcome, record = _apply(snapshot, lease, source, deps, deadline)
        deps.deliveries.finish(lease, record=record)
    except BaseException:
        deps.deliveries.release(lease)
        raise
    return outcome


def sync_order(
    business_product_id: str, order_id: str, deps: SyncDeps, source: Source
) -> dict[str, Outcome]:
    """Find the order's deliveries, then ``sync_for_source`` each one.

    Used by ``bwp-worker sync-order``: one query to list the deliveries, then one per
    delivery under its lock. Raises like ``sync_for_event``.
    """
    delivery_ids = sorted(_read_snapshots(business_product_id, order_id, deps))
    return {
        delivery_id: sync_for_source(
            DeliveryRef(business_product_id, order_id, delivery_id), deps, source
        )
        for delivery_id in delivery_ids
    }


def _read_snapshot(ref: DeliveryRef, deps: SyncDeps, deadline: Deadline) -> Snapshot:
    snapshot = _read_snapshots(
        ref.business_product_id,
        ref.order_id,
        deps,
        strict={ref.delivery_id},
        deadline=deadline,
        reserved=True,
    ).get(ref.delivery_id)
    if snapshot is None:
        # A PENDING delivery can split into new ids, and an event can race the order.
        raise OrderNotVisibleYet(f"delivery {ref.delivery_id} is not on order {ref.order_id}")
    return snapshot


def _read_snapshots(
    business_product_id: str,
    order_id: str,
    deps: SyncDeps,
    *,
    strict: set[str] | None = None,
    deadline: Deadline | None = None,
    reserved: bool = False,
) -> dict[str, Snapshot]:
    """The order's snapshots. Only the ``strict`` deliveries (the event's) must parse:
    another one holding a state or reason the worker does not know is skipped, logged
    and counted (buy-with-prime-api.md section 4: the preview API may add values)."""
    read = read_order(
        deps.api.fetch_order(business_product_id, order_id, deadline=deadline, reserved=reserved),
        business_product_id=business_product_id,
        api_version=deps.api_version,
        strict=strict or (),
    )
    for delivery_id, why in read.skipped.items():
        deps.metrics.siblings_skipped.inc()
        log.warning("sibling_delivery_skipped", sibling_delivery_id=delivery_id, reason=why)
    return read.snapshots


def _apply(
    snapshot: Snapshot, lease: Lease, source: Source, deps: SyncDeps, deadline: Deadline
) -> tuple[Outcome, Record | None]:
    """Push ``snapshot`` if the guard allows; returns the outcome and what to record.

    Raises DeliveryBusy, without pushing, when the lease's lock may be another's by now.
    """
    ref, last = lease.ref, lease.last
    fingerprint = snapshot.idempotency_key
    decision = decide(fingerprint, snapshot.rank, last)
    if decision is Decision.UNCHANGED:
        return Outcome.UNCHANGED, None
    if decision is Decision.BACKWARDS:
        log.warning(
            "snapshot_backwards_skipped",
            delivery=str(ref),
            state=snapshot.state,
            pushed_rank=last.rank if last else None,
        )
        return Outcome.BACKWARDS, None
    body = delivery_update(
        snapshot,
        event_id=source.id,
        detail_type=source.detail_type,
        event_time=source.time,
        observed_at=deps.now(),
    )
    # Each attempt goes out only while the lock is still this sync's (checked in Redis): a
    # newer sync may hold it otherwise, and an attempt now could land an older snapshot last.
    status = deps.oms.push(
        body, deadline=deadline, still_held=lambda: deps.deliveries.confirm(lease)
    )
    log.info(
        "delivery_pushed",
        delivery=str(ref),
        state=snapshot.state,
        oms_status=status,
        idempotency_key=fingerprint,
    )
    tracking, tracker = snapshot.tracking, None
    if deps.trackers is not None and tracking is not None and tracking.tracking_number:
        key = deps.trackers.entry(ref, tracking.carrier_code, tracking.tracking_number)
        tracker = (key, deps.trackers.ttl) if key else None
    record = Record(
        Pushed(fingerprint, snapshot.rank),
        snapshot.state.value,
        terminal=snapshot.state in TERMINAL_STATES,
        tracker=tracker,
    )
    return Outcome.PUSHED, record
