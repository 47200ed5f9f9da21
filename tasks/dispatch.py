"""Publish sync tasks to the Celery broker, reporting which publishes were confirmed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
from celery import Celery
from kombu.exceptions import OperationalError

from tasks.celery import SYNC_TASK
from tasks.events.catalog import rank
from tasks.events.envelope import DeliveryEvent, MilestoneEvent
from tasks.keys import DeliveryRef
from tasks.ledger.events import ClaimRequest, QueuedEvent

log = structlog.get_logger("bwp.dispatch")

# A broker that does not answer within this policy is "down": the caller leaves the
# messages in SQS rather than waiting on it.
_RETRY_POLICY = {"max_retries": 1, "interval_start": 0.1, "interval_step": 0.2, "interval_max": 0.5}


def claim_request(event: DeliveryEvent | MilestoneEvent) -> ClaimRequest:
    """The poller's claim of an event to dispatch.

    It names the delivery and the rank of the implied state (the ledger's "no news"
    shortcut) only when the event names exactly one delivery. A milestone's delivery is
    known only to the task (through the tracker index), and an event naming several
    deliveries must reach the task even when one of them already shows the state.
    """
    envelope = event.envelope
    if isinstance(event, MilestoneEvent) or event.others:
        return ClaimRequest(envelope.dedup_key, envelope.payload_hash, None, -1)
    ref = DeliveryRef(event.business_product_id, event.order_id, event.delivery_id)
    state = event.implied_state
    return ClaimRequest(envelope.dedup_key, envelope.payload_hash, ref, rank(state), state)


class Dispatcher:
    def __init__(self, app: Celery, queue: str) -> None:
        self._app, self._queue = app, queue
        #: tasks published by this dispatcher (tests count them)
        self.published = 0

    def publish(self, events: Sequence[QueuedEvent]) -> list[bool]:
        """Publish one sync task per event over one broker connection; True = confirmed."""
        results: list[bool] = []
        if not events:
            return results
        try:
            with self._app.producer_or_acquire() as producer:
                for event in events:
                    results.append(self._send(event, producer))
        except (OperationalError, OSError) as exc:
            log.warning("broker_unavailable", error=type(exc).__name__)
        return results + [False] * (len(events) - len(results))

    def _send(self, event: QueuedEvent, producer: Any) -> bool:
        try:
            self._app.send_task(
                SYNC_TASK,
                args=[event.body, event.dedup_key],
                queue=self._queue,
                producer=producer,
                retry=True,
                retry_policy=_RETRY_POLICY,
            )
        except (OperationalError, OSError) as exc:
            log.warning("publish_failed", error=type(exc).__name__, event_key=event.dedup_key)
            return False
        self.published += 1
        return True
