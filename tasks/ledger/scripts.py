"""The ledger's Lua scripts, in one place. Every write to an event record is in a fragment
defined here and used by ``tasks.ledger.events`` (its owner) and by the delivery finish
script, so that the record's transitions are written once.

Event record states: ``claimed`` → ``queued`` → ``done``, or ``parked`` (the DLQ has it:
a replayed copy claims it anew). A record that is gone (Redis lost it) is claimable too.
"""

from __future__ import annotations

# Marks an event done, keeping (or, on a record Redis lost, restoring) its payload hash so
# that a later copy is compared with it and never taken for a conflict.
EVENT_DONE = """
local function event_done(ekey, now, ttl, how, hash, qindex, dedup_key)
  redis.call('HSET', ekey, 'state', 'done', 'at', now, 'how', how)
  if hash ~= '' then redis.call('HSET', ekey, 'hash', hash) end
  redis.call('HDEL', ekey, 'body')
  redis.call('EXPIRE', ekey, ttl)
  if dedup_key ~= '' then redis.call('ZREM', qindex, dedup_key) end
end
"""

# KEYS: per request [event key, delivery key]; ARGV: now, claim_ttl, done_ttl, then per
# request [payload hash, implied rank, implied state]. One reply per request.
#
# "No news" only when the delivery already shows a later state, or this very state:
# DELIVERED and CANCELLED share a rank, and one after the other is news.
CLAIM = (
    EVENT_DONE
    + """
local now, claim_ttl, done_ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
for i = 1, #KEYS, 2 do
  local ekey, dkey = KEYS[i], KEYS[i + 1]
  local j = 4 + (i - 1) / 2 * 3
  local hash, implied, implied_state = ARGV[j], tonumber(ARGV[j + 1]), ARGV[j + 2]
  local found = redis.call('HMGET', ekey, 'state', 'hash')
  if found[1] and found[1] ~= 'parked' then
    if found[2] and found[2] ~= hash then out[#out + 1] = 'conflict'
    elseif found[1] == 'claimed' then out[#out + 1] = 'inflight'
    elseif found[1] == 'queued' then out[#out + 1] = 'queued'
    else out[#out + 1] = 'done' end
  else
    local pushed = redis.call('HMGET', dkey, 'rank', 'state')
    local rank = tonumber(pushed[1] or '-1')
    if implied >= 0 and (rank > implied or (rank == implied and pushed[2] == implied_state)) then
      event_done(ekey, now, done_ttl, 'no_news', hash, KEYS[#KEYS], '')
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
)

# KEYS: event keys, then the queued index; ARGV: now, ttl, then per event: dedup key, body.
# Only a `claimed` (or, for the sweep, `queued`) record moves: a fast worker's `done`
# must not turn back into `queued`.
MARK_QUEUED = """
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
RELEASE = """
local n = 0
for i = 1, #KEYS do
  local state = redis.call('HGET', KEYS[i], 'state')
  if state and string.find(',' .. ARGV[1] .. ',', ',' .. state .. ',', 1, true) then
    redis.call('DEL', KEYS[i]); n = n + 1
  end
end
return n
"""

# KEYS: event key, queued index; ARGV: now, done ttl, how, payload hash, dedup key.
COMPLETE = (
    EVENT_DONE
    + """
event_done(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], KEYS[2], ARGV[5])
return 1
"""
)

# KEYS: event key, queued index; ARGV: now, ttl, dedup key, reason kind.
PARK = """
redis.call('HSET', KEYS[1], 'state', 'parked', 'at', ARGV[1], 'how', ARGV[4])
redis.call('HDEL', KEYS[1], 'body')
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[3])
return 1
"""

# KEYS: event keys. The state of each ('' when the record is gone): the poller's settling
# read, one round trip for everything it holds.
STATES = """
local out = {}
for i = 1, #KEYS do out[i] = redis.call('HGET', KEYS[i], 'state') or '' end
return out
"""

# --- the delivery record (tasks.ledger.deliveries) -----------------------------------------
# KEYS: lock, delivery record, event record (or the lock again when there is no event).
# ARGV: token, lock ttl (ms), has event (0/1).
BEGIN = """
if ARGV[3] == '1' and redis.call('HGET', KEYS[3], 'state') == 'done' then return {'done'} end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {'busy'} end
local last = redis.call('HMGET', KEYS[2], 'fp', 'rank', 'state')
return {'locked', last[1] or '', last[2] or '', last[3] or ''}
"""

# KEYS: lock, delivery record, open-deliveries index, event record, queued index, tracker.
# ARGV: token, now, state ttl, done ttl, ref, record (0/1), fp, rank, state, terminal (0/1),
#       complete (0/1), dedup key, how, payload hash, open-set bound, tracker (0/1),
#       business product, order, delivery, tracker ttl.
#
# Fenced: nothing is written unless the lock is still the caller's (token '' = no lease:
# operators' tools), and the recorded rank never goes down. Returns 1, or 0 when the
# lock was lost (nothing written).
FINISH = (
    EVENT_DONE
    + """
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[6] == '1' then
  local stored = tonumber(redis.call('HGET', KEYS[2], 'rank') or '-1')
  if tonumber(ARGV[8]) >= stored then
    redis.call('HSET', KEYS[2], 'fp', ARGV[7], 'rank', ARGV[8], 'state', ARGV[9], 'at', ARGV[2])
    redis.call('EXPIRE', KEYS[2], ARGV[3])
    if ARGV[10] == '1' then redis.call('ZREM', KEYS[3], ARGV[5])
    else
      redis.call('ZADD', KEYS[3], ARGV[2], ARGV[5])
      redis.call('EXPIRE', KEYS[3], ARGV[3])
      local extra = redis.call('ZCARD', KEYS[3]) - tonumber(ARGV[15])
      if extra > 0 then redis.call('ZREMRANGEBYRANK', KEYS[3], 0, extra - 1) end
    end
    if ARGV[16] == '1' then
      redis.call('HSET', KEYS[6], 'bp', ARGV[17], 'order', ARGV[18], 'delivery', ARGV[19])
      redis.call('EXPIRE', KEYS[6], ARGV[20])
    end
  end
end
if ARGV[11] == '1' then
  event_done(KEYS[4], ARGV[2], ARGV[4], ARGV[13], ARGV[14], KEYS[5], ARGV[12])
end
if ARGV[1] ~= '' then redis.call('DEL', KEYS[1]) end
return 1
"""
)

# KEYS: delivery locks; ARGV: ttl (ms), then one token per lock. Extends each lock that is
# still its holder's: 1, else 0 (the lease is lost).
RENEW = """
local out = {}
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[i + 1] then
    redis.call('PEXPIRE', KEYS[i], ARGV[1]); out[i] = 1
  else out[i] = 0 end
end
return out
"""

# KEYS: open-deliveries index; ARGV: limit, cutoff, delivery key prefix. Up to ``limit``
# members due (score <= cutoff) whose delivery record still exists; members whose record
# expired (no push for the state TTL) leave the index.
STALE_OPEN = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, ARGV[1])
local out = {}
for _, member in ipairs(due) do
  if redis.call('EXISTS', ARGV[3] .. member) == 1 then out[#out + 1] = member
  else redis.call('ZREM', KEYS[1], member) end
end
return out
"""
