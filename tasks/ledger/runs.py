"""When each scheduled job (sweep, reconciliation) last ran, so that a run that did not
happen shows: the poller exports it as ``bwp_scheduled_job_last_run_timestamp_seconds``."""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from tasks.keys import Keys
from tasks.redis_outage import guarded, text


class JobRuns:
    """Raises LedgerUnavailable when Redis cannot be reached."""

    def __init__(
        self, client: redis.Redis, keys: Keys, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._r, self._key, self._clock = client, keys.job_runs, clock

    def record(self, job: str) -> None:
        """``job`` ran to its end just now."""
        guarded(lambda: self._r.hset(self._key, job, self._clock()))

    def last(self) -> dict[str, float]:
        """Unix time of each job's last run (jobs that never ran are absent)."""
        raw = guarded(lambda: self._r.hgetall(self._key))
        return {text(job): float(at) for job, at in raw.items()}
