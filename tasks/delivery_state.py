"""Per-delivery state in Redis: what was last pushed, and a short lock serialising pushes.

The lock is ``SET NX PX`` with a random token, released by a compare-and-delete script,
so a worker whose lock expired can never release another worker's lock.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

import redis

from tasks.errors import DeliveryBusy
from tasks.guard import Pushed
from tasks.keys import DeliveryRef, Keys
from tasks.redis_guard import UNAVAILABLE, redis_outage, text

_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class DeliveryStates:
    """Raises LedgerUnavailable when Redis is unreachable, DeliveryBusy on a held lock."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        state_ttl: int,
        lock_ttl: float,
        lock_wait: float,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._r = client
        self._keys = keys
        self._state_ttl = state_ttl
        self._lock_ttl_ms = int(lock_ttl * 1000)
        self._lock_wait = lock_wait
        self._clock, self._sleep = clock, sleep
        self._unlock = client.register_script(_UNLOCK)

    @contextmanager
    def locked(self, ref: DeliveryRef) -> Iterator[None]:
        """Hold the delivery's lock; wait up to ``lock_wait`` seconds, then DeliveryBusy."""
        key, token = self._keys.delivery_lock(ref), secrets.token_hex(8)
        deadline = self._clock() + self._lock_wait
        delay = 0.01
        with redis_outage():
            while not self._r.set(key, token, nx=True, px=self._lock_ttl_ms):
                if self._clock() >= deadline:
                    raise DeliveryBusy(f"delivery {ref} is locked by another worker")
                self._sleep(delay)
                delay = min(delay * 2, 0.2)
        try:
            yield
        finally:
            # If Redis is gone the lock expires by itself; the work it guarded is done.
            with suppress(*UNAVAILABLE):
                self._unlock(keys=[key], args=[token])

    def stale_open(self, older_than: float, limit: int) -> list[DeliveryRef]:
        """Non-terminal deliveries last synced more than ``older_than`` seconds ago."""
        cutoff = self._clock() - older_than
        with redis_outage():
            members: list[bytes] = self._r.zrangebyscore(  # type: ignore[assignment]
                self._keys.open_deliveries, "-inf", cutoff, 0, limit
            )
        refs = []
        for member in members:
            parts = text(member).split("/")
            if len(parts) == 3:  # ids cannot hold a slash (tasks.resources)
                refs.append(DeliveryRef(*parts))
        return refs

    def touch_open(self, refs: list[DeliveryRef]) -> None:
        """Synced just now: due again after the interval (XX: terminal ones stay gone)."""
        if refs:
            with redis_outage():
                self._r.zadd(
                    self._keys.open_deliveries, {str(r): self._clock() for r in refs}, xx=True
                )

    def last_pushed(self, ref: DeliveryRef) -> Pushed | None:
        with redis_outage():
            fingerprint, rank = self._r.hmget(self._keys.delivery(ref), "fp", "rank")
        if fingerprint is None or rank is None:
            return None
        return Pushed(text(fingerprint), int(rank))

    def record_push(self, ref: DeliveryRef, pushed: Pushed, state: str, *, terminal: bool) -> None:
        """Remember the pushed snapshot; track non-terminal deliveries for reconciliation."""
        key = self._keys.delivery(ref)
        with redis_outage(), self._r.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping={
                    "fp": pushed.fingerprint,
                    "rank": pushed.rank,
                    "state": state,
                    "at": self._clock(),
                },
            )
            pipe.expire(key, self._state_ttl)
            if terminal:
                pipe.zrem(self._keys.open_deliveries, str(ref))
            else:
                pipe.zadd(self._keys.open_deliveries, {str(ref): self._clock()})
            pipe.execute()
