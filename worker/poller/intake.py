"""What happens to each well-formed delivery event a poller takes: claim, dispatch, and the
verdict on its message — delete, hold, park or hand back (design.md sections 3-4).

The same path serves a fresh batch and a held message whose ledger record vanished
(Redis lost it): claimed and dispatched again, it turns a Redis loss into repeated work
instead of a lost update.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog

from tasks.dispatch import Dispatcher, claim_request
from tasks.errors import MalformedEvent
from tasks.events.catalog import metric_label
from tasks.events.envelope import MAX_DELIVERIES_PER_EVENT, Envelope, parse_delivery_event
from tasks.ledger.events import Claim, ClaimRequest, Ledger, QueuedEvent
from tasks.sqs.dlq import Parcel
from worker.poller.held import HeldMessages
from worker.poller.metrics import PollerMetrics

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import MessageTypeDef

log = structlog.get_logger("bwp.poller")


@dataclass(frozen=True, slots=True)
class Candidate:
    """A message carrying a well-formed delivery event."""

    receipt: str
    request: ClaimRequest
    body: str
    message_id: str


@dataclass
class Verdicts:
    delete: list[str] = field(default_factory=list)
    hold: list[Candidate] = field(default_factory=list)
    park: list[tuple[str, Parcel]] = field(default_factory=list)
    #: not handed off (the broker failed): visible again at once
    release: list[str] = field(default_factory=list)

    def merged(self, other: Verdicts) -> Verdicts:
        return Verdicts(
            self.delete + other.delete,
            self.hold + other.hold,
            self.park + other.park,
            self.release + other.release,
        )


class Intake:
    def __init__(
        self,
        ledger: Ledger,
        dispatcher: Dispatcher,
        held: HeldMessages,
        metrics: PollerMetrics,
        *,
        park_unsupported: bool,
        clock: Callable[[], float],
        max_deliveries: int = MAX_DELIVERIES_PER_EVENT,
    ) -> None:
        self._max_deliveries = max_deliveries
        self._ledger, self._dispatcher = ledger, dispatcher
        self._held, self._metrics = held, metrics
        self._park_unsupported, self._clock = park_unsupported, clock
        #: set when a publish was not confirmed (the poller pauses intake)
        self.broker_failed = False

    def sort(self, message: MessageTypeDef, verdicts: Verdicts) -> Candidate | None:
        """A well-formed delivery event becomes a Candidate; anything else gets its verdict
        (malformed: park; other detail-types: delete, or park when so configured)."""
        body, receipt = message.get("Body", ""), message["ReceiptHandle"]
        try:
            parsed = parse_delivery_event(body, max_deliveries=self._max_deliveries)
        except MalformedEvent as exc:
            log.error("message_malformed", reason=str(exc), message_id=message.get("MessageId"))
            verdicts.park.append((receipt, Parcel(body, "malformed", str(exc))))
            return None
        envelope = parsed if isinstance(parsed, Envelope) else parsed.envelope
        self._observe_age(envelope)
        if isinstance(parsed, Envelope):
            self._unsupported(receipt, body, parsed, verdicts)
            return None
        return Candidate(receipt, claim_request(parsed), body, message.get("MessageId", receipt))

    def _unsupported(self, receipt: str, body: str, envelope: Envelope, verdicts: Verdicts) -> None:
        self._metrics.unsupported.labels(metric_label(envelope.detail_type)).inc()
        if self._park_unsupported:
            reason = f"detail-type {envelope.detail_type[:64]!r} is not handled"
            parcel = Parcel(body, "unsupported", reason, envelope.dedup_key)
            verdicts.park.append((receipt, parcel))
        else:
            log.info("event_unsupported_acknowledged", detail_type=envelope.detail_type[:64])
            verdicts.delete.append(receipt)

    def _observe_age(self, envelope: Envelope) -> None:
        try:
            sent = datetime.fromisoformat(envelope.time.replace("Z", "+00:00"))
        except ValueError:
            return
        if sent.tzinfo is None:
            sent = sent.replace(tzinfo=UTC)
        self._metrics.event_age.observe(max(0.0, self._clock() - sent.timestamp()))

    def take(self, candidates: list[Candidate], *, again: bool = False) -> Verdicts:
        """Claim ``candidates`` in one round trip, publish the new ones, and say what to do
        with each message. ``again``: they are held already and their records vanished.

        Raises LedgerUnavailable when Redis cannot be reached (nothing was decided).
        """
        verdicts = Verdicts()
        leaders: dict[str, Candidate] = {}
        followers: list[Candidate] = []
        for candidate in candidates:
            if candidate.request.dedup_key in leaders:
                followers.append(candidate)
            else:
                leaders[candidate.request.dedup_key] = candidate
        answers = self._ledger.claim([c.request for c in leaders.values()])
        fresh: list[Candidate] = []
        for candidate, answer in zip(leaders.values(), answers, strict=True):
            if answer is Claim.NEW:
                fresh.append(candidate)
            else:
                self._settled_answer(candidate, answer, verdicts)
        if fresh:
            self._dispatch(fresh, verdicts, again=again)
        self._follow(followers, leaders, verdicts)
        return verdicts

    def _settled_answer(self, candidate: Candidate, answer: Claim, verdicts: Verdicts) -> None:
        key = candidate.request.dedup_key
        if answer in (Claim.DONE, Claim.NO_NEWS):
            self._count(answer)
            verdicts.delete.append(candidate.receipt)
        elif answer is Claim.QUEUED and self._another_copy_held(candidate):
            # Its task is running and this poller holds another copy, which settles it.
            self._count(Claim.DONE)
            verdicts.delete.append(candidate.receipt)
        elif answer in (Claim.QUEUED, Claim.INFLIGHT):
            # Its task runs (or another poller is publishing it): hold this copy until it
            # settles. Another poller may hold a copy too; each deletes its own.
            self._metrics.inflight.inc()
            verdicts.hold.append(candidate)
        elif answer is Claim.FAILED:
            # Failed for good, not in the DLQ: the settling tick parks it or lets it go.
            verdicts.hold.append(candidate)
        else:
            log.error("event_id_conflict", event_key=key)
            reason = "same event id arrived earlier with a different payload"
            verdicts.park.append(
                (candidate.receipt, Parcel(candidate.body, "conflict", reason, key))
            )

    def _another_copy_held(self, candidate: Candidate) -> bool:
        """Another SQS message (another MessageId) of the same event is held here."""
        return any(
            h.message_id != candidate.message_id
            for h in self._held.with_keys([candidate.request.dedup_key])
        )

    def _dispatch(self, fresh: list[Candidate], verdicts: Verdicts, *, again: bool) -> None:
        sent, failed = self._publish(fresh)
        if failed:
            self._ledger.release_claims([c.request.dedup_key for c in failed])
            verdicts.release.extend(c.receipt for c in failed)
        verdicts.hold.extend(sent)
        if again:
            self._metrics.redispatched.labels("record_lost").inc(len(sent))
            if sent:
                log.warning("ledger_record_lost_redispatched", count=len(sent))
        else:
            self._metrics.dispatched.inc(len(sent))

    def redispatch(self, orphans: list[Candidate], why: str) -> list[Candidate]:
        """Publish again events taken back from a lost task (``Ledger.reclaim``); returns
        those whose publish was confirmed. The rest stay `queued` and held: a later tick
        finds them again."""
        sent, _ = self._publish(orphans)
        self._metrics.redispatched.labels(why).inc(len(sent))
        if sent:
            log.warning("lost_task_redispatched", why=why, count=len(sent))
        return sent

    def _publish(self, candidates: list[Candidate]) -> tuple[list[Candidate], list[Candidate]]:
        """Publish one task per candidate and mark the confirmed ones `queued`."""
        events = [QueuedEvent(c.request.dedup_key, c.body) for c in candidates]
        confirmed = self._dispatcher.publish(events)
        sent = [c for c, ok in zip(candidates, confirmed, strict=True) if ok]
        failed = [c for c, ok in zip(candidates, confirmed, strict=True) if not ok]
        if failed:
            self.broker_failed = True
        # A claim that lapsed before this (publish slower than the claim TTL) is not
        # marked; the message is held all the same, and settles or is claimed again.
        moved = self._ledger.mark_queued([QueuedEvent(c.request.dedup_key, c.body) for c in sent])
        if moved < len(sent):
            log.warning("queued_marks_missing", published=len(sent), marked=moved)
        return sent, failed

    def _follow(
        self, followers: list[Candidate], leaders: dict[str, Candidate], verdicts: Verdicts
    ) -> None:
        """A message repeated inside one batch follows its first copy's fate."""
        released = set(verdicts.release)
        for candidate in followers:
            leader = leaders[candidate.request.dedup_key]
            if leader.request.payload_hash != candidate.request.payload_hash:
                reason = "same event id arrived in the same batch with a different payload"
                parcel = Parcel(candidate.body, "conflict", reason, candidate.request.dedup_key)
                verdicts.park.append((candidate.receipt, parcel))
            elif leader.receipt in released:
                verdicts.release.append(candidate.receipt)
            else:
                # the leader is deleted (settled), held (settles here) or parked
                self._count(Claim.DONE)
                verdicts.delete.append(candidate.receipt)

    def _count(self, answer: Claim) -> None:
        if answer is Claim.NO_NEWS:
            self._metrics.twins.inc()
        else:
            self._metrics.duplicates.inc()
