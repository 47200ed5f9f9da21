"""The dedup ledger (design.md section 4): one Redis hash per event id, and the only
code that changes one (the delivery finish script uses this module's ``done`` fragment).

States (``EventState``): ``claimed`` (poller, before publishing) → ``queued`` (publish
confirmed; keeps the body so that a lost task can be dispatched again) → ``done``; or
``parked`` (in the DLQ; a replay claims it anew); or ``failed`` (failed for good, not in
the DLQ yet: the poller parks it, or leaves it to the queue's redrive). Every transition
is one Lua script: never read-then-write.

A ``queued`` event carries a lease while a live worker process holds its task (taken
from the broker: prefetched, running or waiting for a retry countdown). The poller, which
holds each message until its event is settled, dispatches again an event whose lease died
with its worker, or whose record vanished (a Redis failover).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import redis

from tasks.keys import DeliveryRef, Keys
from tasks.ledger import lua
from tasks.ledger.scripts import events as scripts
from tasks.ledger.scripts import leases
from tasks.redis_outage import guarded, text


class EventState(StrEnum):
    """The states of an event record (tasks.ledger.scripts.events)."""

    CLAIMED = "claimed"
    QUEUED = "queued"
    DONE = "done"
    PARKED = "parked"
    FAILED = "failed"


class Claim(StrEnum):
    NEW = "new"  # claimed now: publish it
    DONE = "done"  # already done: delete the message
    QUEUED = "queued"  # published already, its task not finished: hold the message
    INFLIGHT = "inflight"  # another poller claimed it and is publishing: hold the message
    CONFLICT = "conflict"  # same id, different payload: park it
    NO_NEWS = "no_news"  # the delivery already shows this state or a later one: done
    FAILED = "failed"  # failed for good, not in the DLQ: park it, or let the queue redrive it


class Lease(StrEnum):
    """What the poller sees of a `queued` event's lease."""

    NONE = ""  # nobody holds its task: waiting in the broker, or lost on the way
    LIVE = "live"  # a live worker process holds its task
    DEAD = "dead"  # the process that held its task stopped renewing: the task is lost


@dataclass(frozen=True, slots=True)
class EventView:
    """One event record as the poller's settling tick reads it."""

    state: EventState | None  # None: the record is gone
    lease: Lease = Lease.NONE
    takes: int = 0
    redispatches: int = 0
    #: the dead-letter kind and reason of a `failed` event
    kind: str = ""
    reason: str = ""


class Reclaim(StrEnum):
    OK = "ok"  # taken back: dispatch it again
    EXHAUSTED = "exhausted"  # re-dispatched too often: park it
    NO = "no"  # not an orphan (any more)


@dataclass(frozen=True, slots=True)
class Orphan:
    """A `queued` event the poller believes lost: its lease is ``dead``, or it has none
    (``none``) and ``takes`` is what the poller saw when it first found it so."""

    dedup_key: str
    mode: str
    takes: int = 0


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    dedup_key: str
    payload_hash: str
    #: the delivery the event names and the rank of the state it implies, for the
    #: no-news shortcut; None for events outside the delivery family
    delivery: DeliveryRef | None = None
    implied_rank: int = -1
    implied_state: str = ""


@dataclass(frozen=True, slots=True)
class QueuedEvent:
    dedup_key: str
    body: str


class Ledger:
    """The dedup ledger. Methods raise LedgerUnavailable when Redis cannot be reached."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        claim_ttl: int,
        queued_ttl: int,
        done_ttl: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._r = client
        self._keys = keys
        self._claim_ttl, self._queued_ttl, self._done_ttl = claim_ttl, queued_ttl, done_ttl
        self._clock = clock
        self._claim = lua.Runner(client, scripts.CLAIM)
        self._release = lua.Runner(client, scripts.RELEASE)
        self._mark_queued = lua.Runner(client, scripts.MARK_QUEUED)
        self._complete = lua.Runner(client, scripts.COMPLETE)
        self._park = lua.Runner(client, scripts.PARK)
        self._fail = lua.Runner(client, scripts.FAIL)
        self._states = lua.Runner(client, scripts.STATES)
        self._views = lua.Runner(client, leases.VIEWS)
        self._reclaim = lua.Runner(client, leases.RECLAIM)

    def claim(self, requests: Sequence[ClaimRequest]) -> list[Claim]:
        """Claim a whole batch in one round trip; one answer per request, in order."""
        if not requests:
            return []
        call = scripts.ClaimArgs(
            now=self._clock(),
            claim_ttl=self._claim_ttl,
            done_ttl=self._done_ttl,
            requests=tuple(self._claim_item(req) for req in requests),
        )
        replies = guarded(lambda: self._claim(call))
        return [Claim(r.decode() if isinstance(r, bytes) else r) for r in replies]

    def _claim_item(self, req: ClaimRequest) -> scripts.ClaimItem:
        event_key = self._keys.event(req.dedup_key)
        return scripts.ClaimItem(
            event_key=event_key,
            # a non-delivery event has no delivery record: its own key stands in, unread
            delivery_key=self._keys.delivery(req.delivery) if req.delivery else event_key,
            payload_hash=req.payload_hash,
            implied_rank=req.implied_rank if req.delivery else -1,
            implied_state=req.implied_state,
        )

    def mark_queued(self, events: Sequence[QueuedEvent]) -> int:
        """Published: keep each body for the sweep, in one round trip.

        Only a `claimed` (or, for the sweep, `queued`) record moves: a fast worker may have
        finished the event already, and its `done` must not turn back into `queued`.
        Returns how many records moved.
        """
        if not events:
            return 0
        call = scripts.MarkQueuedArgs(
            queued_index=self._keys.queued_index,
            now=self._clock(),
            ttl=self._queued_ttl,
            events=tuple(
                scripts.QueuedItem(
                    event_key=self._keys.event(e.dedup_key), dedup_key=e.dedup_key, body=e.body
                )
                for e in events
            ),
        )
        return int(guarded(lambda: self._mark_queued(call)))

    def release_claims(self, dedup_keys: Sequence[str]) -> int:
        """Undo claims whose publish failed, so the redelivered message is claimed anew."""
        if not dedup_keys:
            return 0
        call = scripts.ReleaseArgs(states=EventState.CLAIMED, events=self._items(dedup_keys))
        return int(guarded(lambda: self._release(call)))

    def state(self, dedup_key: str) -> str | None:
        raw = guarded(lambda: self._r.hget(self._keys.event(dedup_key), "state"))
        return raw.decode() if isinstance(raw, bytes) else raw

    def states(self, dedup_keys: Sequence[str]) -> list[str | None]:
        """The state of each event (None when its record is gone), in one round trip."""
        if not dedup_keys:
            return []
        call = scripts.StatesArgs(events=self._items(dedup_keys))
        replies = guarded(lambda: self._states(call))
        return [text(r) or None for r in replies]

    def views(self, dedup_keys: Sequence[str]) -> list[EventView]:
        """Each event's state, lease and counts, in one round trip (the settling tick)."""
        if not dedup_keys:
            return []
        call = leases.ViewsArgs(events=self._items(dedup_keys))
        replies = guarded(lambda: self._views(call))
        return [
            EventView(
                EventState(text(state)) if text(state) else None,
                Lease(text(lease)),
                int(takes),
                int(redispatches),
                text(kind),
                text(reason),
            )
            for state, lease, takes, redispatches, kind, reason in replies
        ]

    def reclaim(self, orphans: Sequence[Orphan], most: int) -> list[Reclaim]:
        """Take back lost tasks' events, atomically, so that one poller re-dispatches each.

        An event re-dispatched more than ``most`` times answers EXHAUSTED (park it: its task
        keeps getting lost, perhaps it kills its worker).
        """
        if not orphans:
            return []
        call = leases.ReclaimArgs(
            most=most,
            orphans=tuple(
                leases.OrphanItem(
                    event_key=self._keys.event(o.dedup_key), mode=o.mode, takes_seen=o.takes
                )
                for o in orphans
            ),
        )
        replies = guarded(lambda: self._reclaim(call))
        return [Reclaim(text(r)) for r in replies]

    def complete(self, dedup_key: str, how: str, payload_hash: str = "") -> None:
        """The event's work is finished: keep a `done` record for the retention period."""
        call = scripts.CompleteArgs(
            event_key=self._keys.event(dedup_key),
            queued_index=self._keys.queued_index,
            now=self._clock(),
            ttl=self._done_ttl,
            how=how,
            payload_hash=payload_hash,
            dedup_key=dedup_key,
        )
        guarded(lambda: self._complete(call))

    def mark_parked(self, dedup_key: str, kind: str) -> None:
        """The DLQ accepted the event's message (never before): the poller deletes its
        held copy, a replay runs it again."""
        call = scripts.ParkArgs(
            event_key=self._keys.event(dedup_key),
            queued_index=self._keys.queued_index,
            now=self._clock(),
            ttl=self._queued_ttl,
            dedup_key=dedup_key,
            kind=kind,
        )
        guarded(lambda: self._park(call))

    def mark_failed(self, dedup_key: str, kind: str, reason: str) -> bool:
        """The event failed for good but no DLQ took it: the poller that holds its message
        parks it (its own DLQ) or leaves it to the queue's redrive policy. False when the
        event was finished already."""
        call = scripts.FailArgs(
            event_key=self._keys.event(dedup_key),
            queued_index=self._keys.queued_index,
            now=self._clock(),
            ttl=self._queued_ttl,
            dedup_key=dedup_key,
            kind=kind,
            reason=reason,
        )
        return bool(guarded(lambda: self._fail(call)))

    def _items(self, dedup_keys: Sequence[str]) -> tuple[scripts.EventItem, ...]:
        return tuple(scripts.EventItem(event_key=self._keys.event(k)) for k in dedup_keys)

    def postpone_sweep(self, dedup_key: str, seconds: float) -> None:
        """A retry is scheduled: keep the sweep away from this event until it is due."""
        guarded(
            lambda: self._r.zadd(
                self._keys.queued_index, {dedup_key: self._clock() + seconds}, xx=True
            )
        )

    def stale_queued(self, older_than: float, limit: int) -> list[QueuedEvent]:
        """Events still `queued` whose sweep time is over ``older_than`` seconds ago.

        Index entries whose record is gone or finished are dropped on the way; an event
        whose task a live worker holds (a live lease) is left alone.
        """
        cutoff = self._clock() - older_than

        def run() -> list[QueuedEvent]:
            raw: list[bytes] = self._r.zrangebyscore(  # type: ignore[assignment]
                self._keys.queued_index, "-inf", cutoff, 0, limit
            )
            members = [text(m) for m in raw]
            if not members:
                return []
            with self._r.pipeline(transaction=False) as pipe:
                pipe.time()
                for member in members:
                    pipe.hmget(self._keys.event(member), "state", "body", "lease")
                server_time, *records = pipe.execute()
            now_ms = server_time[0] * 1000 + server_time[1] // 1000
            found, gone = [], []
            for member, (state, body, lease) in zip(members, records, strict=True):
                if state is not None and text(state) == EventState.QUEUED and body is not None:
                    if lease is None or _lease_expiry(text(lease)) <= now_ms:
                        found.append(QueuedEvent(member, text(body)))
                else:
                    gone.append(member)
            if gone:
                self._r.zrem(self._keys.queued_index, *gone)
            return found

        return guarded(run)


def _lease_expiry(lease: str) -> int:
    """The expiry (Redis server ms) of a lease ``"<token>:<expiry ms>"``."""
    _, _, expiry = lease.rpartition(":")
    return int(expiry) if expiry.isdigit() else 0
