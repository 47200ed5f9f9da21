"""Publish sync tasks to the Celery broker, reporting which publishes were confirmed."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from typing import Any

import redis
import structlog
from celery import Celery
from kombu.exceptions import OperationalError

from config.clients import is_redis_url, make_redis
from config.settings import Settings
from tasks.events.catalog import rank
from tasks.events.envelope import DeliveryEvent, MilestoneEvent
from tasks.keys import DeliveryRef
from tasks.ledger.events import ClaimRequest, QueuedEvent
from tasks.publish.call import SyncCall
from tasks.publish.message import redis_messages, send

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
    """Publishes one sync task per event; ``publish`` says which publishes were confirmed.

    With a Redis broker (the default) a whole batch goes onto the Celery queue's list in
    one LPUSH: one round trip for messages Celery and kombu built (tasks/publish/message.py).
    Publishing each through a producer routed and sent each message on its own and was
    the poller's largest CPU cost (docs/performance.md). Another broker gets its producer.
    """

    def __init__(
        self,
        app: Celery,
        queue: str,
        *,
        broker: redis.Redis | None = None,
        queue_key: str | None = None,
        origin: str | None = None,
    ) -> None:
        self._app, self._queue = app, queue
        #: the messages' ``origin`` header: the poller, unless another publisher names itself
        self._origin = origin or f"bwp-poller@{socket.gethostname()}:{os.getpid()}"
        self._broker, self._queue_key = broker, queue_key
        #: tasks published by this dispatcher (tests count them)
        self.published = 0

    @classmethod
    def for_app(cls, app: Celery, queue: str, *, origin: str | None = None) -> Dispatcher:
        """Publishing onto ``queue`` of ``app``'s broker: its Redis list (the key prefix
        its transport gives every key) through a client of our own, or its producer."""
        url = str(app.conf.broker_url)
        if not is_redis_url(url):
            return cls(app, queue, origin=origin)
        prefix = (app.conf.broker_transport_options or {}).get("global_keyprefix", "")
        return cls(app, queue, broker=make_redis(url), queue_key=prefix + queue, origin=origin)

    @classmethod
    def for_settings(cls, app: Celery, settings: Settings) -> Dispatcher:
        """The poller's: onto the sync queue."""
        return cls.for_app(app, settings.celery_queue)

    def close(self) -> None:
        if self._broker is not None:
            self._broker.close()

    def publish(self, events: Sequence[QueuedEvent]) -> list[bool]:
        """Publish one sync task per event; True = confirmed."""
        if not events:
            return []
        calls = [SyncCall(event.body, event.dedup_key) for event in events]
        if self._broker is None or self._queue_key is None:
            return self._send_each(calls)
        messages = redis_messages(self._app, calls, self._queue, origin=self._origin)
        try:
            self._broker.lpush(self._queue_key, *messages)
        except redis.RedisError as exc:
            log.warning("broker_unavailable", error=type(exc).__name__)
            return [False] * len(events)
        self.published += len(events)
        return [True] * len(events)

    def _send_each(self, calls: Sequence[SyncCall]) -> list[bool]:
        results: list[bool] = []
        try:
            with self._app.producer_or_acquire() as producer:
                for call in calls:
                    results.append(self._send(call, producer))
        except (OperationalError, OSError) as exc:
            log.warning("broker_unavailable", error=type(exc).__name__)
        return results + [False] * (len(calls) - len(results))

    def _send(self, call: SyncCall, producer: Any) -> bool:
        try:
            # as Celery's send_task: the transport's errors raised as kombu's
            with producer.connection._reraise_as_library_errors():
                send(
                    self._app,
                    producer,
                    call,
                    self._queue,
                    origin=self._origin,
                    retry=True,
                    retry_policy=_RETRY_POLICY,
                )
        except (OperationalError, OSError) as exc:
            log.warning("publish_failed", error=type(exc).__name__, event_key=call.dedup_key)
            return False
        self.published += 1
        return True
