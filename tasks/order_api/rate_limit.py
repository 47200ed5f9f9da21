"""A cluster-wide rate limit on order-API calls: GCRA reservations in one Lua script.

Every worker process shares one Redis key holding the "theoretical arrival time" (TAT)
of the next call; Redis's own clock (TIME) decides, so worker clocks never disagree.
One script call per acquire *reserves* a slot: it advances the TAT by one interval and
answers how long the caller must wait for its slot. The caller sleeps that long, once.
(The script is tasks.ledger.scripts.order_api.GCRA_RESERVE.)

Why reservations, not "may I go now?": a polling limiter re-runs the script every few
milliseconds for every waiting thread (hundreds of threads → thousands of Redis calls
a second), and whoever polls at the right moment wins, so some callers wait for tens of
seconds. Reservations are handed out in the order Redis runs the script: first come,
first served, across threads and processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from tasks.errors import ApiUnavailable
from tasks.ledger import lua
from tasks.ledger.scripts.order_api import GCRA_RESERVE, ReserveArgs
from tasks.redis_outage import guarded


class RateLimiter:
    """``acquire()`` waits for a reserved slot; ApiUnavailable when none is free within
    ``max_wait`` seconds (nothing is reserved then, so others lose nothing)."""

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        *,
        rate: float,
        burst: int,
        max_wait: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self._key = key
        self._interval_us = int(1_000_000 / rate)
        self._tolerance_us = self._interval_us * (burst - 1)
        self._max_wait_us = int(max_wait * 1_000_000)
        self._sleep = sleep
        self._script = lua.Runner(client, GCRA_RESERVE)
        #: calls that had to wait (tests and metrics)
        self.throttled = 0

    def acquire(self) -> None:
        """Reserve the next slot (one Redis call) and sleep until it comes."""
        call = ReserveArgs(
            limiter_key=self._key,
            interval=self._interval_us,
            tolerance=self._tolerance_us,
            max_wait=self._max_wait_us,
        )
        wait_us = int(guarded(lambda: self._script(call)))
        if wait_us < 0:
            raise ApiUnavailable(
                "order API rate limit: no slot within the wait budget",
                retry_after=self._max_wait_us / 1_000_000,
            )
        if wait_us > 0:
            self.throttled += 1
            self._sleep(wait_us / 1_000_000)
