"""Re-dispatch events whose task was lost (design.md section 8: a SIGKILLed worker can
lose a popped task outright). Events stay `queued` in the ledger until their task ends."""

from __future__ import annotations

from contextlib import closing

import structlog
from celery import Celery
from celery.utils.nodenames import anon_nodename

from config.settings import Settings
from tasks.dispatch import Dispatcher
from tasks.ledger.events import Ledger

log = structlog.get_logger("bwp.sweep")

#: bounded work per run: the next run picks up the rest
SWEEP_LIMIT = 500


def sweep_stale(ledger: Ledger, app: Celery, settings: Settings, limit: int = SWEEP_LIMIT) -> int:
    """Publish again every event `queued` for longer than ``sweep_after_seconds``."""
    stale = ledger.stale_queued(settings.sweep_after_seconds, limit)
    if not stale:
        return 0
    # the origin Celery gives what a task publishes: this worker's node name
    origin = anon_nodename()
    with closing(Dispatcher.for_app(app, settings.celery_queue, origin=origin)) as dispatcher:
        confirmed = dispatcher.publish(stale)
    redone = [event for event, ok in zip(stale, confirmed, strict=True) if ok]
    ledger.mark_queued(redone)
    log.warning("stale_events_redispatched", count=len(redone), found=len(stale))
    return len(redone)
