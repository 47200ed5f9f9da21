"""A stand-in for the Celery workers where a test drives the poller alone."""

from __future__ import annotations

import redis

from config.settings import Settings
from tasks.runtime import make_ledger


def finish_queued(client: redis.Redis, settings: Settings) -> int:
    """Mark every `queued` event done, as a worker finishing its task would; returns how
    many."""
    prefix = settings.redis_key_prefix + "evt:"
    ledger = make_ledger(client, settings)
    finished = 0
    for key in client.scan_iter(match=prefix + "*"):
        if client.hget(key, "state") == b"queued":
            ledger.complete(key.decode()[len(prefix) :], how="pushed")
            finished += 1
    return finished
