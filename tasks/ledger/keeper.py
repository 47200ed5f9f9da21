"""The watchdog of delivery locks (design.md section 3.3): a lock lives a short TTL, so a
crashed holder frees it soon, and its live holder's process renews it while the sync runs,
however slow the API or the OMS is (as Redisson's watchdog does).

One daemon thread per process renews every kept lock in one Redis round trip, every third
of the TTL. A lock found taken by another (or unconfirmed for a whole TTL: Redis could
not be asked) marks its lease lost; the sync checks that before it pushes, and the
finishing write is fenced in Redis anyway (tasks.ledger.scripts.FINISH).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis
import structlog

from tasks.ledger import scripts
from tasks.redis_outage import UNAVAILABLE

log = structlog.get_logger("bwp.lock")


@dataclass(eq=False)
class Hold:
    """One kept lock: its key, its token, and whether it is still the holder's."""

    key: str
    token: str
    #: monotonic time until which the lock is known to be held
    confirmed_until: float
    #: monotonic time after which it is no longer renewed (the task's deadline)
    renew_until: float
    lost: threading.Event = field(default_factory=threading.Event)

    def held(self, now: float) -> bool:
        return not self.lost.is_set() and now < self.confirmed_until


class LockKeeper:
    def __init__(
        self,
        client: redis.Redis,
        ttl: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._renew = client.register_script(scripts.RENEW)
        self._ttl, self._clock = ttl, clock
        self._holds: set[Hold] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        #: renewal round trips made (tests count them)
        self.rounds = 0

    @property
    def ttl(self) -> float:
        return self._ttl

    def keep(self, key: str, token: str, *, longest: float) -> Hold:
        """Renew the lock ``key`` (taken just now with ``token``) for at most ``longest``
        seconds, until ``release``."""
        now = self._clock()
        hold = Hold(key, token, now + self._ttl, now + longest)
        with self._lock:
            self._holds.add(hold)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="lock-keeper", daemon=True)
                self._thread.start()
        return hold

    def release(self, hold: Hold) -> None:
        with self._lock:
            self._holds.discard(hold)

    def renew_now(self) -> None:
        """One renewal round for every kept lock (the thread's step; tests call it)."""
        now = self._clock()
        with self._lock:
            holds = [h for h in self._holds if not h.lost.is_set()]
        due = [h for h in holds if now < h.renew_until]
        for hold in holds:
            if now >= hold.renew_until and now >= hold.confirmed_until:
                hold.lost.set()  # past the task's deadline: no longer renewed
        if not due:
            return
        self.rounds += 1
        try:
            replies = self._renew(
                keys=[h.key for h in due], args=[int(self._ttl * 1000), *[h.token for h in due]]
            )
        except UNAVAILABLE as exc:
            # Not confirmed: a lease whose TTL may have run out is treated as lost.
            for hold in due:
                if self._clock() >= hold.confirmed_until:
                    hold.lost.set()
            log.warning("lock_renewal_failed", error=type(exc).__name__, locks=len(due))
            return
        for hold, kept in zip(due, replies, strict=True):
            if int(kept):
                hold.confirmed_until = now + self._ttl
            else:
                hold.lost.set()
                log.warning("delivery_lock_lost", key=hold.key)

    def _run(self) -> None:
        while True:
            self._wake.wait(self._ttl / 3)
            with self._lock:
                if not self._holds:
                    self._thread = None
                    return
            self.renew_now()
