"""The dedup ledger (design.md section 4): one Redis hash per event id.

States: ``claimed`` (poller, before publishing) → ``queued`` (publish confirmed; keeps
the body so the sweep can re-dispatch a lost task) → ``done``. Every transition is one
Lua script or one MULTI transaction: never read-then-write.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis

from tasks.keys import DeliveryRef, Keys
from tasks.redis_outage import guarded, text


class Claim(StrEnum):
    NEW = "new"  # claimed now: publish it
    DUPLICATE = "duplicate"  # already queued or done: delete the message
    INFLIGHT = "inflight"  # another poller holds the claim: leave the message in SQS
    CONFLICT = "conflict"  # same id, different payload: park it
    NO_NEWS = "no_news"  # the delivery already shows this state or a later one: done


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    dedup_key: str
    payload_hash: str
    #: the delivery the event names and the rank of the state it implies, for the
    #: no-news shortcut; None for events outside the delivery family
    delivery: DeliveryRef | None = None
    implied_rank: int = -1


# KEYS: per request [event key, delivery key]; ARGV: now, claim_ttl, done_ttl, then per
# request [payload hash, implied rank]. One reply per request.
_CLAIM = """
local now, claim_ttl, done_ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
for i = 1, #KEYS, 2 do
  local ekey, dkey = KEYS[i], KEYS[i + 1]
  local hash, implied = ARGV[3 + i], tonumber(ARGV[4 + i])
  local found = redis.call('HMGET', ekey, 'state', 'hash')
  if found[1] then
    if found[2] ~= hash then out[#out + 1] = 'conflict'
    elseif found[1] == 'claimed' then out[#out + 1] = 'inflight'
    else out[#out + 1] = 'duplicate' end
  else
    local pushed = tonumber(redis.call('HGET', dkey, 'rank') or '-1')
    if implied >= 0 and pushed >= implied then
      redis.call('HSET', ekey, 'state', 'done', 'hash', hash, 'at', now, 'how', 'no_news')
      redis.call('EXPIRE', ekey, done_ttl)
      out[#out + 1] = 'no_news'
    else
      redis.call('HSET', ekey, 'state', 'claimed', 'hash', hash, 'at', now)
      redis.call('EXPIRE', ekey, claim_ttl)
      out[#out + 1] = 'new'
    end
  end
end
return out
"""

# KEYS: event keys, then the queued index; ARGV: now, ttl, then per event: dedup key, body.
_MARK_QUEUED = """
local index, now, ttl, moved = KEYS[#KEYS], ARGV[1], tonumber(ARGV[2]), 0
for i = 1, #KEYS - 1 do
  local state = redis.call('HGET', KEYS[i], 'state')
  if state == 'claimed' or state == 'queued' then
    redis.call('HSET', KEYS[i], 'state', 'queued', 'body', ARGV[2 + 2 * i], 'at', now)
    redis.call('EXPIRE', KEYS[i], ttl)
    redis.call('ZADD', index, now, ARGV[1 + 2 * i])
    moved = moved + 1
  end
end
return moved
"""

# KEYS: event keys; ARGV: allowed states joined by ','. Deletes records in those states.
_RELEASE = """
local n = 0
for i = 1, #KEYS do
  local state = redis.call('HGET', KEYS[i], 'state')
  if state and string.find(',' .. ARGV[1] .. ',', ',' .. state .. ',', 1, true) then
    redis.call('DEL', KEYS[i]); n = n + 1
  end
end
return n
"""


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
        self._claim = client.register_script(_CLAIM)
        self._release = client.register_script(_RELEASE)
        self._mark_queued = client.register_script(_MARK_QUEUED)

    def claim(self, requests: Sequence[ClaimRequest]) -> list[Claim]:
        """Claim a whole batch in one round trip; one answer per request, in order."""
        if not requests:
            return []
        keys: list[str] = []
        argv: list[Any] = [self._clock(), self._claim_ttl, self._done_ttl]
        for req in requests:
            event_key = self._keys.event(req.dedup_key)
            # a non-delivery event has no delivery record: its own key stands in
            keys += [event_key, self._keys.delivery(req.delivery) if req.delivery else event_key]
            argv += [req.payload_hash, req.implied_rank if req.delivery else -1]
        replies = guarded(lambda: self._claim(keys=keys, args=argv))
        return [Claim(r.decode() if isinstance(r, bytes) else r) for r in replies]

    def mark_queued(self, events: Sequence[QueuedEvent]) -> int:
        """Published: keep each body for the sweep, in one round trip.

        Only a `claimed` (or, for the sweep, `queued`) record moves: a fast worker may have
        finished the event already, and its `done` must not turn back into `queued`.
        Returns how many records moved.
        """
        if not events:
            return 0
        keys = [self._keys.event(e.dedup_key) for e in events] + [self._keys.queued_index]
        argv: list[str | float | int] = [self._clock(), self._queued_ttl]
        for event in events:
            argv += [event.dedup_key, event.body]
        return int(guarded(lambda: self._mark_queued(keys=keys, args=argv)))

    def release_claims(self, dedup_keys: Sequence[str]) -> int:
        """Undo claims whose publish failed, so the redelivered message is claimed anew."""
        if not dedup_keys:
            return 0
        keys = [self._keys.event(k) for k in dedup_keys]
        return int(guarded(lambda: self._release(keys=keys, args=["claimed"])))

    def state(self, dedup_key: str) -> str | None:
        raw = guarded(lambda: self._r.hget(self._keys.event(dedup_key), "state"))
        return raw.decode() if isinstance(raw, bytes) else raw

    def complete(self, dedup_key: str, how: str) -> None:
        """The event's work is finished: keep a `done` record for the retention period."""
        key = self._keys.event(dedup_key)

        def run() -> None:
            with self._r.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping={"state": "done", "at": self._clock(), "how": how})
                pipe.hdel(key, "body")
                pipe.expire(key, self._done_ttl)
                pipe.zrem(self._keys.queued_index, dedup_key)
                pipe.execute()

        guarded(run)

    def forget(self, dedup_key: str) -> None:
        """Drop the record (after parking), so that a replay from the DLQ runs again."""

        def run() -> None:
            with self._r.pipeline(transaction=True) as pipe:
                pipe.delete(self._keys.event(dedup_key))
                pipe.zrem(self._keys.queued_index, dedup_key)
                pipe.execute()

        guarded(run)

    def postpone_sweep(self, dedup_key: str, seconds: float) -> None:
        """A retry is scheduled: keep the sweep away from this event until it is due."""
        guarded(
            lambda: self._r.zadd(
                self._keys.queued_index, {dedup_key: self._clock() + seconds}, xx=True
            )
        )

    def stale_queued(self, older_than: float, limit: int) -> list[QueuedEvent]:
        """Events still `queued` whose sweep time is over ``older_than`` seconds ago.

        Index entries whose record is gone or finished are dropped on the way.
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
                for member in members:
                    pipe.hmget(self._keys.event(member), "state", "body")
                records = pipe.execute()
            found, gone = [], []
            for member, (state, body) in zip(members, records, strict=True):
                if state == b"queued" and body is not None:
                    found.append(QueuedEvent(member, text(body)))
                else:
                    gone.append(member)
            if gone:
                self._r.zrem(self._keys.queued_index, *gone)
            return found

        return guarded(run)
