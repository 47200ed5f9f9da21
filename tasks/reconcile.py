"""Reconciliation: re-sync deliveries that stayed non-terminal for too long.

EventBridge drops an event after 24 hours of failed delivery; a delivery whose last event
never arrived would then stay wrong at the OMS. The worker remembers every non-terminal
delivery it pushed (a sorted set scored by last sync) and this job re-syncs the oldest,
a bounded number per run. The set is bounded (oldest dropped past 100,000), expires with
the delivery records, loses a delivery whose record expired (no push for the state TTL),
and one that failed for good.

Each delivery read also points its tracker at it again (the tracker index of milestone
events), whatever the outcome: an index entry Redis lost or evicted comes back within
RECONCILE_AFTER_SECONDS for every open delivery the worker still knows.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import structlog

from tasks.delivery.routing import index_snapshot
from tasks.delivery.sync import SyncDeps, sync_for_source, synthetic_source
from tasks.errors import BwpError
from tasks.ledger.deliveries import DeliveryStates
from tasks.model.snapshot import Snapshot

log = structlog.get_logger("bwp.reconcile")


@dataclass
class ReconcileReport:
    checked: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    errors: int = 0


def reconcile(
    deliveries: DeliveryStates, deps: SyncDeps, *, older_than: float, limit: int
) -> ReconcileReport:
    """Re-sync up to ``limit`` open deliveries not synced for ``older_than`` seconds.

    An error on one delivery is logged and counted; the next run tries it again.
    """
    report = ReconcileReport()
    refs = deliveries.stale_open(older_than, limit)
    source = synthetic_source("RECONCILIATION", deps.now())
    trackers = deps.trackers

    def reindex(snapshot: Snapshot) -> None:
        if trackers is not None:
            index_snapshot(trackers, snapshot)

    for ref in refs:
        report.checked += 1
        try:
            report.outcomes[sync_for_source(ref, deps, source, seen=reindex)] += 1
        except BwpError as exc:
            report.errors += 1
            log.warning(
                "reconcile_failed", delivery=str(ref), error=str(exc), retryable=exc.retryable
            )
            if not exc.retryable:
                # no later run can do better: stop asking (its next event still syncs it)
                deliveries.forget_open(ref)
    deliveries.touch_open(refs)
    if refs:
        log.info("reconciled", checked=report.checked, errors=report.errors, **report.outcomes)
    return report
