"""The delivery record's scripts (tasks.ledger.deliveries): begin a sync, finish it, and
list the open deliveries due for reconciliation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from tasks.ledger.lua import Key, Script
from tasks.ledger.scripts.events import EVENT_DONE


@dataclass(frozen=True, slots=True, kw_only=True)
class BeginArgs:
    lock_key: Key
    delivery_key: Key
    event_key: Key
    token: str
    lock_ttl: int
    has_event: bool


BEGIN: Final = Script(
    BeginArgs,
    """
-- Is the event done already? If not, take the delivery's lock and read the last push.
-- Reply: {'done'}, {'busy'} (another holds the lock) or
--        {'locked', fingerprint, rank, state} (each '' when nothing was pushed).
-- KEYS:
--   lock_key      the delivery's lock
--   delivery_key  the delivery record
--   event_key     the event record; without one (has_event '0') the lock key again, a
--                 placeholder never read
-- ARGV:
--   token         the caller's lock token
--   lock_ttl      lock ttl (ms)
--   has_event     '1' when event_key names an event, else '0'
local lock_key = KEYS[1]
local delivery_key = KEYS[2]
local event_key = KEYS[3]
local token = ARGV[1]
local lock_ttl = ARGV[2]
local has_event = ARGV[3]

if has_event == '1' and redis.call('HGET', event_key, 'state') == 'done' then return {'done'} end
if not redis.call('SET', lock_key, token, 'NX', 'PX', lock_ttl) then return {'busy'} end
local last = redis.call('HMGET', delivery_key, 'fp', 'rank', 'state')
return {'locked', last[1] or '', last[2] or '', last[3] or ''}
""",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class FinishArgs:
    lock_key: Key
    delivery_key: Key
    open_index: Key
    event_key: Key
    queued_index: Key
    tracker_key: Key
    token: str
    now: float
    state_ttl: int
    done_ttl: int
    member: str
    has_record: bool
    fingerprint: str
    rank: int
    state: str
    terminal: bool
    complete: bool
    dedup_key: str
    how: str
    payload_hash: str
    open_bound: int
    has_tracker: bool
    business_product_id: str
    order_id: str
    delivery_id: str
    tracker_ttl: int


# Fenced: nothing is written unless the lock is still the caller's (token '' = no lease:
# operators' tools), and the recorded rank never goes down.
FINISH: Final = Script(
    FinishArgs,
    """
-- Record a push, mark its event done, release the lock: one step. Reply: 1, or 0 when
-- the lock was lost (nothing written).
-- KEYS:
--   lock_key             the delivery's lock
--   delivery_key         the delivery record
--   open_index           the open (non-terminal) deliveries, by last sync
--   event_key            the event to mark done; without one (complete '0') the record
--                        of the dedup key '', a placeholder never touched
--   queued_index         the sweep's index of queued events
--   tracker_key          the tracker entry to point at the delivery; without one
--                        (has_tracker '0') the lock key again, a placeholder never touched
-- ARGV:
--   token                the lock's token ('' = no lease: write whoever holds it)
--   now                  Unix time (s)
--   state_ttl            ttl (s) of the delivery record and the open index
--   done_ttl             ttl (s) of the `done` event record
--   member               the delivery's member in the open index
--   has_record           '1': record the push (fingerprint, rank, state, terminal)
--   fingerprint          the pushed snapshot's fingerprint
--   rank                 its state's rank (a lower one than recorded is not written)
--   state                its state
--   terminal             '1': the delivery leaves the open index
--   complete             '1': mark the event done (dedup_key, how, payload_hash)
--   dedup_key            the event's dedup key
--   how                  how it ended
--   payload_hash         the payload's hash
--   open_bound           the most members of the open index
--   has_tracker          '1': write the tracker entry (the three ids, tracker_ttl)
--   business_product_id  the delivery's business product
--   order_id             its order
--   delivery_id          the delivery
--   tracker_ttl          ttl (s) of the tracker entry
local lock_key = KEYS[1]
local delivery_key = KEYS[2]
local open_index = KEYS[3]
local event_key = KEYS[4]
local queued_index = KEYS[5]
local tracker_key = KEYS[6]
local token = ARGV[1]
local now = ARGV[2]
local state_ttl = ARGV[3]
local done_ttl = ARGV[4]
local member = ARGV[5]
local has_record = ARGV[6]
local fingerprint = ARGV[7]
local rank = ARGV[8]
local state = ARGV[9]
local terminal = ARGV[10]
local complete = ARGV[11]
local dedup_key = ARGV[12]
local how = ARGV[13]
local payload_hash = ARGV[14]
local open_bound = ARGV[15]
local has_tracker = ARGV[16]
local business_product_id = ARGV[17]
local order_id = ARGV[18]
local delivery_id = ARGV[19]
local tracker_ttl = ARGV[20]

if token ~= '' and redis.call('GET', lock_key) ~= token then return 0 end
if has_record == '1' then
  local stored = tonumber(redis.call('HGET', delivery_key, 'rank') or '-1')
  if tonumber(rank) >= stored then
    redis.call('HSET', delivery_key, 'fp', fingerprint, 'rank', rank, 'state', state, 'at', now)
    redis.call('EXPIRE', delivery_key, state_ttl)
    if terminal == '1' then redis.call('ZREM', open_index, member)
    else
      redis.call('ZADD', open_index, now, member)
      redis.call('EXPIRE', open_index, state_ttl)
      local extra = redis.call('ZCARD', open_index) - tonumber(open_bound)
      if extra > 0 then redis.call('ZREMRANGEBYRANK', open_index, 0, extra - 1) end
    end
    if has_tracker == '1' then
      redis.call('HSET', tracker_key, 'bp', business_product_id, 'order', order_id,
        'delivery', delivery_id)
      redis.call('EXPIRE', tracker_key, tracker_ttl)
    end
  end
end
if complete == '1' then
  event_done(event_key, now, done_ttl, how, payload_hash, queued_index, dedup_key)
end
if token ~= '' then redis.call('DEL', lock_key) end
return 1
""",
    (EVENT_DONE,),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class StaleOpenArgs:
    open_index: Key
    limit: int
    cutoff: float
    record_prefix: str


STALE_OPEN: Final = Script(
    StaleOpenArgs,
    """
-- Up to limit members due (score <= cutoff) whose delivery record still exists; members
-- whose record expired (no push for the state TTL) leave the index.
-- KEYS:
--   open_index     the open deliveries, by last sync
-- ARGV:
--   limit          the most members to return
--   cutoff         the latest last-sync time (s) that is due
--   record_prefix  a member's delivery record key, less the member
local open_index = KEYS[1]
local limit = ARGV[1]
local cutoff = ARGV[2]
local record_prefix = ARGV[3]

local due = redis.call('ZRANGEBYSCORE', open_index, '-inf', cutoff, 'LIMIT', 0, limit)
local out = {}
for _, member in ipairs(due) do
  if redis.call('EXISTS', record_prefix .. member) == 1 then out[#out + 1] = member
  else redis.call('ZREM', open_index, member) end
end
return out
""",
)
