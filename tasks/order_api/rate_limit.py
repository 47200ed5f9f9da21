"""A cluster-wide rate limit on order-API calls: GCRA in one Lua script.

Every worker process shares one Redis key holding the "theoretical arrival time" of the
next call; Redis's own clock (TIME) decides, so worker clocks never disagree. A call
over the limit waits for its turn (the script says how long) rather than failing.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from tasks.errors import ApiUnavailable
from tasks.redis_outage import guarded

# KEYS[1]: the limiter key. ARGV: emission interval (µs), tolerance (µs).
# Returns 0 when the call may go now, else the microseconds to wait before asking again.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait > 0 then return wait end
redis.call('SET', KEYS[1], tat + interval, 'PX', math.ceil((tat + interval - now) / 1000) + 1000)
return 0
"""


class RateLimiter:
    """``acquire()`` blocks until a call may go; ApiUnavailable after ``max_wait`` seconds."""

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        *,
        rate: float,
        burst: int,
        max_wait: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self._key = key
        self._interval_us = int(1_000_000 / rate)
        self._tolerance_us = self._interval_us * (burst - 1)
        self._max_wait = max_wait
        self._clock, self._sleep = clock, sleep
        self._script = client.register_script(_GCRA)
        #: calls that had to wait (tests and metrics)
        self.throttled = 0

    def acquire(self) -> None:
        deadline = self._clock() + self._max_wait
        while True:
            wait_us = int(
                guarded(
                    lambda: self._script(
                        keys=[self._key], args=[self._interval_us, self._tolerance_us]
                    )
                )
            )
            if wait_us <= 0:
                return
            self.throttled += 1
            if self._clock() + wait_us / 1_000_000 > deadline:
                raise ApiUnavailable("order API rate limit: no slot within the wait budget")
            self._sleep(wait_us / 1_000_000)
