"""The watchdog of a worker process: delivery locks and event leases, kept alive while the
process lives (design.md sections 3.3 and 3.6).

- A **delivery lock** lives a short TTL, so a crashed holder frees it soon; its live
  holder's process renews it while the sync runs, however slow the API or the OMS is (as
  Redisson's watchdog does). A lock found taken by another (or unconfirmed for a whole
  TTL: Redis could not be asked) marks its hold lost; the sync checks that before every
  push, and the finishing write is fenced in Redis anyway (tasks.ledger.scripts.deliveries.FINISH).
- An **event lease** says "a live worker process holds this event's task": taken when the
  task arrives from the broker (prefetched, running, or waiting for a retry countdown),
  renewed while it is held, released when the task goes back to the broker (a retry, a
  revoke, a warm shutdown). A SIGKILLed process stops renewing; the poller sees the lease
  die and dispatches the event again (tasks.ledger.scripts.leases).

One daemon thread per process does both, in one Redis round trip per round: new takes and
releases as soon as they are asked for, renewals every third of their TTL. The thread
survives any error: a round that fails is logged and tried again.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
import structlog

from tasks.ledger import lua
from tasks.ledger.scripts import leases as scripts

log = structlog.get_logger("bwp.lock")

#: shortest wait between rounds, so that a burst of takes shares a round trip
_COALESCE = 0.002


@dataclass(eq=False)
class Hold:
    """One kept delivery lock: its key, its token, and whether it is still the holder's."""

    key: str
    token: str
    #: monotonic time until which the lock is known to be held
    confirmed_until: float
    #: monotonic time after which it is no longer renewed (the task's deadline)
    renew_until: float
    lost: threading.Event = field(default_factory=threading.Event)
    renewed_at: float = 0.0

    def held(self, now: float) -> bool:
        return not self.lost.is_set() and now < self.confirmed_until


@dataclass(eq=False)
class Tenancy:
    """One event lease this process holds (its task is here)."""

    key: str
    token: str = field(default_factory=lambda: secrets.token_hex(8))
    #: written to Redis yet? (a take waits for the keeper's next round)
    taken: bool = False
    renewed_at: float = 0.0
    #: another process took the task since, or the event finished
    lost: bool = False
    #: dropped with release while its take was on the wire: release it once written
    release_after_take: bool = False


class Keeper:
    def __init__(
        self,
        client: redis.Redis,
        ttl: float,
        *,
        lease_ttl: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._renew = lua.Runner(client, scripts.RENEW)
        self._leases = lua.Runner(client, scripts.LEASES)
        self._ttl, self._lease_ttl = ttl, lease_ttl if lease_ttl is not None else ttl
        self._clock = clock
        self._holds: set[Hold] = set()
        self._tenancies: set[Tenancy] = set()
        self._releases: list[Tenancy] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        #: renewal round trips made (tests count them)
        self.rounds = 0

    @property
    def ttl(self) -> float:
        return self._ttl

    @property
    def lease_ttl(self) -> float:
        return self._lease_ttl

    # --- delivery locks -------------------------------------------------------------------
    def keep(self, key: str, token: str, *, longest: float) -> Hold:
        """Renew the lock ``key`` (taken just now with ``token``) for at most ``longest``
        seconds, until ``release``."""
        now = self._clock()
        hold = Hold(key, token, now + self._ttl, now + longest, renewed_at=now)
        with self._lock:
            self._holds.add(hold)
            self._ensure_thread()
        return hold

    def release(self, hold: Hold) -> None:
        with self._lock:
            self._holds.discard(hold)

    def confirm(self, hold: Hold) -> bool:
        """Renew ``hold``'s lock now and say whether it is still the holder's: one round
        trip, before each push attempt (the watchdog alone may learn of a lost lock only a
        third of the TTL later). False when Redis cannot say."""
        if hold.lost.is_set():
            return False
        now = self._clock()
        try:
            kept = self._renew(self._renewal([hold]))
        except redis.RedisError:
            return False
        if int(kept[0]):
            hold.confirmed_until, hold.renewed_at = now + self._ttl, now
            return True
        hold.lost.set()
        log.warning("delivery_lock_lost", key=hold.key)
        return False

    # --- event leases ---------------------------------------------------------------------
    def take(self, event_key: str) -> Tenancy:
        """Lease the event: its task is in this process now. Written at the next round,
        which starts at once."""
        tenancy = Tenancy(event_key)
        with self._lock:
            self._tenancies.add(tenancy)
            self._ensure_thread()
        self._wake.set()
        return tenancy

    def drop(self, tenancy: Tenancy, *, release: bool) -> None:
        """Stop renewing ``tenancy``. ``release``: its task went back to the broker, so
        the lease is removed now (in a round that starts at once); otherwise it is left to
        expire (the event is done, or the task crashed: the poller then dispatches the
        event again)."""
        with self._lock:
            self._tenancies.discard(tenancy)
            if release and tenancy.taken and not tenancy.lost:
                self._releases.append(tenancy)
                self._ensure_thread()
            elif release:
                tenancy.release_after_take = True
        if release:
            self._wake.set()

    def drop_all(self) -> None:
        """Release every lease now (a stopping worker hands its tasks back to the broker)."""
        with self._lock:
            self._releases += [t for t in self._tenancies if t.taken and not t.lost]
            self._tenancies.clear()
        self.renew_now()

    # --- the rounds -----------------------------------------------------------------------
    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="keeper", daemon=True)
            self._thread.start()

    def renew_now(self) -> None:
        """One round: every new take, due renewal and release (the thread's step; tests
        call it). Raises nothing that Redis can throw."""
        now = self._clock()
        due, leases = self._due(now)
        if not due and not leases:
            return
        self.rounds += 1
        try:
            lock_replies, lease_replies = self._round(due, leases)
        except redis.RedisError as exc:  # down, BUSY, a script error: the thread lives on
            self._unconfirmed(due, leases, exc)
            return
        for hold, kept in zip(due, lock_replies, strict=True):
            if int(kept):
                hold.confirmed_until, hold.renewed_at = now + self._ttl, now
            else:
                hold.lost.set()
                log.warning("delivery_lock_lost", key=hold.key)
        self._leases_confirmed(leases, lease_replies, now)

    def _due(self, now: float) -> tuple[list[Hold], list[tuple[Tenancy, str]]]:
        """The locks due for renewal, and the lease operations of this round."""
        with self._lock:
            holds = [h for h in self._holds if not h.lost.is_set()]
            tenancies = [t for t in self._tenancies if not t.lost]
            releases, self._releases = self._releases, []
        for hold in holds:
            if now >= hold.renew_until and now >= hold.confirmed_until:
                hold.lost.set()  # past the task's deadline: no longer renewed
        due = [
            h
            for h in holds
            if now < h.renew_until and not h.lost.is_set() and now - h.renewed_at >= self._ttl / 3
        ]
        third = self._lease_ttl / 3
        leases = [(t, "take") for t in tenancies if not t.taken]
        leases += [(t, "renew") for t in tenancies if t.taken and now - t.renewed_at >= third]
        leases += [(t, "release") for t in releases]
        return due, leases

    def _leases_confirmed(
        self, leases: list[tuple[Tenancy, str]], replies: list[Any], now: float
    ) -> None:
        late: list[Tenancy] = []
        for (tenancy, op), kept in zip(leases, replies, strict=True):
            if op == "release":
                continue
            if int(kept):
                tenancy.taken, tenancy.renewed_at = True, now
                if tenancy.release_after_take:
                    late.append(tenancy)  # dropped while this take was on the wire
            else:
                tenancy.lost = True  # finished, or another process took the task since
        if late:
            with self._lock:
                self._releases += late
            self._wake.set()

    def _round(
        self, due: list[Hold], leases: list[tuple[Tenancy, str]]
    ) -> tuple[list[Any], list[Any]]:
        # One script alone (the usual round: a task's lease taken) goes as a plain EVALSHA:
        # redis-py's pipeline asks SCRIPT EXISTS before every execute, a second command.
        lease_call = self._lease_call(leases) if leases else None
        if lease_call is None:
            return self._renew(self._renewal(due)), []
        if not due:
            return [], self._leases(lease_call)
        with self._client.pipeline(transaction=False) as pipe:
            self._renew(self._renewal(due), client=pipe)
            self._leases(lease_call, client=pipe)
            lock_replies, lease_replies = pipe.execute()
        return lock_replies, lease_replies

    def _lease_call(self, leases: list[tuple[Tenancy, str]]) -> scripts.LeasesArgs:
        items = tuple(scripts.LeaseItem(event_key=t.key, op=op, token=t.token) for t, op in leases)
        return scripts.LeasesArgs(ttl=int(self._lease_ttl * 1000), leases=items)

    def _renewal(self, holds: list[Hold]) -> scripts.RenewArgs:
        locks = tuple(scripts.LockItem(lock_key=h.key, token=h.token) for h in holds)
        return scripts.RenewArgs(ttl=int(self._ttl * 1000), locks=locks)

    def _unconfirmed(
        self, due: list[Hold], leases: list[tuple[Tenancy, str]], exc: Exception
    ) -> None:
        # Not confirmed: a lock whose TTL may have run out is treated as lost. Leases are
        # tried again next round (releases too: a lease left behind only expires).
        for hold in due:
            if self._clock() >= hold.confirmed_until:
                hold.lost.set()
        with self._lock:
            self._releases += [t for t, op in leases if op == "release"]
        log.warning(
            "keeper_round_failed", error=type(exc).__name__, locks=len(due), leases=len(leases)
        )

    def _run(self) -> None:
        interval = min(self._ttl, self._lease_ttl) / 3
        while True:
            self._wake.wait(interval)
            self._wake.clear()
            time.sleep(_COALESCE)
            with self._lock:
                if not self._holds and not self._tenancies and not self._releases:
                    self._thread = None
                    return
            try:
                self.renew_now()
            except Exception:  # the watchdog outlives anything one round does
                log.exception("keeper_round_crashed")
                time.sleep(interval)
