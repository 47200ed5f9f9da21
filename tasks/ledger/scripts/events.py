"""The event record's scripts (tasks.ledger.events is their only caller), and the ``done``
fragment the delivery finish script shares, so that the record's transitions are written
once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from tasks.ledger.lua import Key, Script

# Marks an event done, keeping (or, on a record Redis lost, restoring) its payload hash so
# that a later copy is compared with it and never taken for a conflict. ``queued_index``
# is read only with a ``dedup_key``.
EVENT_DONE: Final = """
-- stale: false when the caller knows the record holds no body, lease or reason to drop
-- (one HDEL less per event)
local function event_done(ekey, now, ttl, how, hash, queued_index, dedup_key, stale)
  if hash ~= '' then redis.call('HSET', ekey, 'state', 'done', 'at', now, 'how', how, 'hash', hash)
  else redis.call('HSET', ekey, 'state', 'done', 'at', now, 'how', how) end
  if stale ~= false then redis.call('HDEL', ekey, 'body', 'lease', 'why') end
  redis.call('EXPIRE', ekey, ttl)
  if dedup_key ~= '' then redis.call('ZREM', queued_index, dedup_key) end
end
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class EventItem:
    """One event of a batch that names only its record."""

    event_key: Key


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimItem:
    event_key: Key
    delivery_key: Key
    payload_hash: str
    implied_rank: int
    implied_state: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimArgs:
    now: float
    claim_ttl: int
    done_ttl: int
    requests: tuple[ClaimItem, ...]


CLAIM: Final = Script(
    ClaimArgs,
    """
-- Claims a batch of events. Reply per request: 'new' (claimed now), 'done', 'queued',
-- 'inflight' (claimed, being published), 'failed', 'conflict' (same id, another
-- payload) or 'no_news' (the delivery shows it already: marked done now).
-- KEYS, per request:
--   event_key      the event record
--   delivery_key   the delivery record the event names; an event outside the delivery
--                  family passes its event key again, with implied_rank -1 (not read)
-- ARGV:
--   now            Unix time (s)
--   claim_ttl      ttl (s) of a `claimed` record
--   done_ttl       ttl (s) of a `done` record
-- then per request:
--   payload_hash   the payload's hash: a copy with another one is a conflict
--   implied_rank   the rank of the delivery state the event implies (-1: none)
--   implied_state  that state
local now = ARGV[1]
local claim_ttl = tonumber(ARGV[2])
local done_ttl = tonumber(ARGV[3])
local requests = {}
for i = 1, #KEYS / 2 do
  requests[i] = {
    event_key = KEYS[2 * i - 1],
    delivery_key = KEYS[2 * i],
    payload_hash = ARGV[3 * i + 1],
    implied_rank = tonumber(ARGV[3 * i + 2]),
    implied_state = ARGV[3 * i + 3],
  }
end

-- "No news" only when the delivery already shows a later state, or this very state:
-- DELIVERED and CANCELLED share a rank, and one after the other is news.
local out = {}
for _, r in ipairs(requests) do
  local hash, implied = r.payload_hash, r.implied_rank
  local found = redis.call('HMGET', r.event_key, 'state', 'hash', 'body', 'lease', 'how', 'why')
  -- what a new claim must drop: a parked record's, or a lease written after the record
  -- vanished (a new record holds none of it: no HDEL)
  local stale = found[3] or found[4] or found[5] or found[6]
  if found[1] and found[1] ~= 'parked' then
    if found[2] and found[2] ~= hash then out[#out + 1] = 'conflict'
    elseif found[1] == 'claimed' then out[#out + 1] = 'inflight'
    elseif found[1] == 'queued' then out[#out + 1] = 'queued'
    elseif found[1] == 'failed' then out[#out + 1] = 'failed'
    else out[#out + 1] = 'done' end
  else
    local pushed = redis.call('HMGET', r.delivery_key, 'rank', 'state')
    local rank = tonumber(pushed[1] or '-1')
    if implied >= 0 and (rank > implied or (rank == implied and pushed[2] == r.implied_state)) then
      event_done(r.event_key, now, done_ttl, 'no_news', hash, '', '', stale and true or false)
      out[#out + 1] = 'no_news'
    else
      redis.call('HSET', r.event_key, 'state', 'claimed', 'hash', hash, 'at', now)
      if stale then redis.call('HDEL', r.event_key, 'lease', 'how', 'why') end
      redis.call('EXPIRE', r.event_key, claim_ttl)
      out[#out + 1] = 'new'
    end
  end
end
return out
""",
    (EVENT_DONE,),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class QueuedItem:
    event_key: Key
    dedup_key: str
    body: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MarkQueuedArgs:
    queued_index: Key
    now: float
    ttl: int
    events: tuple[QueuedItem, ...]


MARK_QUEUED: Final = Script(
    MarkQueuedArgs,
    """
-- Published: each event keeps its body for the sweep. Only a `claimed` (or, for the
-- sweep, `queued`) record moves: a fast worker's `done` must not turn back into `queued`.
-- Reply: how many records moved.
-- KEYS:
--   queued_index  the sweep's index of queued events
-- then per event:
--   event_key     the event record
-- ARGV:
--   now           Unix time (s)
--   ttl           ttl (s) of a `queued` record
-- then per event:
--   dedup_key     the event's dedup key (its member in the index)
--   body          the message body, to dispatch it again
local queued_index = KEYS[1]
local now = ARGV[1]
local ttl = tonumber(ARGV[2])
local events = {}
for i = 1, #KEYS - 1 do
  events[i] = {
    event_key = KEYS[i + 1],
    dedup_key = ARGV[2 * i + 1],
    body = ARGV[2 * i + 2],
  }
end

local moved = 0
for _, e in ipairs(events) do
  local state = redis.call('HGET', e.event_key, 'state')
  if state == 'claimed' or state == 'queued' then
    redis.call('HSET', e.event_key, 'state', 'queued', 'body', e.body, 'at', now)
    redis.call('EXPIRE', e.event_key, ttl)
    redis.call('ZADD', queued_index, now, e.dedup_key)
    moved = moved + 1
  end
end
return moved
""",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseArgs:
    states: str
    events: tuple[EventItem, ...]


RELEASE: Final = Script(
    ReleaseArgs,
    """
-- Deletes the records that are in one of the given states. Reply: how many.
-- KEYS, per event:
--   event_key  the event record
-- ARGV:
--   states     the states to delete, joined by ','
local states = ARGV[1]
local events = {}
for i = 1, #KEYS do
  events[i] = {event_key = KEYS[i]}
end

local n = 0
for _, e in ipairs(events) do
  local state = redis.call('HGET', e.event_key, 'state')
  if state and string.find(',' .. states .. ',', ',' .. state .. ',', 1, true) then
    redis.call('DEL', e.event_key); n = n + 1
  end
end
return n
""",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class CompleteArgs:
    event_key: Key
    queued_index: Key
    now: float
    ttl: int
    how: str
    payload_hash: str
    dedup_key: str


COMPLETE: Final = Script(
    CompleteArgs,
    """
-- The event's work is finished: a `done` record for the retention period. Reply: 1.
-- KEYS:
--   event_key     the event record
--   queued_index  the sweep's index of queued events
-- ARGV:
--   now           Unix time (s)
--   ttl           ttl (s) of a `done` record
--   how           how it ended (a word: synced, skipped, ...)
--   payload_hash  the payload's hash ('' keeps the recorded one)
--   dedup_key     the event's dedup key (leaves the index)
local event_key = KEYS[1]
local queued_index = KEYS[2]
local now = ARGV[1]
local ttl = ARGV[2]
local how = ARGV[3]
local payload_hash = ARGV[4]
local dedup_key = ARGV[5]

event_done(event_key, now, ttl, how, payload_hash, queued_index, dedup_key)
return 1
""",
    (EVENT_DONE,),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ParkArgs:
    event_key: Key
    queued_index: Key
    now: float
    ttl: int
    dedup_key: str
    kind: str


PARK: Final = Script(
    ParkArgs,
    """
-- The DLQ took the event's message: the poller deletes it, a replayed copy claims it
-- anew. Reply: 1.
-- KEYS:
--   event_key     the event record
--   queued_index  the sweep's index of queued events
-- ARGV:
--   now           Unix time (s)
--   ttl           ttl (s) of the `parked` record
--   dedup_key     the event's dedup key (leaves the index)
--   kind          the dead-letter kind
local event_key = KEYS[1]
local queued_index = KEYS[2]
local now = ARGV[1]
local ttl = ARGV[2]
local dedup_key = ARGV[3]
local kind = ARGV[4]

redis.call('HSET', event_key, 'state', 'parked', 'at', now, 'how', kind)
redis.call('HDEL', event_key, 'body', 'lease', 'why')
redis.call('EXPIRE', event_key, ttl)
redis.call('ZREM', queued_index, dedup_key)
return 1
""",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class FailArgs:
    event_key: Key
    queued_index: Key
    now: float
    ttl: int
    dedup_key: str
    kind: str
    reason: str


FAIL: Final = Script(
    FailArgs,
    """
-- Failed for good, not (yet) in the DLQ: the worker had no DLQ, or the DLQ would not
-- take it. The body stays, so that the poller (which holds the message) can park it
-- itself. Reply: 1, or 0 when the event was finished already (`done` or `parked`).
-- KEYS:
--   event_key     the event record
--   queued_index  the sweep's index of queued events
-- ARGV:
--   now           Unix time (s)
--   ttl           ttl (s) of the `failed` record
--   dedup_key     the event's dedup key (leaves the index)
--   kind          the dead-letter kind
--   reason        why (one line)
local event_key = KEYS[1]
local queued_index = KEYS[2]
local now = ARGV[1]
local ttl = ARGV[2]
local dedup_key = ARGV[3]
local kind = ARGV[4]
local reason = ARGV[5]

local state = redis.call('HGET', event_key, 'state')
if state == 'done' or state == 'parked' then return 0 end
redis.call('HSET', event_key, 'state', 'failed', 'at', now, 'how', kind, 'why', reason)
redis.call('HDEL', event_key, 'lease')
redis.call('EXPIRE', event_key, ttl)
redis.call('ZREM', queued_index, dedup_key)
return 1
""",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class StatesArgs:
    events: tuple[EventItem, ...]


STATES: Final = Script(
    StatesArgs,
    """
-- The state of each event ('' when the record is gone), in one round trip.
-- KEYS, per event:
--   event_key  the event record
local events = {}
for i = 1, #KEYS do
  events[i] = {event_key = KEYS[i]}
end

local out = {}
for i, e in ipairs(events) do out[i] = redis.call('HGET', e.event_key, 'state') or '' end
return out
""",
)
