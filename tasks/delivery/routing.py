"""Route an event to the deliveries it leads to, each synced through the same ledger, lock
and guard (``tasks.delivery.sync``), all within one deadline for the whole task.

- A delivery event syncs its own delivery, and first any further order/delivery pair
  its resources name (at most MAX_DELIVERIES_PER_EVENT, checked when parsing): one task
  syncs them all, so the poller's one claim per event and the sweep's one body per event
  stay as they are. The event's own delivery goes last, because finishing it marks the
  event `done`.
- A tracker milestone (PACKAGE_TRACKER_MILESTONE_CHANGED) implies no state, so its
  delivery is always queried; milestones of one tracker coalesce (one query per tracker
  per MILESTONE_COALESCE_SECONDS) and spend their own share of the API budget
  (``tasks.ledger.milestones``). Which delivery: the tracker index says, when it knows
  the tracker (and agrees with the order the event names); else, when the event names
  its order, that order is queried and the delivery whose package carries the tracker
  (carrier code compared case-insensitively) is the one; else the tracker is unknown
  (TrackerUnknownYet): its IN_TRANSIT event may be on the way, so the task retries for a
  bounded time before the event is acknowledged and counted (``task_retry``).
"""

from __future__ import annotations

from collections.abc import Iterable

import structlog

from tasks.delivery.outcome import Outcome
from tasks.delivery.snapshot import read_order
from tasks.delivery.sync import Source, SyncDeps, sync_for_event, sync_for_source
from tasks.errors import MilestoneDeferred, TrackerUnknownYet
from tasks.events.envelope import DeliveryEvent, MilestoneEvent
from tasks.http.deadline import Deadline
from tasks.keys import DeliveryRef
from tasks.ledger.events import EventState
from tasks.ledger.milestones import QUERY_NOW, Tracker
from tasks.ledger.trackers import Trackers
from tasks.model.snapshot import Snapshot

log = structlog.get_logger("bwp.sync")


def route(event: DeliveryEvent | MilestoneEvent, deps: SyncDeps) -> Outcome:
    """Sync what ``event`` leads to. Raises like ``sync_for_event``.

    One deadline (``deps.deadline_seconds``) covers everything the task does."""
    deadline = Deadline(deps.deadline_seconds)
    if isinstance(event, MilestoneEvent):
        return route_milestone(event, deps, deadline)
    return route_delivery_event(event, deps, deadline)


def route_delivery_event(
    event: DeliveryEvent, deps: SyncDeps, deadline: Deadline | None = None
) -> Outcome:
    """``sync_for_source`` of every other pair in the resources, then ``sync_for_event``
    of the event's own delivery."""
    deadline = deadline or Deadline(deps.deadline_seconds)
    envelope = event.envelope
    if event.others and deps.ledger.state(envelope.dedup_key) != EventState.DONE:
        source = Source(envelope.id, envelope.detail_type, envelope.time)
        for ref in event.others:
            log.info(
                "related_delivery_synced",
                related=str(ref),
                outcome=str(sync_for_source(ref, deps, source, deadline=deadline)),
            )
    own = DeliveryRef(event.business_product_id, event.order_id, event.delivery_id)
    return sync_for_event(own, envelope, deps, implied_state=event.implied_state, deadline=deadline)


def route_milestone(
    event: MilestoneEvent, deps: SyncDeps, deadline: Deadline | None = None
) -> Outcome:
    """Re-sync the delivery the event's tracker belongs to (see the module docstring).

    Returns the outcome: ``Outcome.COALESCED`` (event marked `done`) when a query of the same
    tracker that began after this event arrived has finished. Raises TrackerUnknownYet
    when no known delivery carries the tracker, MilestoneDeferred while a query of the
    tracker began less than the window ago, and like ``sync_for_event``.
    """
    deadline = deadline or Deadline(deps.deadline_seconds)
    envelope, gate = event.envelope, deps.milestones
    ref = indexed_delivery(event, deps)
    if ref is None and event.order_id is None:
        raise unknown(event)  # no query can tell: only an index entry (its IN_TRANSIT) can
    tracker = Tracker.of(event.business_product_id, event.carrier_code, event.tracking_number)
    admission = gate.admit(tracker, envelope.dedup_key) if gate is not None else QUERY_NOW
    if admission.verdict == "covered":
        deps.metrics.milestones_coalesced.inc()
        deps.ledger.complete(envelope.dedup_key, Outcome.COALESCED, envelope.payload_hash)
        log.info("milestone_coalesced", tracking_number=event.tracking_number)
        return Outcome.COALESCED
    if admission.verdict == "wait":
        deps.metrics.milestones_deferred.inc()
        raise MilestoneDeferred(
            "the tracker's delivery was queried moments ago", retry_after=admission.value
        )
    if ref is None:
        ref = delivery_in_order(event, deps, deadline)
        if ref is None:
            raise unknown(event)
    structlog.contextvars.bind_contextvars(order_id=ref.order_id, delivery_id=ref.delivery_id)
    if gate is not None:
        gate.budget()
    outcome = sync_for_event(ref, envelope, deps, deadline=deadline)
    if gate is not None:
        gate.covered(tracker, admission)
    return outcome


def unknown(event: MilestoneEvent) -> TrackerUnknownYet:
    log.info(
        "milestone_tracker_unknown",
        carrier_code=event.carrier_code,
        tracking_number=event.tracking_number,
        order_named=event.order_id is not None,
    )
    return TrackerUnknownYet(f"no known delivery carries tracker {event.tracking_number}")


def indexed_delivery(event: MilestoneEvent, deps: SyncDeps) -> DeliveryRef | None:
    """The tracker index's delivery, when it agrees with the order the event names."""
    if deps.trackers is None:
        return None
    ref = deps.trackers.lookup(event.business_product_id, event.carrier_code, event.tracking_number)
    return ref if ref is not None and event.order_id in (None, ref.order_id) else None


def delivery_in_order(
    event: MilestoneEvent, deps: SyncDeps, deadline: Deadline
) -> DeliveryRef | None:
    """Query the order the event names (its trackers are indexed on the way) and return
    the delivery whose package carries the event's tracker, if any."""
    assert event.order_id is not None
    if deps.milestones is not None:
        deps.milestones.budget()
    bp = event.business_product_id
    order = deps.api.fetch_order(bp, event.order_id, deadline=deadline)
    read = read_order(order, business_product_id=bp, api_version=deps.api_version, strict=())
    if deps.trackers is not None:
        index_order(deps.trackers, read.snapshots.values())
    for snapshot in read.snapshots.values():
        if carries(snapshot, event.carrier_code, event.tracking_number):
            return delivery_of(snapshot)
    return None


def delivery_of(snapshot: Snapshot) -> DeliveryRef:
    return DeliveryRef(snapshot.business_product_id, snapshot.order_id, snapshot.delivery_id)


def carries(snapshot: Snapshot, carrier_code: str, tracking_number: str) -> bool:
    """The delivery's package has this tracker (a carrier the API leaves out matches)."""
    tracking = snapshot.tracking
    if tracking is None or tracking.tracking_number != tracking_number:
        return False
    return tracking.carrier_code is None or tracking.carrier_code.lower() == carrier_code.lower()


def index_snapshot(trackers: Trackers, snapshot: Snapshot) -> None:
    """Point the snapshot's tracker, if any, at its delivery."""
    tracking = snapshot.tracking
    if tracking is not None and tracking.tracking_number:
        trackers.remember(delivery_of(snapshot), tracking.carrier_code, tracking.tracking_number)


def index_order(trackers: Trackers, snapshots: Iterable[Snapshot]) -> None:
    """``index_snapshot`` for every delivery of an order read."""
    for snapshot in snapshots:
        index_snapshot(trackers, snapshot)
