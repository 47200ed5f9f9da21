"""The long-running SQS poller: receive, validate, claim, dispatch — and hold each message
until its event is settled (design.md section 3.1).

SQS stays the source of truth until the OMS has the fact: a message is deleted only when
its event is `done`, when it is a copy of an event this poller holds another copy of (by
MessageId), or when it is parked in the DLQ. Until then it is held, its visibility
extended in batches. Each settling tick asks of every held event whether it is settled,
worked on by a live task, or orphaned (worker/poller/settle.py), and dispatches the
orphans again. Anything not handed off stays in SQS and comes back.

SQS calls on this thread (delete, extend, release, park) go through a client with short
timeouts and one retry (config.clients.SQS_CONTROL_WORST_SECONDS), so that a stalled SQS
cannot hold the loop past the extension margin; the long poll runs on its own thread.

Who owns what. Two threads run a poller: the loop thread (the one that calls ``run``)
and the receiver thread (worker/poller/receiver.py). The loop thread owns the held table,
the pending deletes, the intake, the settler, the shared gauges, the control SQS client
(delete, extend, release, park: every hand-back happens here, a batch received after the
stop included) and its count of SQS requests. The receiver thread owns the long-poll SQS
client, its count of SQS requests and the gate's pause (outage, backoff, probes;
worker/poller/gate.py). Between them: batches go to the loop thread through the
receiver's ``inbox`` (one batch ahead) and, once stopping, its ``late`` queue; outages go
to the receiver through the gate's queue, and the held level (messages, bytes) under the
gate's lock; ``sqs_requests`` sums the two counts on read. Shared as they are, being
thread-safe: the ``stop`` and ``done`` events, the metrics (prometheus_client takes a lock;
``/healthz`` reads the heartbeat gauge from the metrics server's threads) and the Redis
clients (a redis-py client is a pool: the receiver's probe PINGs the ledger's client, and
the Celery queue's depth is read by both threads).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import redis
import structlog

from tasks.dispatch import Dispatcher
from tasks.errors import LedgerUnavailable
from tasks.http.circuit import Circuits
from tasks.ledger.events import Ledger
from tasks.ledger.runs import JobRuns
from tasks.sqs.dlq import DeadLetters, Parcel
from tasks.sqs.queue import SqsQueue
from worker.poller.config import PollerConfig
from worker.poller.deletes import PendingDeletes
from worker.poller.gate import IntakeGate
from worker.poller.gauges import SharedGauges
from worker.poller.held import Held, HeldMessages
from worker.poller.intake import Intake, Verdicts
from worker.poller.metrics import PollerMetrics, Totals
from worker.poller.receiver import Receiver
from worker.poller.settle import Settler
from worker.poller.throttle import Throttle

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

log = structlog.get_logger("bwp.poller")

#: seconds between settling ticks while few messages are held (a settled message leaves
#: SQS this soon, so a bounded in-flight window turns over quickly)
SETTLE_FLOOR = 0.02
#: seconds the idle loop waits for a batch when nothing is held
IDLE_WAIT = 0.1


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
        control_sqs: SQSClient | None = None,
        job_runs: JobRuns | None = None,
        circuits: Circuits | None = None,
    ) -> None:
        self._ledger, self._dlq, self._cfg = ledger, dead_letters, config
        self.metrics = metrics or PollerMetrics()
        # the loop's own SQS calls on a client with short timeouts (the long poll: receiver)
        self._queue = SqsQueue(control_sqs or sqs, config.queue_url, count=self._count_sqs)
        #: SQS requests made by the loop thread (the receiver counts its own)
        self._loop_requests = 0
        self.held = HeldMessages()
        self._intake = Intake(
            ledger,
            dispatcher,
            self.held,
            self.metrics,
            park_unsupported=config.park_unsupported,
            clock=clock,
            max_deliveries=config.max_deliveries,
        )
        self._clock = clock
        self._gate = IntakeGate(
            self.metrics,
            error_backoff=config.error_backoff,
            max_backoff=config.max_backoff,
            outage_log_interval=config.outage_log_interval,
            max_queue_depth=config.max_queue_depth,
            max_held=config.max_held,
            max_held_bytes=config.max_held_bytes,
            queue_depth=queue_depth,
            probe=probe,
            clock=clock,
        )
        self._last_settle = 0.0
        #: no settling tick before this (a tick failed)
        self._settle_after = 0.0
        self._tick_failures = Throttle(config.outage_log_interval, clock)
        #: the loop ended because a part of it died, not because it was told to stop
        self.failed = False
        self._deletes = PendingDeletes(self._queue.delete, clock=clock)
        self._last_batch_at = 0.0
        self._settler = Settler(
            held=self.held,
            ledger=ledger,
            intake=self._intake,
            gate=self._gate,
            metrics=self.metrics,
            queue=self._queue,
            config=config,
            dlq_configured=dead_letters.configured,
            delete=self._delete,
            park=self._park,
            apply=self._apply,
            queue_depth=queue_depth,
            clock=clock,
        )
        self._receiver = Receiver(sqs, self._gate, self.metrics, config)
        self._gauges = SharedGauges(self.metrics, job_runs=job_runs, circuits=circuits, clock=clock)

    @property
    def totals(self) -> Totals:
        return self.metrics.totals()

    @property
    def sqs_requests(self) -> int:
        """SQS API requests made by this poller (tests and benchmarks count them)."""
        return self._receiver.requests + self._loop_requests

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
        receiver = self._receiver
        receiver.start(stop, max_polls)
        while not stop.is_set() and not receiver.done.is_set():
            wait = SETTLE_FLOOR if self.held or self._deletes else IDLE_WAIT
            messages = receiver.next_batch(wait)
            if messages:
                self._handle_safely(messages, stop)
            self._settle_if_due()
            self._flush_deletes()
            self._gauges.refresh()
            if not receiver.is_alive() and receiver.inbox.empty():
                if not receiver.done.is_set():
                    self.failed = True
                    log.error("receiver_thread_died")
                break
            self._gate.holding(len(self.held), self.held.bytes)
            # alive, whether receiving or deliberately paused (/healthz follows this)
            self.metrics.beat(self._clock())
        self._stop(receiver)
        return self.totals

    def _stop(self, receiver: Receiver) -> None:
        deadline = time.monotonic() + self._cfg.wait_seconds + self._cfg.shutdown_grace
        while receiver.is_alive() and time.monotonic() < deadline:
            receiver.join(0.5)
            self._settle_if_due()
        unhandled = receiver.leftovers()
        if unhandled:
            self.handback([m["ReceiptHandle"] for m in unhandled])
        if receiver.is_alive():
            log.warning("receive_in_flight_at_exit", waited=self._cfg.wait_seconds)
        self._settle(final=True)
        self._flush_deletes(force=True)
        unsettled = self.held.all()
        self.held.drop(h.message_id for h in unsettled)
        self.handback([h.receipt for h in unsettled])
        self.metrics.held.set(0)

    def _handle_safely(self, messages: list[MessageTypeDef], stop: threading.Event) -> None:
        try:
            self.handle(messages)
        except Exception:  # the loop survives anything one batch does
            # What was neither deleted nor held comes back after the visibility timeout.
            self.metrics.errors.labels("loop").inc()
            log.exception("batch_failed")
            stop.wait(self._cfg.error_backoff)

    # --- one batch --------------------------------------------------------------------
    def handle(self, messages: list[MessageTypeDef]) -> None:
        """Sort, claim, dispatch, park, delete and hold one received batch."""
        self._last_batch_at = self._clock()
        self.metrics.received.inc(len(messages))
        self.metrics.batch_size.observe(len(messages))
        verdicts, candidates = Verdicts(), []
        for message in self._new_receipts_of_held(messages):
            candidate = self._intake.sort(message, verdicts)
            if candidate is not None:
                candidates.append(candidate)
        if candidates:
            try:
                taken = self._intake.take(candidates)
            except LedgerUnavailable as exc:
                self._gate.outage("redis", str(exc))
                taken = Verdicts(release=[c.receipt for c in candidates])
            verdicts = verdicts.merged(taken)
        self._apply(verdicts)

    def _new_receipts_of_held(self, messages: list[MessageTypeDef]) -> list[MessageTypeDef]:
        """The messages not held already. A held message received again (SQS delivers at
        least once; or its visibility lapsed) keeps being held under its new receipt, the
        only one SQS still honours: deleting it would delete the event's only copy."""
        fresh: list[MessageTypeDef] = []
        now = self._clock()
        for message in messages:
            message_id = message.get("MessageId", "")
            vis = self._cfg.visibility_timeout
            if message_id and self.held.received_again(
                message_id, message["ReceiptHandle"], now, vis
            ):
                self.metrics.received_again.inc()
                log.warning("held_message_received_again", message_id=message_id)
            else:
                fresh.append(message)
        return fresh

    def _apply(self, verdicts: Verdicts) -> None:
        if self._intake.broker_failed:
            self._intake.broker_failed = False
            self._gate.outage("broker", f"{len(verdicts.release)} publishes not confirmed")
        parked = self._park(verdicts.park)
        self._delete(verdicts.delete + parked)
        now = self._clock()
        for candidate in verdicts.hold:
            self.held.add(
                Held(
                    candidate.message_id,
                    candidate.receipt,
                    candidate.request,
                    candidate.body,
                    visible_at=now + self._cfg.visibility_timeout,
                    received_at=now,
                    dispatched_at=now,
                )
            )
        self.metrics.held.set(len(self.held))
        # Not handed off because Redis or the broker failed: visible again at once, so
        # whichever poller sees its dependencies first takes them (intake is paused here).
        self.handback(verdicts.release)

    # --- settling what is held --------------------------------------------------------
    def _settle(self, *, final: bool = False) -> None:
        self._last_settle = now = self._clock()
        try:
            self._settler.tick(final=final)
        except Exception as exc:  # the loop survives anything one tick does
            # An outage is handled inside the tick (intake pauses); this is anything else,
            # a command the Redis ACL refuses now, say. What is held is ticked again later.
            self.metrics.errors.labels("settle").inc()
            self._settle_after = now + self._cfg.error_backoff
            if self._tick_failures.allow():
                log.error(
                    "settle_tick_failed",
                    error=type(exc).__name__,
                    reason=str(exc)[:200],
                    exc_info=not isinstance(exc, redis.RedisError),
                )

    def _settle_if_due(self) -> None:
        # A tick costs Redis work in proportion to what is held: few held, tick often (a
        # settled message leaves SQS soon); many, up to ``settle_interval`` apart.
        interval = min(self._cfg.settle_interval, max(SETTLE_FLOOR, len(self.held) / 2000))
        now = self._clock()
        if self.held and now - self._last_settle >= interval and now >= self._settle_after:
            self._settle()

    # --- SQS (the loop thread's client) ------------------------------------------------
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
        self._deletes.add(receipts)
        self._flush_deletes()

    def _flush_deletes(self, *, force: bool = False) -> None:
        quiet_since = None if self.held else self._last_batch_at
        # Not deleted: the message comes back and is recognised by the ledger.
        if self._deletes.flush(quiet_since=quiet_since, force=force):
            self.metrics.errors.labels("delete").inc()

    def handback(self, receipts: list[str]) -> None:
        """Make messages visible again at once (not handed off, or shutting down)."""
        if receipts:
            self._queue.release(receipts)
            self.metrics.handed_back.inc(len(receipts))

    def _count_sqs(self, action: str, requests: int = 1) -> None:
        """The loop thread's SQS requests."""
        self._loop_requests += requests
        self.metrics.sqs_requests.labels(action).inc(requests)
