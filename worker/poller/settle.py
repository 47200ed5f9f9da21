"""The settling tick of a poller: carry out, for everything held, what ``plan`` decides
(design.md sections 3.1 and 3.6) — one Redis round trip to read every held event's
record, then deletes, parks, re-dispatches and visibility extensions.

Runs on the poller's main thread, which owns the held table (worker/poller/loop.py).
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from tasks.errors import LedgerUnavailable
from tasks.ledger.events import Ledger, Orphan, Reclaim
from tasks.sqs.dlq import Parcel
from tasks.sqs.queue import SqsQueue
from worker.poller import plan as planning
from worker.poller.config import PollerConfig
from worker.poller.gate import IntakeGate
from worker.poller.held import Held, HeldMessages
from worker.poller.intake import Candidate, Intake, Verdicts
from worker.poller.metrics import PollerMetrics

log = structlog.get_logger("bwp.poller")


class Settler:
    """``delete``, ``park`` (returns the receipts parked) and ``apply`` (a verdict on
    messages) are the poller's own verbs."""

    def __init__(
        self,
        *,
        held: HeldMessages,
        ledger: Ledger,
        intake: Intake,
        gate: IntakeGate,
        metrics: PollerMetrics,
        queue: SqsQueue,
        config: PollerConfig,
        dlq_configured: bool,
        delete: Callable[[list[str]], None],
        park: Callable[[list[tuple[str, Parcel]]], list[str]],
        apply: Callable[[Verdicts], None],
        queue_depth: Callable[[], int] | None,
        clock: Callable[[], float],
    ) -> None:
        self.held, self._ledger, self._intake, self._gate = held, ledger, intake, gate
        self.metrics, self._queue, self._cfg = metrics, queue, config
        self._dlq_configured = dlq_configured
        self._delete, self._park, self._apply = delete, park, apply
        self._queue_depth, self._clock = queue_depth, clock

    def tick(self, *, final: bool = False) -> None:
        """One tick: read every held event's record in one round trip, then carry out
        ``settle.plan``: delete the settled, park the failed, claim again those whose record
        vanished, dispatch again those whose task was lost, extend the visibility of the
        rest before it runs out. On the ``final`` tick nothing is dispatched."""
        now = self._clock()
        if not self.held:
            return
        keys = self.held.dedup_keys()
        try:
            views = dict(zip(keys, self._ledger.views(keys), strict=True))
        except LedgerUnavailable as exc:
            self._gate.outage("redis", str(exc))
            views = {}
        todo = planning.plan(
            self.held.all(),
            views,
            now=now,
            grace=self._cfg.orphan_grace,
            dlq=self._dlq_configured,
            broker_empty=self._broker_empty,
        )
        self.held.drop(h.message_id for h, _ in todo.settled)
        self._delete([h.receipt for h, _ in todo.settled])
        for _, how in todo.settled:
            self.metrics.settled.labels(how).inc()
        self._park_failed([(h, v.kind, v.reason) for h, v in todo.park])
        self._let_go(todo.let_go)
        if not final:
            if todo.lost:
                self._claim_again(todo.lost)
            if todo.orphans:
                self._redispatch(todo.orphans)
        self._extend()
        self.metrics.held.set(len(self.held))

    def _broker_empty(self) -> bool | None:
        if self._queue_depth is None:
            return None
        try:
            return self._queue_depth() == 0
        except Exception as exc:  # noqa: BLE001 - unknown depth: nothing is taken for lost
            log.warning("queue_depth_unknown", error=type(exc).__name__)
            return None

    def _claim_again(self, lost: list[Held]) -> None:
        candidates = [Candidate(h.receipt, h.request, h.body, h.message_id) for h in lost]
        try:
            verdicts = self._intake.take(candidates, again=True)
        except LedgerUnavailable as exc:
            self._gate.outage("redis", str(exc))
            return
        # held already: only what no longer belongs in the table leaves it
        by_receipt = {h.receipt: h.message_id for h in lost}
        gone = verdicts.delete + verdicts.release + [r for r, _ in verdicts.park]
        self.held.drop(by_receipt[r] for r in gone if r in by_receipt)
        for candidate in verdicts.hold:
            held = self.held.get(candidate.message_id)
            if held is not None:
                held.dispatched_at, held.suspect = self._clock(), None
        verdicts.hold = []
        self._apply(verdicts)

    def _redispatch(self, orphans: list[tuple[Held, Orphan]]) -> None:
        try:
            answers = self._ledger.reclaim([o for _, o in orphans], self._cfg.max_redispatches)
        except LedgerUnavailable as exc:
            self._gate.outage("redis", str(exc))
            return
        taken = [(h, o) for (h, o), a in zip(orphans, answers, strict=True) if a is Reclaim.OK]
        for why in (planning.TASK_LOST, planning.NEVER_TAKEN):
            mine = [h for h, o in taken if planning.reason(o) == why]
            candidates = [Candidate(h.receipt, h.request, h.body, h.message_id) for h in mine]
            for candidate in self._intake.redispatch(candidates, why) if candidates else []:
                held = self.held.get(candidate.message_id)
                if held is not None:
                    held.dispatched_at, held.suspect = self._clock(), None
        exhausted = [
            h for (h, _), a in zip(orphans, answers, strict=True) if a is Reclaim.EXHAUSTED
        ]
        reason = f"its task was lost more than {self._cfg.max_redispatches} times (worker killed?)"
        self._park_failed([(h, "retries-exhausted", reason) for h in exhausted], mark=True)

    def _park_failed(self, items: list[tuple[Held, str, str]], *, mark: bool = False) -> None:
        """Park held events that failed for good; mark them `parked` once the DLQ took
        them. One the DLQ refused is let go, to the queue's redrive (``mark``: marked
        `failed` first, so that it is not run again when it comes back)."""
        if not items:
            return
        parcels = [(h.receipt, Parcel(h.body, k, r, h.request.dedup_key)) for h, k, r in items]
        parked = set(self._park(parcels))
        refused: list[Held] = []
        for held, kind, why in items:
            try:
                if held.receipt in parked:
                    self._ledger.mark_parked(held.request.dedup_key, kind)
                elif mark:
                    self._ledger.mark_failed(held.request.dedup_key, kind, why)
            except LedgerUnavailable as exc:
                self._gate.outage("redis", str(exc))
            if held.receipt not in parked:
                refused.append(held)
        self.held.drop(h.message_id for h, _, _ in items if h.receipt in parked)
        self._delete([h.receipt for h, _, _ in items if h.receipt in parked])
        self._let_go(refused)

    def _let_go(self, helds: list[Held]) -> None:
        """Stop holding: the message comes back when its visibility ends, and counts one
        more receive towards the queue's redrive policy."""
        if helds:
            self.held.drop(h.message_id for h in helds)
            log.warning("held_message_let_go", count=len(helds))

    def _extend(self) -> None:
        now = self._clock()
        extend, let_go = self.held.due(now, self._cfg.extend_margin, self._cfg.visibility_timeout)
        if let_go:
            # SQS's 12-hour cap: it comes back as a new receipt and is held again
            self.held.drop(h.message_id for h in let_go)
            log.info("held_past_the_in_flight_cap_let_go", count=len(let_go))
        if not extend:
            return
        lapsed = [h for h in extend if h.visible_at <= now]
        if lapsed:
            # extended too late: SQS may have handed it out again (held anew if to us)
            self.metrics.lapses.inc(len(lapsed))
            log.warning("held_visibility_lapsed", count=len(lapsed))
        failed = set(self._queue.extend([h.receipt for h in extend], self._cfg.visibility_timeout))
        self.held.extended(
            [h for h in extend if h.receipt not in failed], now + self._cfg.visibility_timeout
        )
        if failed:
            # A receipt SQS refuses is stale: the message was received again (by another
            # poller, which holds it now) or is gone. This poller lets it go.
            self.metrics.errors.labels("extend").inc()
            self.held.drop(h.message_id for h in extend if h.receipt in failed)
