"""The long-running SQS poller: receive a batch, validate, dedup, dispatch, delete.

A message is deleted only once its event is owned elsewhere (design.md section 3.1):
published to the broker with its ledger record `queued`, recognised as a duplicate of an
owned event, or parked in the DLQ. Anything else stays in SQS and comes back.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog

from tasks.dispatch import Dispatcher
from tasks.errors import LedgerUnavailable, MalformedEvent
from tasks.events.catalog import metric_label, rank
from tasks.events.envelope import DeliveryEvent, Envelope, parse_delivery_event
from tasks.keys import DeliveryRef
from tasks.ledger.events import Claim, ClaimRequest, Ledger, QueuedEvent
from tasks.sqs.dlq import DeadLetters, Parcel
from tasks.sqs.queue import AWS_ERRORS, SqsQueue
from worker.poller.metrics import PollerMetrics

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

log = structlog.get_logger("bwp.poller")


@dataclass(frozen=True, slots=True)
class PollerConfig:
    queue_url: str
    batch_size: int = 10
    wait_seconds: int = 20
    visibility_timeout: int = 60
    park_unsupported: bool = False
    max_queue_depth: int = 0
    #: seconds to wait after a failed receive or an unreachable Redis
    error_backoff: float = 2.0
    #: longest pause between probes of an unreachable Redis or broker
    max_backoff: float = 30.0
    #: seconds between repeated "Redis is down" log lines
    outage_log_interval: float = 30.0
    #: how long a stopping poller waits for its in-flight receive to come back
    shutdown_grace: float = 5.0


@dataclass
class Totals:
    received: int = 0
    dispatched: int = 0
    duplicates: int = 0
    no_news: int = 0
    parked: int = 0
    unsupported: int = 0
    left_in_queue: int = 0
    polls: int = 0
    handed_back: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


@dataclass
class _Batch:
    """One received batch, sorted into what happens to each message."""

    delete: list[MessageTypeDef] = field(default_factory=list)
    park: list[tuple[MessageTypeDef, Parcel]] = field(default_factory=list)
    claims: list[tuple[MessageTypeDef, ClaimRequest, str]] = field(default_factory=list)
    release: list[MessageTypeDef] = field(default_factory=list)


class Poller:
    def __init__(
        self,
        sqs: SQSClient,
        ledger: Ledger,
        dispatcher: Dispatcher,
        dead_letters: DeadLetters,
        config: PollerConfig,
        *,
        metrics: PollerMetrics | None = None,
        queue_depth: Callable[[], int] | None = None,
        probe: Callable[[], bool] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._ledger, self._dispatcher = ledger, dispatcher
        self._queue = SqsQueue(sqs, config.queue_url, count=self._count_sqs)
        self._dlq, self._cfg = dead_letters, config
        self.metrics = metrics or PollerMetrics()
        self._queue_depth = queue_depth
        self._clock = clock
        self.totals = Totals()
        self._last_outage_log = 0.0
        self._probe = probe
        self._in_outage = False
        self._paused_until = 0.0
        self._backoff = config.error_backoff
        #: SQS API requests made by this poller (tests and benchmarks count them)
        self.sqs_requests = 0

    # --- the loop ---------------------------------------------------------------------
    def run(self, stop: threading.Event, max_polls: int | None = None) -> Totals:
        """Poll until ``stop`` is set (or ``max_polls`` receives); returns the totals.

        A receiver thread long-polls one batch ahead while this thread handles the
        previous one. On stop: the batch in hand is finished, batches received but not
        handled are made visible again, and the in-flight receive gets ``shutdown_grace``
        seconds to come back (its messages are handed back too).
        """
        log.info("poller_started", queue_url=self._cfg.queue_url)
        inbox: queue.Queue[list[MessageTypeDef] | None] = queue.Queue(maxsize=1)
        receiver = threading.Thread(
            target=self._receive_loop, args=(stop, inbox, max_polls), name="receiver", daemon=True
        )
        receiver.start()
        while not stop.is_set():
            try:
                messages = inbox.get(timeout=0.1)
            except queue.Empty:
                if not receiver.is_alive():
                    break
                continue
            if messages is None:
                break
            self._handle_safely(messages, stop)
        receiver.join(self._cfg.shutdown_grace)
        held = self._drain(inbox)
        if held:
            self.release(held)
        if receiver.is_alive():
            log.warning("receive_in_flight_at_exit", grace=self._cfg.shutdown_grace)
        self.totals.handed_back += len(held)
        return self.totals

    def _receive_loop(
        self,
        stop: threading.Event,
        inbox: queue.Queue[list[MessageTypeDef] | None],
        max_polls: int | None,
    ) -> None:
        while not stop.is_set() and (max_polls is None or self.totals.polls < max_polls):
            if not self._ready_to_receive(stop):
                continue
            messages = self._receive(stop)
            if not messages:
                continue
            while not stop.is_set():
                try:
                    inbox.put(messages, timeout=0.1)
                    break
                except queue.Full:
                    continue
            else:
                self.release(messages)  # received after the stop: hand back at once
                self.totals.handed_back += len(messages)
        with suppress(queue.Full):
            inbox.put(None, timeout=1.0)

    def _ready_to_receive(self, stop: threading.Event) -> bool:
        """False (after waiting a little) while paused for an outage or backpressure."""
        if self._paused_until > self._clock():
            stop.wait(min(1.0, self._paused_until - self._clock()))
            return False
        if self._in_outage and not self._dependencies_answer():
            self._pause()
            return False
        self._in_outage = False
        if self._backpressure():
            self.metrics.paused.inc()
            stop.wait(1.0)
            return False
        return True

    def _handle_safely(self, messages: list[MessageTypeDef], stop: threading.Event) -> None:
        try:
            self.handle(messages)
        except Exception:  # the loop survives anything one batch does
            # What was not deleted stays in SQS and comes back after the visibility timeout.
            self.metrics.errors.labels("loop").inc()
            log.exception("batch_failed")
            stop.wait(self._cfg.error_backoff)

    @staticmethod
    def _drain(inbox: queue.Queue[list[MessageTypeDef] | None]) -> list[MessageTypeDef]:
        held: list[MessageTypeDef] = []
        while True:
            try:
                item = inbox.get_nowait()
            except queue.Empty:
                return held
            held += item or []

    # --- one batch --------------------------------------------------------------------
    def handle(self, messages: list[MessageTypeDef]) -> None:
        """Sort, claim, dispatch, park and delete one received batch."""
        self.totals.received += len(messages)
        self.metrics.received.inc(len(messages))
        self.metrics.batch_size.observe(len(messages))
        batch = _Batch()
        for message in messages:
            self._sort(message, batch)
        try:
            self._claim_and_dispatch(batch)
        except LedgerUnavailable as exc:
            self._outage("redis", str(exc))
            settled = {id(m) for m in batch.delete} | {id(m) for m, _ in batch.park}
            batch.release = [m for m, _, _ in batch.claims if id(m) not in settled]
        parked = self._park(batch.park)
        self._delete(batch.delete + parked)
        # Not handed off because Redis or the broker failed: visible again at once, so
        # whichever poller sees its dependencies first takes them (intake is paused here).
        self.release(batch.release)
        self.totals.handed_back += len(batch.release)
        self.totals.left_in_queue += len(messages) - len(batch.delete) - len(parked)

    def _sort(self, message: MessageTypeDef, batch: _Batch) -> None:
        body = message.get("Body", "")
        try:
            parsed = parse_delivery_event(body)
        except MalformedEvent as exc:
            log.error("message_malformed", reason=str(exc), message_id=message.get("MessageId"))
            batch.park.append((message, Parcel(body, "malformed", str(exc))))
            return
        envelope = parsed.envelope if isinstance(parsed, DeliveryEvent) else parsed
        self._observe_age(envelope)
        if isinstance(parsed, Envelope):
            self._unsupported(message, parsed, batch)
            return
        ref = DeliveryRef(parsed.business_product_id, parsed.order_id, parsed.delivery_id)
        request = ClaimRequest(
            envelope.dedup_key, envelope.payload_hash, ref, rank(parsed.implied_state)
        )
        batch.claims.append((message, request, body))

    def _unsupported(self, message: MessageTypeDef, envelope: Envelope, batch: _Batch) -> None:
        self.totals.unsupported += 1
        self.metrics.unsupported.labels(metric_label(envelope.detail_type)).inc()
        if self._cfg.park_unsupported:
            reason = f"detail-type {envelope.detail_type[:64]!r} is not handled"
            batch.park.append(
                (
                    message,
                    Parcel(message.get("Body", ""), "unsupported", reason, envelope.dedup_key),
                )
            )
        else:
            log.info("event_unsupported_acknowledged", detail_type=envelope.detail_type[:64])
            batch.delete.append(message)

    def _claim_and_dispatch(self, batch: _Batch) -> None:
        if not batch.claims:
            return
        # A message repeated inside one batch follows its first copy's fate.
        leaders: dict[str, tuple[MessageTypeDef, ClaimRequest, str]] = {}
        followers: list[tuple[MessageTypeDef, ClaimRequest, str]] = []
        for claim in batch.claims:
            if claim[1].dedup_key in leaders:
                followers.append(claim)
            else:
                leaders[claim[1].dedup_key] = claim
        batch.claims = list(leaders.values())
        self._claim_leaders(batch)
        deleted = {id(m) for m in batch.delete}
        for message, request, body in followers:
            leader = leaders[request.dedup_key]
            if leader[1].payload_hash != request.payload_hash:
                reason = "same event id arrived in the same batch with a different payload"
                batch.park.append((message, Parcel(body, "conflict", reason, request.dedup_key)))
            elif id(leader[0]) in deleted:
                self._count_duplicate(Claim.DUPLICATE)
                batch.delete.append(message)

    def _claim_leaders(self, batch: _Batch) -> None:
        answers = self._ledger.claim([request for _, request, _ in batch.claims])
        fresh: list[tuple[MessageTypeDef, QueuedEvent]] = []
        for (message, request, body), answer in zip(batch.claims, answers, strict=True):
            if answer is Claim.NEW:
                fresh.append((message, QueuedEvent(request.dedup_key, body)))
            elif answer in (Claim.DUPLICATE, Claim.NO_NEWS):
                self._count_duplicate(answer)
                batch.delete.append(message)
            elif answer is Claim.CONFLICT:
                log.error("event_id_conflict", event_key=request.dedup_key)
                reason = "same event id arrived earlier with a different payload"
                batch.park.append((message, Parcel(body, "conflict", reason, request.dedup_key)))
            else:
                self.metrics.inflight.inc()
        if fresh:
            self._dispatch(fresh, batch)

    def _count_duplicate(self, answer: Claim) -> None:
        if answer is Claim.NO_NEWS:
            self.totals.no_news += 1
            self.metrics.twins.inc()
        else:
            self.totals.duplicates += 1
            self.metrics.duplicates.inc()

    def _dispatch(self, fresh: list[tuple[MessageTypeDef, QueuedEvent]], batch: _Batch) -> None:
        confirmed = self._dispatcher.publish([event for _, event in fresh])
        sent = [(m, e) for (m, e), ok in zip(fresh, confirmed, strict=True) if ok]
        failed = [e.dedup_key for (_, e), ok in zip(fresh, confirmed, strict=True) if not ok]
        if failed:
            batch.release.extend(m for (m, _), ok in zip(fresh, confirmed, strict=True) if not ok)
            self._outage("broker", f"{len(failed)} publishes not confirmed")
            self._ledger.release_claims(failed)
        # Only a `queued` record lets the sweep recover a lost task: delete after it.
        self._ledger.mark_queued([event for _, event in sent])
        batch.delete.extend(message for message, _ in sent)
        self.totals.dispatched += len(sent)
        self.metrics.dispatched.inc(len(sent))

    # --- SQS --------------------------------------------------------------------------
    def _receive(self, stop: threading.Event) -> list[MessageTypeDef] | None:
        self.totals.polls += 1
        try:
            messages = self._queue.receive(
                wait_seconds=self._cfg.wait_seconds,
                visibility_timeout=self._cfg.visibility_timeout,
            )
        except AWS_ERRORS as exc:
            self.metrics.errors.labels("receive").inc()
            log.warning("receive_failed", error=type(exc).__name__)
            stop.wait(self._cfg.error_backoff)
            return None
        self.metrics.beat(self._clock())
        return messages

    def _park(self, items: list[tuple[MessageTypeDef, Parcel]]) -> list[MessageTypeDef]:
        if not items:
            return []
        flags = self._dlq.park([parcel for _, parcel in items])
        if self._dlq.configured:
            self._count_sqs("park", (len(items) + 9) // 10)
        parked: list[MessageTypeDef] = []
        for (message, parcel), ok in zip(items, flags, strict=True):
            if ok:
                parked.append(message)
                self.totals.parked += 1
                self.totals.by_kind[parcel.kind] = self.totals.by_kind.get(parcel.kind, 0) + 1
                self.metrics.parked.labels(parcel.kind).inc()
            else:
                log.error(
                    "message_not_parked", kind=parcel.kind, message_id=message.get("MessageId")
                )
        return parked

    def _delete(self, messages: list[MessageTypeDef]) -> None:
        # Not deleted: the message comes back and is recognised as a duplicate.
        if self._queue.delete([m["ReceiptHandle"] for m in messages]):
            self.metrics.errors.labels("delete").inc()

    def release(self, messages: list[MessageTypeDef]) -> None:
        """Make held messages visible again at once (shutdown hands them back)."""
        self._queue.release([m["ReceiptHandle"] for m in messages])

    def _count_sqs(self, action: str, requests: int = 1) -> None:
        self.sqs_requests += requests
        self.metrics.sqs_requests.labels(action).inc(requests)

    # --- health -----------------------------------------------------------------------
    def _backpressure(self) -> bool:
        if not self._cfg.max_queue_depth or self._queue_depth is None:
            return False
        try:
            return self._queue_depth() > self._cfg.max_queue_depth
        except Exception as exc:  # noqa: BLE001 - an unknown depth must not stop intake
            log.warning("queue_depth_unknown", error=type(exc).__name__)
            return False

    def _observe_age(self, envelope: Envelope) -> None:
        try:
            sent = datetime.fromisoformat(envelope.time.replace("Z", "+00:00"))
        except ValueError:
            return
        if sent.tzinfo is None:
            sent = sent.replace(tzinfo=UTC)
        self.metrics.event_age.observe(max(0.0, self._clock() - sent.timestamp()))

    def _outage(self, what: str, error: str) -> None:
        """Redis or the broker is down: stop intake until ``probe`` says it is back.

        Receiving on would only cycle messages through their visibility timeout and
        count receives towards the redrive policy; paused, they wait in SQS untouched.
        """
        self.metrics.errors.labels(what).inc()
        self._in_outage = True
        self._paused_until = self._clock() + self._backoff
        now = self._clock()
        if now - self._last_outage_log >= self._cfg.outage_log_interval:
            self._last_outage_log = now
            log.error("dependency_unavailable_intake_paused", dependency=what, error=error)

    def _pause(self) -> None:
        self._backoff = min(self._backoff * 2, self._cfg.max_backoff)
        self._paused_until = self._clock() + self._backoff

    def _dependencies_answer(self) -> bool:
        if self._probe is None:
            return True
        try:
            ok = self._probe()
        except Exception:  # noqa: BLE001 - a failing probe means "not yet"
            ok = False
        if ok:
            self._backoff = self._cfg.error_backoff
            log.info("dependencies_back_intake_resumed")
        return ok
