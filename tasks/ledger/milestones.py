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
from typing import Final, Protocol

import redis

from tasks.keys import Keys
from tasks.ledger import lua
from tasks.ledger.scripts import milestones as scripts
from tasks.redis_outage import guarded, text

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


class Limiter(Protocol):
    """A rate limiter (tasks.order_api.rate_limit.RateLimiter): named here by what the
    gate asks of it, so that the ledger does not import the order API, whose token and
    limiter scripts live in tasks.ledger.scripts."""

    def acquire(self) -> None: ...


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
        limiter: Limiter | None = None,
    ) -> None:
        self._keys, self._window_ms = keys, int(window * 1000)
        self._limiter = limiter
        self._ttl_ms = max(RECORD_TTL_SECONDS * 1000, 2 * self._window_ms)
        self._admit = lua.Runner(client, scripts.ADMIT)
        self._covered = lua.Runner(client, scripts.COVERED)

    def admit(self, tracker: Tracker, dedup_key: str) -> Admission:
        """May this milestone event query now? (see the module docstring)"""
        if self._window_ms <= 0:
            return QUERY_NOW
        call = scripts.AdmitArgs(
            tracker_key=self._key(tracker),
            arrival_key=self._keys.milestone_arrival(dedup_key),
            window=self._window_ms,
            ttl=self._ttl_ms,
        )
        verdict, value = guarded(lambda: self._admit(call))
        if text(verdict) == "wait":
            return Admission("wait", int(value) / 1000)
        return Admission(text(verdict), int(value))

    def covered(self, tracker: Tracker, admission: Admission) -> None:
        """The query ``admission`` let begin has finished: it covers earlier arrivals."""
        if self._window_ms <= 0 or admission.started < 0:
            return
        call = scripts.CoveredArgs(
            tracker_key=self._key(tracker), started=admission.started, ttl=self._ttl_ms
        )
        guarded(lambda: self._covered(call))

    def budget(self) -> None:
        """Take a slot of the milestones' share of the API budget (waits for it)."""
        if self._limiter is not None:
            self._limiter.acquire()

    def _key(self, tracker: Tracker) -> str:
        return self._keys.milestone(
            tracker.business_product_id, tracker.carrier_code, tracker.tracking_number
        )
