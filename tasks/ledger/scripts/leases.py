"""Event leases and delivery locks: a worker process's keeper takes, renews and releases
them (tasks.ledger.keeper); the poller reads the leases and takes back lost tasks
(tasks.ledger.events: ``views``, ``reclaim``). Leases are judged on Redis's clock."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from tasks.ledger.lua import SERVER_MS, Key, Script
from tasks.ledger.scripts.events import EventItem


@dataclass(frozen=True, slots=True, kw_only=True)
class ViewsArgs:
    events: tuple[EventItem, ...]


# What the poller's settling tick needs of every event it holds, in one round trip.
VIEWS: Final = Script(
    ViewsArgs,
    """
-- Reply per record: {state ('' when gone), lease ('', 'live' or 'dead'), takes,
--                    redispatches, kind, reason} (kind and reason of a `failed` record)
-- KEYS, per event:
--   event_key  the event record
local events = {}
for i = 1, #KEYS do
  events[i] = {event_key = KEYS[i]}
end

local now = server_ms()
local out = {}
for i, e in ipairs(events) do
  local f = redis.call('HMGET', e.event_key, 'state', 'lease', 'takes', 'redispatches', 'how',
    'why')
  local lease = ''
  if f[2] then
    local expiry = tonumber(string.match(f[2], ':(%d+)$') or '0')
    if expiry > now then lease = 'live' else lease = 'dead' end
  end
  local kind, reason = '', ''
  if f[1] == 'failed' then kind, reason = f[5] or '', f[6] or '' end
  out[i] = {f[1] or '', lease, f[3] or '0', f[4] or '0', kind, reason}
end
return out
""",
    (SERVER_MS,),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class OrphanItem:
    event_key: Key
    mode: str
    takes_seen: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReclaimArgs:
    most: int
    orphans: tuple[OrphanItem, ...]


# The poller takes back a `queued` event whose task is gone, so that exactly one poller
# dispatches it again: its lease expired ('dead'), or it has none and nobody took it since
# the poller first saw it so ('none', with the takes then seen).
RECLAIM: Final = Script(
    ReclaimArgs,
    """
-- Reply per record: 'ok' (dispatch it again), 'exhausted' (re-dispatched too often:
-- park it) or 'no' (not an orphan any more)
-- KEYS, per orphan:
--   event_key   the event record
-- ARGV:
--   most        the most re-dispatches of one event
-- then per orphan:
--   mode        'dead' (its lease expired) or 'none' (it has none)
--   takes_seen  the takes the poller saw when it found it so
local most = tonumber(ARGV[1])
local orphans = {}
for i = 1, #KEYS do
  orphans[i] = {
    event_key = KEYS[i],
    mode = ARGV[2 * i],
    takes_seen = ARGV[2 * i + 1],
  }
end

local now = server_ms()
local out = {}
for i, o in ipairs(orphans) do
  local f = redis.call('HMGET', o.event_key, 'state', 'lease', 'takes')
  local orphan = false
  if f[1] == 'queued' then
    if o.mode == 'dead' and f[2] then
      orphan = tonumber(string.match(f[2], ':(%d+)$') or '0') <= now
    elseif o.mode == 'none' and not f[2] then
      orphan = (f[3] or '0') == o.takes_seen
    end
  end
  if not orphan then out[i] = 'no'
  else
    redis.call('HDEL', o.event_key, 'lease')
    if redis.call('HINCRBY', o.event_key, 'redispatches', 1) > most then out[i] = 'exhausted'
    else out[i] = 'ok' end
  end
end
return out
""",
    (SERVER_MS,),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseItem:
    event_key: Key
    op: str
    token: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LeasesArgs:
    ttl: int
    leases: tuple[LeaseItem, ...]


# A worker process's round for the event leases it holds: take the new ones, renew the
# rest, release those whose task went back to the broker (a retry) or was revoked.
LEASES: Final = Script(
    LeasesArgs,
    """
-- Reply per record: 1 while the lease is the caller's, else 0 (another took the task, or
-- the event is finished). A take writes over another's lease: the latest taker owns it.
-- KEYS, per lease:
--   event_key  the event record
-- ARGV:
--   ttl        lease ttl (ms)
-- then per lease:
--   op         'take', 'renew' or 'release'
--   token      the holding process's token
local ttl = tonumber(ARGV[1])
local leases = {}
for i = 1, #KEYS do
  leases[i] = {
    event_key = KEYS[i],
    op = ARGV[2 * i],
    token = ARGV[2 * i + 1],
  }
end

local now = server_ms()
local out = {}
for i, l in ipairs(leases) do
  local op, token = l.op, l.token
  local f = redis.call('HMGET', l.event_key, 'state', 'lease', 'takes')
  local open = f[1] == 'queued' or f[1] == 'claimed'
  local mine = f[2] ~= false and string.sub(f[2], 1, #token + 1) == token .. ':'
  out[i] = 0
  if op == 'take' and open then
    -- one HSET: the takes counter was read above, in this same atomic script
    local takes = (tonumber(f[3]) or 0) + 1
    redis.call('HSET', l.event_key, 'lease', token .. ':' .. (now + ttl), 'takes', takes)
    out[i] = 1
  elseif op == 'renew' and open and mine then
    redis.call('HSET', l.event_key, 'lease', token .. ':' .. (now + ttl))
    out[i] = 1
  elseif op == 'release' and mine then
    redis.call('HDEL', l.event_key, 'lease')
  end
end
return out
""",
    (SERVER_MS,),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class LockItem:
    lock_key: Key
    token: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RenewArgs:
    ttl: int
    locks: tuple[LockItem, ...]


RENEW: Final = Script(
    RenewArgs,
    """
-- Extends each delivery lock that is still its holder's. Reply per lock: 1, else 0 (the
-- lease is lost).
-- KEYS, per lock:
--   lock_key  the delivery lock
-- ARGV:
--   ttl       lock ttl (ms)
-- then per lock:
--   token     its holder's token
local ttl = ARGV[1]
local locks = {}
for i = 1, #KEYS do
  locks[i] = {
    lock_key = KEYS[i],
    token = ARGV[i + 1],
  }
end

local out = {}
for i, l in ipairs(locks) do
  if redis.call('GET', l.lock_key) == l.token then
    redis.call('PEXPIRE', l.lock_key, ttl); out[i] = 1
  else out[i] = 0 end
end
return out
""",
)
