"""Milestone coalescing: one order query per tracker per short window, and a share of the
API budget for milestone queries (issue: a milestone storm must not starve state events).

A PACKAGE_TRACKER_MILESTONE_CHANGED event implies no state, so the poller's "no news"
shortcut cannot absorb it: each one costs an order query. Here, per tracker (one tracker
is one delivery), Redis keeps when a milestone last *began* a query and the start of the
latest query that *finished*. A milestone task asks first (``admit``, one Lua call, Redis's
own clock):

- a query that began after this event first arrived has finished: the event is
  ``covered`` (what it announces was read and pushed);
- a query began less than the window ago: ``wait`` the rest of the window (the task
  retries), after which either a later query covers it or it queries itself;
- otherwise it may ``query`` now, and the window starts.

So a burst of milestones for one tracker costs at most one query per window, plus one at
its end, and none is lost: each is either queried for or covered by a query that began
after it arrived. When the query finished, ``covered`` records its start. Every milestone
query also takes a slot of its own limiter (``budget``) at a share of API_RATE_PER_SECOND,
besides the shared one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import redis

from tasks.keys import Keys
from tasks.order_api.rate_limit import RateLimiter
from tasks.redis_outage import guarded, text

# KEYS: the tracker's hash, the event's arrival key. ARGV: window (ms), ttl (ms).
# Returns {'covered', 0}, {'wait', ms to wait} or {'query', start ms}. Milliseconds keep
# the numbers below 10^14, which Lua's number-to-string conversion keeps exact.
_ADMIT: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local arrived = tonumber(redis.call('GET', KEYS[2]) or '-1')
if arrived < 0 then
  arrived = now
  redis.call('SET', KEYS[2], now, 'PX', ARGV[2])
end
local seen = redis.call('HMGET', KEYS[1], 'begun', 'covered')
local begun, covered = tonumber(seen[1] or '-1'), tonumber(seen[2] or '-1')
if covered > arrived then return {'covered', 0} end
local wait = begun + tonumber(ARGV[1]) - now
if begun >= 0 and wait > 0 then return {'wait', wait} end
redis.call('HSET', KEYS[1], 'begun', now)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {'query', now}
"""

# KEYS: the tracker's hash. ARGV: the finished query's start (ms), ttl (ms).
_COVERED: Final = """
local covered = tonumber(redis.call('HGET', KEYS[1], 'covered') or '-1')
if tonumber(ARGV[1]) > covered then redis.call('HSET', KEYS[1], 'covered', ARGV[1]) end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

#: how long a tracker's window record and an event's arrival are kept; past it a late
#: retry counts as a new arrival (it queries: never wrongly covered)
RECORD_TTL_SECONDS: Final = 3600


@dataclass(frozen=True, slots=True)
class Admission:
    """What a milestone task may do now: ``verdict`` is "query", "wait" or "covered"."""

    verdict: str
    #: "wait": seconds left of the window; "query": when the window began (ms, Redis clock)
    value: float = 0.0

    @property
    def started(self) -> int:
        return int(self.value)


QUERY_NOW: Final = Admission("query", -1)


@dataclass(frozen=True, slots=True)
class Tracker:
    """A carrier's tracker as milestone events name it; the carrier code compared
    case-insensitively (``ups`` in events, ``UPS`` in the API)."""

    business_product_id: str
    carrier_code: str
    tracking_number: str

    @classmethod
    def of(cls, business_product_id: str, carrier_code: str, tracking_number: str) -> Tracker:
        return cls(business_product_id, carrier_code.lower(), tracking_number)


class MilestoneGate:
    """Raises LedgerUnavailable when Redis is unreachable; ApiUnavailable from ``budget``
    when no slot of the milestones' share is free within the limiter's wait."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        window: float,
        limiter: RateLimiter | None = None,
    ) -> None:
        self._keys, self._window_ms = keys, int(window * 1000)
        self._limiter = limiter
        self._ttl_ms = max(RECORD_TTL_SECONDS * 1000, 2 * self._window_ms)
        self._admit = client.register_script(_ADMIT)
        self._covered = client.register_script(_COVERED)

    def admit(self, tracker: Tracker, dedup_key: str) -> Admission:
        """May this milestone event query now? (see the module docstring)"""
        if self._window_ms <= 0:
            return QUERY_NOW
        keys = [self._key(tracker), self._keys.milestone_arrival(dedup_key)]
        args = [self._window_ms, self._ttl_ms]
        verdict, value = guarded(lambda: self._admit(keys=keys, args=args))
        if text(verdict) == "wait":
            return Admission("wait", int(value) / 1000)
        return Admission(text(verdict), int(value))

    def covered(self, tracker: Tracker, admission: Admission) -> None:
        """The query ``admission`` let begin has finished: it covers earlier arrivals."""
        if self._window_ms <= 0 or admission.started < 0:
            return
        args = [admission.started, self._ttl_ms]
        guarded(lambda: self._covered(keys=[self._key(tracker)], args=args))

    def budget(self) -> None:
        """Take a slot of the milestones' share of the API budget (waits for it)."""
        if self._limiter is not None:
            self._limiter.acquire()

    def _key(self, tracker: Tracker) -> str:
        return self._keys.milestone(
            tracker.business_product_id, tracker.carrier_code, tracker.tracking_number
        )
