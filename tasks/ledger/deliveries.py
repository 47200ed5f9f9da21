"""Per-delivery state in Redis: what was last pushed, and a short lock serialising pushes.

A sync is two round trips, each one Lua script:

- ``begin``: is the event already done? if not, take the delivery's lock (``SET NX PX``
  with a random token) and read what was last pushed;
- ``finish``: record the pushed snapshot (and keep the open-deliveries index for
  reconciliation), mark the event `done` in the dedup ledger, release the lock — all
  at once, so no crash can leave a push recorded and its event not done or the lock held.

The lock lives a short TTL and is renewed by its holder's process while the sync runs
(tasks.ledger.keeper); the finish is fenced: it writes only while the lock is still the
caller's, and never lowers the recorded rank. So a slow sync cannot lose its lock to a
newer one and then write an older snapshot last.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field

import redis

from tasks.errors import DeliveryBusy
from tasks.keys import DeliveryRef, Keys
from tasks.ledger import lua
from tasks.ledger.events import EventState
from tasks.ledger.keeper import Hold, Keeper
from tasks.ledger.scripts import deliveries as scripts
from tasks.model.pushed import Pushed
from tasks.redis_outage import UNAVAILABLE, redis_outage, text


@dataclass(frozen=True, slots=True)
class Lease:
    """A held delivery lock, and what was last pushed for the delivery when it was taken."""

    ref: DeliveryRef
    token: str
    last: Pushed | None
    #: the state last pushed ('' when none)
    last_state: str = ""
    hold: Hold | None = field(default=None, compare=False)

    def still_held(self) -> bool:
        """False once the lock may be another's: the sync must not push then."""
        return self.hold is None or self.hold.held(time.monotonic())

    def shows(self, implied_rank: int, implied_state: str) -> bool:
        """The pushed state already covers an event implying ``implied_state``: a later
        state, or this very one (DELIVERED and CANCELLED share a rank, and differ)."""
        if self.last is None:
            return False
        return self.last.rank > implied_rank or (
            self.last.rank == implied_rank and self.last_state == implied_state
        )


#: an event to mark done: (dedup key, how, payload hash)
Completion = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class Record:
    """A pushed snapshot to remember."""

    pushed: Pushed
    state: str
    terminal: bool
    #: the tracker index entry to point at this delivery: (key, ttl), or None
    tracker: tuple[str, int] | None = None


class DeliveryStates:
    """Raises LedgerUnavailable when Redis is unreachable, DeliveryBusy on a held lock."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        state_ttl: int,
        done_ttl: int,
        lock_ttl: float,
        lock_wait: float,
        longest_sync: float = 600.0,
        open_bound: int = 100_000,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        keeper: Keeper | None = None,
    ) -> None:
        self._r = client
        self._keys = keys
        self._state_ttl, self._done_ttl = state_ttl, done_ttl
        self._lock_ttl_ms = int(lock_ttl * 1000)
        self._lock_wait = lock_wait
        self._longest, self._open_bound = longest_sync, open_bound
        #: the process's watchdog (delivery locks, and event leases when shared)
        self.keeper = keeper if keeper is not None else Keeper(client, lock_ttl)
        self._clock, self._sleep = clock, sleep
        self._begin = lua.Runner(client, scripts.BEGIN)
        self._finish = lua.Runner(client, scripts.FINISH)
        self._stale_open = lua.Runner(client, scripts.STALE_OPEN)

    def begin(self, ref: DeliveryRef, dedup_key: str | None = None) -> Lease | None:
        """Take the delivery's lock; None when ``dedup_key``'s event is already done.

        Waits up to ``lock_wait`` seconds for a held lock, then raises DeliveryBusy.
        """
        lock = self._keys.delivery_lock(ref)
        token = secrets.token_hex(8)
        call = scripts.BeginArgs(
            lock_key=lock,
            delivery_key=self._keys.delivery(ref),
            # without an event, the lock key stands in (has_event False: never read)
            event_key=self._keys.event(dedup_key) if dedup_key is not None else lock,
            token=token,
            lock_ttl=self._lock_ttl_ms,
            has_event=dedup_key is not None,
        )
        deadline = self._clock() + self._lock_wait
        delay = 0.01
        while True:
            with redis_outage():
                reply = [text(part) for part in self._begin(call)]
            if reply[0] == EventState.DONE:
                return None
            if reply[0] == "locked":
                last = Pushed(reply[1], int(reply[2])) if reply[1] and reply[2] else None
                hold = self.keeper.keep(lock, token, longest=self._longest)
                return Lease(ref, token, last, reply[3], hold)
            if self._clock() >= deadline:
                raise DeliveryBusy(f"delivery {ref} is locked by another worker")
            self._sleep(delay)
            delay = min(delay * 2, 0.2)

    def finish(
        self,
        lease: Lease,
        *,
        record: Record | None = None,
        complete: Completion | None = None,
    ) -> None:
        """Record a push, complete an event, release the lock: one step.

        Raises DeliveryBusy (nothing written) when the lock was no longer the lease's.
        """
        self._unkeep(lease)
        if not self._run_finish(lease.ref, lease.token, record, complete):
            raise DeliveryBusy(f"delivery {lease.ref}: the lock was lost before finishing")

    def confirm(self, lease: Lease) -> bool:
        """Is the lease's lock still the caller's? Checked (and renewed) in Redis now."""
        if lease.hold is None:
            return True
        return self.keeper.confirm(lease.hold)

    def release(self, lease: Lease) -> None:
        """Give the lock back after a failure; if Redis is gone the lock expires by itself."""
        self._unkeep(lease)
        with suppress(*UNAVAILABLE):
            self._run_finish(lease.ref, lease.token, None, None)

    def _unkeep(self, lease: Lease) -> None:
        if lease.hold is not None:
            self.keeper.release(lease.hold)

    def record_push(self, ref: DeliveryRef, pushed: Pushed, state: str, *, terminal: bool) -> None:
        """Remember a pushed snapshot outside a lease (operators' tools, tests)."""
        self._run_finish(ref, "", Record(pushed, state, terminal), None)

    def _run_finish(
        self,
        ref: DeliveryRef,
        token: str,
        record: Record | None,
        complete: Completion | None,
    ) -> bool:
        dedup_key, how, payload_hash = complete or ("", "", "")
        lock = self._keys.delivery_lock(ref)
        tracker = record.tracker if record else None
        call = scripts.FinishArgs(
            lock_key=lock,
            delivery_key=self._keys.delivery(ref),
            open_index=self._keys.open_deliveries,
            # without a completion, the record of dedup key '' stands in (never touched)
            event_key=self._keys.event(dedup_key),
            queued_index=self._keys.queued_index,
            # without a tracker, the lock key stands in (has_tracker False: never touched)
            tracker_key=tracker[0] if tracker else lock,
            token=token,
            now=self._clock(),
            state_ttl=self._state_ttl,
            done_ttl=self._done_ttl,
            member=str(ref),
            has_record=record is not None,
            fingerprint=record.pushed.fingerprint if record else "",
            rank=record.pushed.rank if record else 0,
            state=record.state if record else "",
            terminal=bool(record and record.terminal),
            complete=complete is not None,
            dedup_key=dedup_key,
            how=how,
            payload_hash=payload_hash,
            open_bound=self._open_bound,
            has_tracker=tracker is not None,
            business_product_id=ref.business_product_id,
            order_id=ref.order_id,
            delivery_id=ref.delivery_id,
            tracker_ttl=tracker[1] if tracker else 0,
        )
        with redis_outage():
            return bool(self._finish(call))

    def last_pushed(self, ref: DeliveryRef) -> Pushed | None:
        with redis_outage():
            fingerprint, rank = self._r.hmget(self._keys.delivery(ref), "fp", "rank")
        if fingerprint is None or rank is None:
            return None
        return Pushed(text(fingerprint), int(rank))

    def stale_open(self, older_than: float, limit: int) -> list[DeliveryRef]:
        """Non-terminal deliveries last synced more than ``older_than`` seconds ago.

        Deliveries whose record expired (no push for the state TTL) leave the index here.
        """
        cutoff = self._clock() - older_than
        # the record's key is the delivery key of the member (tasks.keys.Keys.delivery)
        record_prefix = self._keys.delivery(DeliveryRef("", "", ""))[: -len("//")]
        with redis_outage():
            members: list[bytes] = self._stale_open(
                scripts.StaleOpenArgs(
                    open_index=self._keys.open_deliveries,
                    limit=limit,
                    cutoff=cutoff,
                    record_prefix=record_prefix,
                )
            )
        refs = []
        for member in members:
            parts = text(member).split("/")
            if len(parts) == 3:  # ids cannot hold a slash (tasks.events.resources)
                refs.append(DeliveryRef(*parts))
        return refs

    def forget_open(self, ref: DeliveryRef) -> None:
        """A delivery that failed for good: reconciliation stops asking about it."""
        with redis_outage():
            self._r.zrem(self._keys.open_deliveries, str(ref))

    def touch_open(self, refs: list[DeliveryRef]) -> None:
        """Synced just now: due again after the interval (XX: terminal ones stay gone)."""
        if refs:
            with redis_outage():
                self._r.zadd(
                    self._keys.open_deliveries, {str(r): self._clock() for r in refs}, xx=True
                )
