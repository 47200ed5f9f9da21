"""The long-running SQS poller: receive, validate, claim, dispatch — and hold each message
until its event is settled (design.md section 3.1).

SQS stays the source of truth until the OMS has the fact: a message is deleted only when
its event is `done`, when it is a copy of an event this poller holds another copy of, or
when it is parked in the DLQ. Until then it is held, its visibility extended in batches.
Held messages whose ledger record vanished (Redis lost it) are claimed and dispatched
again. Anything not handed off stays in SQS and comes back.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog

from tasks.dispatch import Dispatcher, claim_request
from tasks.errors import LedgerUnavailable, MalformedEvent
from tasks.events.catalog import metric_label
from tasks.events.envelope import Envelope, parse_delivery_event
from tasks.ledger.events import Ledger
from tasks.sqs.dlq import DeadLetters, Parcel
from tasks.sqs.queue import AWS_ERRORS, SqsQueue
from worker.poller.held import Held, HeldMessages
from worker.poller.intake import Candidate, Intake, Verdicts
from worker.poller.metrics import PollerMetrics, Totals

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

log = structlog.get_logger("bwp.poller")

Inbox = queue.Queue[list["MessageTypeDef"] | None]


@dataclass(frozen=True, slots=True)
class PollerConfig:
    queue_url: str
    wait_seconds: int = 20
    visibility_timeout: int = 60
    park_unsupported: bool = False
    max_queue_depth: int = 0
    #: the most messages one poller holds unsettled; intake pauses at this mark
    max_held: int = 5000
    #: seconds between settling ticks (one Redis round trip for everything held)
    settle_interval: float = 1.0
    #: seconds to wait after a failed receive or an unreachable Redis
    error_backoff: float = 2.0
    #: longest pause between probes of an unreachable Redis or broker
    max_backoff: float = 30.0
    #: seconds between repeated "Redis is down" log lines
    outage_log_interval: float = 30.0
    #: how long a stopping poller waits past its long poll for the receive to come back
    shutdown_grace: float = 5.0

    @property
    def extend_margin(self) -> float:
        """Extend a held message's visibility when this little of it is left."""
        return max(self.visibility_timeout / 3, 3 * self.settle_interval)


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
        self._ledger, self._dlq, self._cfg = ledger, dead_letters, config
        self.metrics = metrics or PollerMetrics()
        self._queue = SqsQueue(sqs, config.queue_url, count=self._count_sqs)
        self.held = HeldMessages()
        self._intake = Intake(ledger, dispatcher, self.held, self.metrics)
        self._queue_depth, self._probe, self._clock = queue_depth, probe, clock
        self._last_outage_log = 0.0
        self._in_outage = False
        self._paused_until = 0.0
        self._backoff = config.error_backoff
        self._last_settle = 0.0
        #: SQS API requests made by this poller (tests and benchmarks count them)
        self.sqs_requests = 0

    @property
    def totals(self) -> Totals:
        return self.metrics.totals()

    # --- the loop ---------------------------------------------------------------------
    def run(self, stop: threading.Event, max_polls: int | None = None) -> Totals:
        """Poll until ``stop`` is set (or ``max_polls`` receives); returns the totals.

        A receiver thread long-polls one batch ahead while this thread handles the
        previous one and settles what is held. On stop, in this order: intake stops; the
        in-flight long poll is waited for (up to its wait plus ``shutdown_grace``), since
        it would otherwise take back what is handed back and hide it for the visibility
        timeout; what settled meanwhile is deleted; the rest is handed back (visibility 0).
        """
        log.info("poller_started", queue_url=self._cfg.queue_url)
        inbox: Inbox = queue.Queue(maxsize=1)
        done_receiving = threading.Event()
        receiver = threading.Thread(
            target=self._receive_loop,
            args=(stop, inbox, max_polls, done_receiving),
            name="receiver",
            daemon=True,
        )
        receiver.start()
        while not stop.is_set() and not done_receiving.is_set():
            try:
                messages = inbox.get(timeout=0.1)
            except queue.Empty:
                messages = None
            if messages:
                self._handle_safely(messages, stop)
            self._settle_if_due()
            if not receiver.is_alive() and inbox.empty():
                if not done_receiving.is_set():
                    log.error("receiver_thread_died")
                break
        self._stop(receiver, inbox)
        return self.totals

    def _stop(self, receiver: threading.Thread, inbox: Inbox) -> None:
        deadline = time.monotonic() + self._cfg.wait_seconds + self._cfg.shutdown_grace
        while receiver.is_alive() and time.monotonic() < deadline:
            receiver.join(0.5)
            self._settle_if_due()
        late = self._drain(inbox)
        if late:
            self.handback([m["ReceiptHandle"] for m in late])
        if receiver.is_alive():
            log.warning("receive_in_flight_at_exit", waited=self._cfg.wait_seconds)
        self._settle(final=True)
        unsettled = [h.receipt for h in self.held.all()]
        self.held.drop(unsettled)
        self.handback(unsettled)
        self.metrics.held.set(0)

    def _receive_loop(
        self, stop: threading.Event, inbox: Inbox, max_polls: int | None, done: threading.Event
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
                # received after the stop (the long poll was in flight): hand back at once
                self.handback([m["ReceiptHandle"] for m in messages])
        # wait for the main thread to take the last batch before saying "done"
        while not inbox.empty() and not stop.is_set():
            time.sleep(0.05)
        done.set()

    def _ready_to_receive(self, stop: threading.Event) -> bool:
        """False (after waiting a little) while paused: an outage, backpressure, or as
        many messages held as this poller may hold."""
        if self._paused_until > self._clock():
            stop.wait(min(1.0, self._paused_until - self._clock()))
            return False
        if self._in_outage and not self._dependencies_answer():
            self._pause()
            return False
        self._in_outage = False
        if len(self.held) >= self._cfg.max_held or self._backpressure():
            self.metrics.paused.inc()
            stop.wait(1.0)
            return False
        return True

    def _handle_safely(self, messages: list[MessageTypeDef], stop: threading.Event) -> None:
        try:
            self.handle(messages)
        except Exception:  # the loop survives anything one batch does
            # What was neither deleted nor held comes back after the visibility timeout.
            self.metrics.errors.labels("loop").inc()
            log.exception("batch_failed")
            stop.wait(self._cfg.error_backoff)

    @staticmethod
    def _drain(inbox: Inbox) -> list[MessageTypeDef]:
        found: list[MessageTypeDef] = []
        while True:
            try:
                item = inbox.get_nowait()
            except queue.Empty:
                return found
            found += item or []

    # --- one batch --------------------------------------------------------------------
    def handle(self, messages: list[MessageTypeDef]) -> None:
        """Sort, claim, dispatch, park, delete and hold one received batch."""
        self.metrics.received.inc(len(messages))
        self.metrics.batch_size.observe(len(messages))
        verdicts, candidates = Verdicts(), []
        for message in messages:
            candidate = self._sort(message, verdicts)
            if candidate is not None:
                candidates.append(candidate)
        if candidates:
            try:
                taken = self._intake.take(candidates)
            except LedgerUnavailable as exc:
                self._outage("redis", str(exc))
                taken = Verdicts(release=[c.receipt for c in candidates])
            verdicts = _merge(verdicts, taken)
        self._apply(verdicts)

    def _sort(self, message: MessageTypeDef, verdicts: Verdicts) -> Candidate | None:
        body, receipt = message.get("Body", ""), message["ReceiptHandle"]
        try:
            parsed = parse_delivery_event(body)
        except MalformedEvent as exc:
            log.error("message_malformed", reason=str(exc), message_id=message.get("MessageId"))
            verdicts.park.append((receipt, Parcel(body, "malformed", str(exc))))
            return None
        envelope = parsed if isinstance(parsed, Envelope) else parsed.envelope
        self._observe_age(envelope)
        if isinstance(parsed, Envelope):
            self._unsupported(receipt, body, parsed, verdicts)
            return None
        return Candidate(receipt, claim_request(parsed), body)

    def _unsupported(self, receipt: str, body: str, envelope: Envelope, verdicts: Verdicts) -> None:
        self.metrics.unsupported.labels(metric_label(envelope.detail_type)).inc()
        if self._cfg.park_unsupported:
            reason = f"detail-type {envelope.detail_type[:64]!r} is not handled"
            parcel = Parcel(body, "unsupported", reason, envelope.dedup_key)
            verdicts.park.append((receipt, parcel))
        else:
            log.info("event_unsupported_acknowledged", detail_type=envelope.detail_type[:64])
            verdicts.delete.append(receipt)

    def _apply(self, verdicts: Verdicts) -> None:
        if self._intake.broker_failed:
            self._intake.broker_failed = False
            self._outage("broker", f"{len(verdicts.release)} publishes not confirmed")
        parked = self._park(verdicts.park)
        self._delete(verdicts.delete + parked)
        now = self._clock()
        for candidate in verdicts.hold:
            self.held.add(
                Held(
                    candidate.receipt,
                    candidate.request,
                    candidate.body,
                    visible_at=now + self._cfg.visibility_timeout,
                    received_at=now,
                )
            )
        self.metrics.held.set(len(self.held))
        # Not handed off because Redis or the broker failed: visible again at once, so
        # whichever poller sees its dependencies first takes them (intake is paused here).
        self.handback(verdicts.release)

    # --- settling what is held --------------------------------------------------------
    def _settle_if_due(self) -> None:
        if self.held and self._clock() - self._last_settle >= self._cfg.settle_interval:
            self._settle()

    def _settle(self, *, final: bool = False) -> None:
        """One tick: read every held event's state in one round trip; delete the settled
        messages, claim again those whose record vanished, extend the visibility of the
        rest before it runs out. On the ``final`` tick nothing is dispatched."""
        self._last_settle = self._clock()
        if not self.held:
            return
        keys = self.held.dedup_keys()
        try:
            states = dict(zip(keys, self._ledger.states(keys), strict=True))
        except LedgerUnavailable as exc:
            self._outage("redis", str(exc))
            states = {}
        settled = [h for h in self.held.all() if states.get(h.request.dedup_key) in _SETTLED]
        if not self._dlq.configured:
            # parked without a DLQ: let it come back after its visibility timeout, so that
            # the queue's own redrive policy applies
            let_go = [h for h in settled if states[h.request.dedup_key] == "parked"]
            self.held.drop(h.receipt for h in let_go)
            settled = [h for h in settled if h not in let_go]
        self.held.drop(h.receipt for h in settled)
        self._delete([h.receipt for h in settled])
        for how in (states[h.request.dedup_key] for h in settled):
            self.metrics.settled.labels(how).inc()
        lost = [
            h
            for h in self.held.all()
            if h.request.dedup_key in states and not states[h.request.dedup_key]
        ]
        if lost and not final:
            self._claim_again(lost)
        self._extend()
        self.metrics.held.set(len(self.held))

    def _claim_again(self, lost: list[Held]) -> None:
        candidates = [Candidate(h.receipt, h.request, h.body) for h in lost]
        try:
            verdicts = self._intake.take(candidates, again=True)
        except LedgerUnavailable as exc:
            self._outage("redis", str(exc))
            return
        # held already: only what no longer belongs in the table leaves it
        self.held.drop(verdicts.delete + verdicts.release + [r for r, _ in verdicts.park])
        verdicts.hold = []
        self._apply(verdicts)

    def _extend(self) -> None:
        now = self._clock()
        extend, let_go = self.held.due(now, self._cfg.extend_margin, self._cfg.visibility_timeout)
        if let_go:
            # SQS's 12-hour cap: it comes back as a new receipt and is held again
            self.held.drop(h.receipt for h in let_go)
            log.info("held_past_the_in_flight_cap_let_go", count=len(let_go))
        if not extend:
            return
        failed = set(self._queue.extend([h.receipt for h in extend], self._cfg.visibility_timeout))
        self.held.extended(
            [h for h in extend if h.receipt not in failed], now + self._cfg.visibility_timeout
        )
        if failed:
            # a receipt SQS refuses is stale (the message came back): it is held anew
            # when received again
            self.metrics.errors.labels("extend").inc()
            self.held.drop(failed)

    # --- SQS --------------------------------------------------------------------------
    def _receive(self, stop: threading.Event) -> list[MessageTypeDef] | None:
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

    def _park(self, items: list[tuple[str, Parcel]]) -> list[str]:
        if not items:
            return []
        flags = self._dlq.park([parcel for _, parcel in items])
        if self._dlq.configured:
            self._count_sqs("park", (len(items) + 9) // 10)
        parked: list[str] = []
        for (receipt, parcel), ok in zip(items, flags, strict=True):
            if ok:
                parked.append(receipt)
                self.metrics.parked.labels(parcel.kind).inc()
            else:
                log.error("message_not_parked", kind=parcel.kind, event_key=parcel.event_id)
        return parked

    def _delete(self, receipts: list[str]) -> None:
        # Not deleted: the message comes back and is recognised by the ledger.
        if receipts and self._queue.delete(receipts):
            self.metrics.errors.labels("delete").inc()

    def handback(self, receipts: list[str]) -> None:
        """Make messages visible again at once (not handed off, or shutting down)."""
        if receipts:
            self._queue.release(receipts)
            self.metrics.handed_back.inc(len(receipts))

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


_SETTLED = frozenset({"done", "parked"})


def _merge(first: Verdicts, second: Verdicts) -> Verdicts:
    return Verdicts(
        first.delete + second.delete,
        first.hold + second.hold,
        first.park + second.park,
        first.release + second.release,
    )
