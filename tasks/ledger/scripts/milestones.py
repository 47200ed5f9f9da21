"""Milestone coalescing (tasks.ledger.milestones): one order query per tracker per window,
judged on Redis's clock."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from tasks.ledger.lua import Key, Script


@dataclass(frozen=True, slots=True, kw_only=True)
class AdmitArgs:
    tracker_key: Key
    arrival_key: Key
    window: int
    ttl: int


# Milliseconds keep the numbers below 10^14, which Lua's number-to-string conversion keeps
# exact.
ADMIT: Final = Script(
    AdmitArgs,
    """
-- May this milestone event query now? Reply: {'covered', 0}, {'wait', ms to wait} or
-- {'query', start ms}.
-- KEYS:
--   tracker_key  the tracker's hash (when a query last began, and the start of the
--                latest query that finished)
--   arrival_key  when the event first arrived
-- ARGV:
--   window       the window (ms)
--   ttl          ttl (ms) of both
local tracker_key = KEYS[1]
local arrival_key = KEYS[2]
local window = ARGV[1]
local ttl = ARGV[2]

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local arrived = tonumber(redis.call('GET', arrival_key) or '-1')
if arrived < 0 then
  arrived = now
  redis.call('SET', arrival_key, now, 'PX', ttl)
end
local seen = redis.call('HMGET', tracker_key, 'begun', 'covered')
local begun, covered = tonumber(seen[1] or '-1'), tonumber(seen[2] or '-1')
if covered > arrived then return {'covered', 0} end
local wait = begun + tonumber(window) - now
if begun >= 0 and wait > 0 then return {'wait', wait} end
redis.call('HSET', tracker_key, 'begun', now)
redis.call('PEXPIRE', tracker_key, ttl)
return {'query', now}
""",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class CoveredArgs:
    tracker_key: Key
    started: int
    ttl: int


COVERED: Final = Script(
    CoveredArgs,
    """
-- A query has finished: it covers the events that arrived before it began. Reply: 1.
-- KEYS:
--   tracker_key  the tracker's hash
-- ARGV:
--   started      the finished query's start (ms)
--   ttl          ttl (ms) of the hash
local tracker_key = KEYS[1]
local started = ARGV[1]
local ttl = ARGV[2]

local covered = tonumber(redis.call('HGET', tracker_key, 'covered') or '-1')
if tonumber(started) > covered then redis.call('HSET', tracker_key, 'covered', started) end
redis.call('PEXPIRE', tracker_key, ttl)
return 1
""",
)
