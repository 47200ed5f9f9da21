"""Every Lua script of the worker, one module per family, each a ``tasks.ledger.lua.Script``
(the Lua, and the dataclass that names its KEYS and ARGV):

- ``events``: the event record (tasks.ledger.events, its owner); every write to it is in
  a fragment defined there, so that the record's transitions are written once;
- ``leases``: event leases and delivery locks (tasks.ledger.keeper, and the poller's
  settling tick through tasks.ledger.events);
- ``deliveries``: the delivery record (tasks.ledger.deliveries);
- ``milestones``: milestone coalescing (tasks.ledger.milestones);
- ``circuits``: the shared circuits (tasks.http.circuit);
- ``order_api``: the OAuth token's lock and the API rate limit (tasks.order_api): Redis
  state too, and scripts are easier to keep right side by side.

Event record states: ``claimed`` → ``queued`` → ``done``, or ``parked`` (the DLQ has it:
a replayed copy claims it anew), or ``failed`` (it failed for good and the DLQ has not
taken it yet: the poller parks it, or leaves its message to the queue's redrive). A
record that is gone (Redis lost it) is claimable too.

A ``queued`` record may carry a lease, ``lease = "<token>:<expiry ms>"`` (Redis server
time), written by the worker process that took its task from the broker and renewed while
that process lives; ``takes`` counts the takes and ``redispatches`` the poller's
re-dispatches of a task that was lost (design.md section 3.6).
"""
