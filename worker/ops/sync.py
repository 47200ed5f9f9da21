"""``bwp-worker sync-order``: re-query one order and push what changed, through the guard.

The same path reconciliation takes (``tasks.delivery.sync.sync_order``): one order query, then per
delivery the fingerprint and never-backwards guard under the delivery's lock. The OMS
sees the push as coming from a ``MANUAL_SYNC`` source.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from tasks.delivery.outcome import Outcome
from tasks.delivery.sync import SyncDeps, sync_order, synthetic_source

MANUAL_SYNC: Final = "MANUAL_SYNC"


def resync_order(
    deps: SyncDeps, business_product_id: str, order_id: str, now: datetime
) -> dict[str, Outcome]:
    """Outcome per delivery id, sorted by id. Raises like ``tasks.delivery.sync.sync_order``."""
    return sync_order(business_product_id, order_id, deps, synthetic_source(MANUAL_SYNC, now))
