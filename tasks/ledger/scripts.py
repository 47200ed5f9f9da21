"""The ledger's Lua scripts, in one place. Every write to an event record is in a fragment
defined here and used by ``tasks.ledger.events`` (its owner) and by the delivery finish
script, so that the record's transitions are written once.

Event record states: ``claimed`` → ``queued`` → ``done``, or ``parked`` (the DLQ has it:
a replayed copy claims it anew), or ``failed`` (it failed for good and the DLQ has not
taken it yet: the poller parks it, or leaves its message to the queue's redrive). A
record that is gone (Redis lost it) is claimable too.

A ``queued`` record may carry a lease, ``lease = "<token>:<expiry ms>"`` (Redis server
time), written by the worker process that took its task from the broker and renewed while
that process lives; ``takes`` counts the takes and ``redispatches`` the poller's
re-dispatches of a task that was lost (design.md section 3.6).
"""

from __future__ import annotations

# Marks an event done, keeping (or, on a record Redis lost, restoring) its payload hash so
# that a later copy is compared with it and never taken for a conflict.
EVENT_DONE = """
local function event_done(ekey, now, ttl, how, hash, qindex, dedup_key)
  redis.call('HSET', ekey, 'state', 'done', 'at', now, 'how', how)
  if hash ~= '' then redis.call('HSET', ekey, 'hash', hash) end
  redis.call('HDEL', ekey, 'body', 'lease', 'why')
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
    elseif found[1] == 'failed' then out[#out + 1] = 'failed'
    else out[#out + 1] = 'done' end
  else
    local pushed = redis.call('HMGET', dkey, 'rank', 'state')
    local rank = tonumber(pushed[1] or '-1')
    if implied >= 0 and (rank > implied or (rank == implied and pushed[2] == implied_state)) then
      event_done(ekey, now, done_ttl, 'no_news', hash, KEYS[#KEYS], '')
      out[#out + 1] = 'no_news'
    else
      redis.call('HSET', ekey, 'state', 'claimed', 'hash', hash, 'at', now)
      redis.call('HDEL', ekey, 'lease', 'how', 'why')
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

# The DLQ took the event's message: the poller deletes it, a replayed copy claims it anew.
PARK = """
-- KEYS: event record, queued index
-- ARGV: now, ttl (s), dedup key, dead-letter kind
local event_key, queued_index = KEYS[1], KEYS[2]
local now, ttl, dedup_key, kind = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
redis.call('HSET', event_key, 'state', 'parked', 'at', now, 'how', kind)
redis.call('HDEL', event_key, 'body', 'lease', 'why')
redis.call('EXPIRE', event_key, ttl)
redis.call('ZREM', queued_index, dedup_key)
return 1
"""

# Failed for good, not (yet) in the DLQ: the worker had no DLQ, or the DLQ would not take
# it. The body stays, so that the poller (which holds the message) can park it itself.
FAIL = """
-- KEYS: event record, queued index
-- ARGV: now, ttl (s), dedup key, dead-letter kind, reason (one line)
local event_key, queued_index = KEYS[1], KEYS[2]
local now, ttl, dedup_key, kind, reason = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local state = redis.call('HGET', event_key, 'state')
if state == 'done' or state == 'parked' then return 0 end
redis.call('HSET', event_key, 'state', 'failed', 'at', now, 'how', kind, 'why', reason)
redis.call('HDEL', event_key, 'lease')
redis.call('EXPIRE', event_key, ttl)
redis.call('ZREM', queued_index, dedup_key)
return 1
"""

# Milliseconds of Redis server time: leases are judged on one clock, whatever the hosts'.
SERVER_MS = """
local function server_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

# What the poller's settling tick needs of every event it holds, in one round trip.
VIEWS = (
    SERVER_MS
    + """
-- KEYS: event records
-- Reply per record: {state ('' when gone), lease ('', 'live' or 'dead'), takes,
--                    redispatches, kind, reason} (kind and reason of a `failed` record)
local now = server_ms()
local out = {}
for i, event_key in ipairs(KEYS) do
  local f = redis.call('HMGET', event_key, 'state', 'lease', 'takes', 'redispatches', 'how', 'why')
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
"""
)

# The poller takes back a `queued` event whose task is gone, so that exactly one poller
# dispatches it again: its lease expired ('dead'), or it has none and nobody took it since
# the poller first saw it so ('none', with the takes then seen).
RECLAIM = (
    SERVER_MS
    + """
-- KEYS: event records
-- ARGV: most re-dispatches, then per record: mode ('dead' or 'none'), takes seen
-- Reply per record: 'ok' (dispatch it again), 'exhausted' (re-dispatched too often:
-- park it) or 'no' (not an orphan any more)
local most = tonumber(ARGV[1])
local now = server_ms()
local out = {}
for i, event_key in ipairs(KEYS) do
  local mode, takes_seen = ARGV[2 * i], ARGV[2 * i + 1]
  local f = redis.call('HMGET', event_key, 'state', 'lease', 'takes')
  local orphan = false
  if f[1] == 'queued' then
    if mode == 'dead' and f[2] then
      orphan = tonumber(string.match(f[2], ':(%d+)$') or '0') <= now
    elseif mode == 'none' and not f[2] then
      orphan = (f[3] or '0') == takes_seen
    end
  end
  if not orphan then out[i] = 'no'
  else
    redis.call('HDEL', event_key, 'lease')
    if redis.call('HINCRBY', event_key, 'redispatches', 1) > most then out[i] = 'exhausted'
    else out[i] = 'ok' end
  end
end
return out
"""
)

# A worker process's round for the event leases it holds: take the new ones, renew the
# rest, release those whose task went back to the broker (a retry) or was revoked.
LEASES = (
    SERVER_MS
    + """
-- KEYS: event records
-- ARGV: lease ttl (ms), then per record: op ('take', 'renew' or 'release'), token
-- Reply per record: 1 while the lease is the caller's, else 0 (another took the task, or
-- the event is finished). A take writes over another's lease: the latest taker owns it.
local ttl = tonumber(ARGV[1])
local now = server_ms()
local out = {}
for i, event_key in ipairs(KEYS) do
  local op, token = ARGV[2 * i], ARGV[2 * i + 1]
  local f = redis.call('HMGET', event_key, 'state', 'lease')
  local open = f[1] == 'queued' or f[1] == 'claimed'
  local mine = f[2] ~= false and string.sub(f[2], 1, #token + 1) == token .. ':'
  out[i] = 0
  if op == 'take' and open then
    redis.call('HSET', event_key, 'lease', token .. ':' .. (now + ttl))
    redis.call('HINCRBY', event_key, 'takes', 1)
    out[i] = 1
  elseif op == 'renew' and open and mine then
    redis.call('HSET', event_key, 'lease', token .. ':' .. (now + ttl))
    out[i] = 1
  elseif op == 'release' and mine then
    redis.call('HDEL', event_key, 'lease')
  end
end
return out
"""
)

# The state of each event ('' when the record is gone), in one round trip.
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


# --- circuits (tasks.http.circuit) ----------------------------------------------------------
# Open a dependency's circuit; 1 when this call opened it (it logs the change), else 0.
CIRCUIT_OPEN = (
    SERVER_MS
    + """
-- KEYS: the circuits hash
-- ARGV: dependency
local circuits, dependency = KEYS[1], ARGV[1]
if redis.call('HGET', circuits, dependency) == 'open' then return 0 end
redis.call('HSET', circuits, dependency, 'open', dependency .. ':opened_at', server_ms())
redis.call('HINCRBY', circuits, dependency .. ':opens', 1)
return 1
"""
)

# Close a dependency's circuit; 1 when this call closed it, else 0.
CIRCUIT_CLOSE = """
-- KEYS: the circuits hash
-- ARGV: dependency
local circuits, dependency = KEYS[1], ARGV[1]
if redis.call('HGET', circuits, dependency) ~= 'open' then return 0 end
redis.call('HSET', circuits, dependency, 'closed')
return 1
"""
