"""Publish sync tasks to the Celery broker, reporting which publishes were confirmed."""

from __future__ import annotations

import base64
import json
import os
import socket
import uuid
from collections.abc import Sequence
from typing import Any

import redis
import structlog
from celery import Celery
from kombu.exceptions import OperationalError

from config.clients import make_redis
from config.settings import Settings
from tasks.celery import SYNC_TASK, celery_queue_key
from tasks.events.catalog import rank
from tasks.events.envelope import DeliveryEvent, MilestoneEvent
from tasks.keys import DeliveryRef
from tasks.ledger.events import ClaimRequest, QueuedEvent

log = structlog.get_logger("bwp.dispatch")

# A broker that does not answer within this policy is "down": the caller leaves the
# messages in SQS rather than waiting on it.
_RETRY_POLICY = {"max_retries": 1, "interval_start": 0.1, "interval_step": 0.2, "interval_max": 0.5}


def hidden_argsrepr(body: str, dedup_key: str) -> str:
    """What Flower and Celery's logs show for a sync task's arguments: the body's size,
    never the body (a few KB of an event). Every publish of the task sets it: Celery's
    default would show the body's first 1 KiB."""
    return f"['<event body, {len(body)} characters>', {dedup_key!r}]"


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
    one LPUSH: one round trip, messages in Celery's own protocol (version 2, JSON), so
    that any Celery worker consumes them. ``send_task`` built, routed and sent each
    message on its own and was the poller's largest CPU cost (docs/performance.md).
    Another broker gets ``send_task``.
    """

    def __init__(
        self,
        app: Celery,
        queue: str,
        *,
        broker: redis.Redis | None = None,
        queue_key: str | None = None,
    ) -> None:
        self._app, self._queue = app, queue
        self._broker, self._queue_key = broker, queue_key
        self._origin = f"bwp-poller@{socket.gethostname()}:{os.getpid()}"
        #: tasks published by this dispatcher (tests count them)
        self.published = 0

    @classmethod
    def for_settings(cls, app: Celery, settings: Settings) -> Dispatcher:
        key = celery_queue_key(settings)
        if key is None:
            return cls(app, settings.celery_queue)
        return cls(
            app, settings.celery_queue, broker=make_redis(settings.broker_url), queue_key=key
        )

    def publish(self, events: Sequence[QueuedEvent]) -> list[bool]:
        """Publish one sync task per event; True = confirmed."""
        if not events:
            return []
        if self._broker is None or self._queue_key is None:
            return self._send_each(events)
        messages = [self._message(event) for event in events]
        try:
            self._broker.lpush(self._queue_key, *messages)
        except redis.RedisError as exc:
            log.warning("broker_unavailable", error=type(exc).__name__)
            return [False] * len(events)
        self.published += len(events)
        return [True] * len(events)

    def _message(self, event: QueuedEvent) -> str:
        """A kombu Redis-transport message carrying a Celery protocol 2 task."""
        task_id = str(uuid.uuid4())
        args = [event.body, event.dedup_key]
        body = json.dumps([args, {}, _NO_CANVAS]).encode()
        headers = {
            **_HEADERS,
            "id": task_id,
            "root_id": task_id,
            "argsrepr": hidden_argsrepr(event.body, event.dedup_key),
            "origin": self._origin,
        }
        properties = {
            "correlation_id": task_id,
            "reply_to": "",
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": self._queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        }
        return json.dumps(
            {
                "body": base64.b64encode(body).decode(),
                "content-encoding": "utf-8",
                "content-type": "application/json",
                "headers": headers,
                "properties": properties,
            }
        )

    def _send_each(self, events: Sequence[QueuedEvent]) -> list[bool]:
        results: list[bool] = []
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
                argsrepr=hidden_argsrepr(event.body, event.dedup_key),
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


#: the protocol 2 body's third part: no callbacks, errbacks, chain or chord
_NO_CANVAS = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
#: protocol 2 headers every sync task message shares
_HEADERS: dict[str, Any] = {
    "lang": "py",
    "task": SYNC_TASK,
    "shadow": None,
    "eta": None,
    "expires": None,
    "group": None,
    "group_index": None,
    "retries": 0,
    "timelimit": [None, None],
    "parent_id": None,
    "kwargsrepr": "{}",
    "ignore_result": False,
    "replaced_task_nesting": 0,
    "stamped_headers": None,
    "stamps": {},
}
