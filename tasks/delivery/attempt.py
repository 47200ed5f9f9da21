"""Run one sync task attempt and turn its result or error into the next step.

The task's path, top to bottom: decode the body (here), ``route`` it to its deliveries
(``tasks.delivery.routing``), ``sync_for_event`` each (``tasks.delivery.sync``, which
finishes the event in the ledger); an error becomes a retry, a give-up or a park (here).

Plain function: the Celery task only decodes arguments and acts on what this returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import structlog

from config.settings import Settings
from tasks.delivery.outcome import Outcome
from tasks.delivery.routing import route
from tasks.delivery.sync import SyncDeps
from tasks.delivery.task_retry import GiveUp, Park, Retry, RetryPolicy, next_step
from tasks.errors import DeadLetterUnavailable, DependencyDown, MalformedEvent
from tasks.events.envelope import DeliveryEvent, MilestoneEvent, parse_delivery_event
from tasks.ledger.events import EventState, Ledger
from tasks.sqs.dlq import DeadLetters, Parcel, one_line

log = structlog.get_logger("bwp.task")


@dataclass(frozen=True, slots=True)
class Parked:
    """The event failed for good as ``kind`` (its dead-letter kind). ``state``: `parked`
    once the DLQ took it, `failed` when none did (the poller holding it parks it)."""

    kind: str
    state: Literal[EventState.PARKED, EventState.FAILED] = EventState.PARKED

    def __str__(self) -> str:
        return f"{self.state}:{self.kind}"


class AttemptRuntime(Protocol):
    """What an attempt uses of the worker's collaborators (``tasks.runtime.Runtime``)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def ledger(self) -> Ledger: ...

    @property
    def deps(self) -> SyncDeps: ...

    @property
    def dead_letters(self) -> DeadLetters: ...


def policy_of(runtime: AttemptRuntime) -> RetryPolicy:
    s = runtime.settings
    return RetryPolicy(
        s.task_max_retries,
        s.not_found_max_retries,
        s.task_retry_base_seconds,
        s.task_retry_cap_seconds,
    )


def _payload_hash(body: str, runtime: AttemptRuntime) -> str:
    try:
        return _parse(body, runtime).envelope.payload_hash
    except MalformedEvent:
        return ""


def _parse(body: str, runtime: AttemptRuntime) -> DeliveryEvent | MilestoneEvent:
    event = parse_delivery_event(body, max_deliveries=runtime.settings.max_deliveries_per_event)
    if not isinstance(event, DeliveryEvent | MilestoneEvent):
        raise MalformedEvent(f"{event.detail_type} is not a delivery event")
    return event


def handle(
    body: str, dedup_key: str, runtime: AttemptRuntime, *, failures: int, busy: int
) -> Outcome | Parked | Retry:
    """Sync the event in ``body``. Returns how it ended, or a Retry to schedule."""
    try:
        event = _parse(body, runtime)
        structlog.contextvars.bind_contextvars(
            event_id=event.envelope.id, detail_type=event.envelope.detail_type
        )
        if isinstance(event, DeliveryEvent):
            structlog.contextvars.bind_contextvars(
                order_id=event.order_id, delivery_id=event.delivery_id
            )
        outcome = route(event, runtime.deps)
    except Exception as exc:  # noqa: BLE001 - classified by next_step, parked or retried, never swallowed
        return _after_error(exc, body, dedup_key, runtime, failures=failures, busy=busy)
    log.info("event_synced", outcome=str(outcome), retries=failures)
    return outcome


def _after_error(
    exc: Exception, body: str, dedup_key: str, runtime: AttemptRuntime, *, failures: int, busy: int
) -> Outcome | Parked | Retry:
    step = next_step(exc, failures=failures, busy=busy, policy=policy_of(runtime))
    if isinstance(step, Retry):
        if isinstance(exc, DependencyDown):
            # an outage: its circuit logs once when it opens and closes, not every task
            runtime.deps.metrics.circuit_waits.labels(exc.dependency).inc()
        else:
            runtime.deps.metrics.retries.labels(type(exc).__name__).inc()
            log.warning(
                "sync_retry_scheduled",
                error=str(exc),
                error_type=type(exc).__name__,
                countdown=round(step.countdown, 2),
                failures=step.failures,
            )
        try:
            runtime.ledger.postpone_sweep(dedup_key, step.countdown + 60)
        except Exception as ledger_exc:  # noqa: BLE001 - Redis down: the sweep may re-dispatch early, which is harmless
            log.warning("sweep_postpone_failed", error=type(ledger_exc).__name__)
        return step
    if isinstance(step, GiveUp):
        log.warning("sync_gave_up_waiting", reason=step.reason, how=str(step.how))
        if step.how is Outcome.UNKNOWN_TRACKER:
            runtime.deps.metrics.unknown_trackers.inc()
        runtime.ledger.complete(dedup_key, how=step.how, payload_hash=_payload_hash(body, runtime))
        return step.how
    return _park(step, body, dedup_key, runtime, exc)


def _park(step: Park, body: str, dedup_key: str, runtime: AttemptRuntime, exc: Exception) -> Parked:
    """Park the event, and mark it `parked` only once the DLQ took it. With no DLQ, or a
    DLQ that keeps refusing, it is marked `failed` instead: the poller that holds its
    message parks it with its own DLQ, or leaves it to the queue's redrive policy."""
    parcel = Parcel(body, step.kind, step.reason, dedup_key)
    try:
        runtime.dead_letters.park_one(parcel)
    except DeadLetterUnavailable:
        runtime.deps.metrics.park_failures.labels(step.kind).inc()
        runtime.ledger.mark_failed(dedup_key, step.kind, one_line(step.reason))
        log.error(
            "event_failed_not_parked",
            kind=step.kind,
            reason=step.reason,
            dlq_configured=runtime.dead_letters.configured,
            error_type=type(exc).__name__,
        )
        return Parked(step.kind, EventState.FAILED)
    runtime.ledger.mark_parked(dedup_key, step.kind)
    runtime.deps.metrics.parked.labels(step.kind).inc()
    log.error("event_parked", kind=step.kind, reason=step.reason, error_type=type(exc).__name__)
    return Parked(step.kind)
