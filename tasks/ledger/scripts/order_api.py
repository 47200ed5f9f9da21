"""The order API's shared state in Redis (tasks.order_api): the OAuth token and its
refresh lock, and the cluster-wide rate limit. Kept with the other scripts, so that every
script follows one convention and one test."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from tasks.ledger.lua import Key, Script


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteIfEqualArgs:
    key: Key
    expected: str


# The token cache's compare-and-delete: a refresh lock, or exactly the token that failed.
DELETE_IF_EQUAL: Final = Script(
    DeleteIfEqualArgs,
    """
-- Reply: 1 when the key held the value and is deleted, else 0.
-- KEYS:
--   key       the key to delete
-- ARGV:
--   expected  the value it must hold
local key = KEYS[1]
local expected = ARGV[1]

if redis.call('GET', key) == expected then return redis.call('DEL', key) end
return 0
""",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReserveArgs:
    limiter_key: Key
    interval: int
    tolerance: int
    max_wait: int


# A GCRA reservation on Redis's clock (tasks.order_api.rate_limit).
GCRA_RESERVE: Final = Script(
    ReserveArgs,
    """
-- Reply: the microseconds the caller must wait for the slot it now holds, or -1 (and
-- nothing is reserved) when that wait would exceed max_wait.
-- KEYS:
--   limiter_key  the theoretical arrival time (TAT) of the next call (us)
-- ARGV:
--   interval     the emission interval (us)
--   tolerance    the burst tolerance (us)
--   max_wait     the longest wait to reserve (us)
local limiter_key = KEYS[1]
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', limiter_key) or now)
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait > max_wait then return -1 end
if wait < 0 then wait = 0 end
local next_tat = tat + interval
redis.call('SET', limiter_key, next_tat, 'PX', math.ceil((next_tat - now) / 1000) + 1000)
return wait
""",
)
