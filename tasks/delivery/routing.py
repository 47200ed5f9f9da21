"""From an event to the deliveries it leads to, each synced through the same ledger, lock
and guard (``tasks.delivery.sync``).

- A delivery event syncs its own delivery, and first any further order/delivery pair
  its resources name: one task syncs them all, so the poller's one claim per event and
  the sweep's one body per event stay as they are. The event's own delivery goes last,
  because finishing it marks the event `done`.
- A tracker milestone (PACKAGE_TRACKER_MILESTONE_CHANGED) names no order: the tracker
  index says which delivery it belongs to, and that delivery is re-synced (always
  queried: a milestone implies no state). Its twins and repeats cost no extra push, since
  the guard's fingerprint is unchanged. A tracker never pushed is acknowledged and
  counted; a later state event brings the delivery's data anyway.
"""

from __future__ import annotations

from typing import Final

import structlog

from tasks.delivery.sync import (
    Outcome,
    Source,
    SyncDeps,
    sync_delivery,
    sync_event,
    sync_for_event,
)
from tasks.events.envelope import DeliveryEvent, MilestoneEvent

log = structlog.get_logger("bwp.sync")

UNKNOWN_TRACKER: Final = "unknown_tracker"


def sync_parsed(event: DeliveryEvent | MilestoneEvent, deps: SyncDeps) -> str:
    """Sync what ``event`` leads to; returns the outcome's name. Raises like ``sync_event``."""
    if isinstance(event, MilestoneEvent):
        return str(sync_milestone(event, deps))
    return str(sync_every_pair(event, deps))


def sync_every_pair(event: DeliveryEvent, deps: SyncDeps) -> Outcome:
    """``sync_event``, after ``sync_delivery`` of every other pair in the resources."""
    envelope = event.envelope
    if event.others and deps.ledger.state(envelope.dedup_key) != "done":
        source = Source(envelope.id, envelope.detail_type, envelope.time)
        for ref in event.others:
            log.info(
                "related_delivery_synced",
                related=str(ref),
                outcome=str(sync_delivery(ref, deps, source)),
            )
    return sync_event(event, deps)


def sync_milestone(event: MilestoneEvent, deps: SyncDeps) -> Outcome | str:
    """Re-sync the delivery the event's tracker belongs to; ``UNKNOWN_TRACKER`` (event
    marked `done`) when the tracker was never pushed."""
    ref = (
        deps.trackers.lookup(event.business_product_id, event.carrier_code, event.tracking_number)
        if deps.trackers is not None
        else None
    )
    if ref is None:
        deps.metrics.unknown_trackers.inc()
        log.info(
            "milestone_tracker_unknown",
            carrier_code=event.carrier_code,
            tracking_number=event.tracking_number,
        )
        envelope = event.envelope
        deps.ledger.complete(envelope.dedup_key, UNKNOWN_TRACKER, envelope.payload_hash)
        return UNKNOWN_TRACKER
    structlog.contextvars.bind_contextvars(order_id=ref.order_id, delivery_id=ref.delivery_id)
    return sync_for_event(ref, event.envelope, deps)
