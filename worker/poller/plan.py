"""What a settling tick does with each held message, decided from its event's record
(design.md section 3.6). Plain logic, no I/O: the poller reads the records in one round
trip, asks ``plan``, and carries the plan out.

Every held message is a question asked again each tick: is its event done, parked, still
being worked on by a live task, or orphaned?

- ``done`` / ``parked``: settled, the message is deleted.
- ``failed`` (failed for good, no DLQ took it): parked by the poller when it has a DLQ,
  else let go, so that the queue's own redrive policy applies.
- gone (Redis lost the record): claimed and dispatched again.
- ``queued`` with a live lease: a live worker holds its task; wait.
- ``queued`` with a dead lease: the worker holding its task died; dispatch it again.
- ``queued`` with no lease: its task waits in the broker, or was lost on the way (popped
  by a worker killed at once, or a broker that lost its list). Only while the Celery
  queue is empty can it not be waiting there: an event seen so, and still so (no take in
  between) ``grace`` seconds later, is dispatched again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tasks.ledger.events import EventState, EventView, Lease, Orphan
from worker.poller.held import Held, Suspect

#: redispatch reasons (the ``why`` label of ``bwp_events_redispatched_total``)
TASK_LOST = "task_lost"
NEVER_TAKEN = "never_taken"


@dataclass
class Plan:
    settled: list[tuple[Held, EventState]] = field(default_factory=list)
    #: failed for good: park (the poller has a DLQ)
    park: list[tuple[Held, EventView]] = field(default_factory=list)
    #: failed for good, no DLQ here: stop holding, the queue's redrive applies
    let_go: list[Held] = field(default_factory=list)
    #: the record vanished: claim and dispatch again
    lost: list[Held] = field(default_factory=list)
    #: the task is lost: take back (``Ledger.reclaim``) and dispatch again
    orphans: list[tuple[Held, Orphan]] = field(default_factory=list)


def plan(
    held: list[Held],
    views: dict[str, EventView],
    *,
    now: float,
    grace: float,
    dlq: bool,
    broker_empty: Callable[[], bool | None],
) -> Plan:
    """Decide each held message's fate. ``views`` lacks the keys Redis could not be asked
    about (nothing is decided for them). ``broker_empty`` is asked at most once, only when
    some event has had no lease for ``grace`` seconds; None means unknown (not empty).

    Updates each Held's ``suspect`` (the first sighting of a possibly lost task).
    """
    out = Plan()
    unleased: list[tuple[Held, EventView]] = []
    seen: set[str] = set()
    for h in held:
        view = views.get(h.request.dedup_key)
        if view is not None and not _sort(h, view, dlq, out, seen):
            unleased.append((h, view))
    _suspects(unleased, out, seen, now=now, grace=grace, broker_empty=broker_empty)
    return out


def _sort(held: Held, view: EventView, dlq: bool, out: Plan, seen: set[str]) -> bool:
    """File ``held`` in ``out``; False for a `queued` event with no lease (undecided)."""
    state = view.state
    if state in (EventState.DONE, EventState.PARKED):
        out.settled.append((held, state))
    elif state is EventState.FAILED and dlq:
        out.park.append((held, view))
    elif state is EventState.FAILED:
        out.let_go.append(held)
    elif state is None:
        out.lost.append(held)
    elif state is EventState.QUEUED and view.lease is Lease.NONE:
        return False
    else:
        held.suspect = None  # a live lease, or claimed by a poller right now
        if state is EventState.QUEUED and view.lease is Lease.DEAD and _first(held, seen):
            out.orphans.append((held, Orphan(held.request.dedup_key, "dead")))
    return True


def _suspects(
    unleased: list[tuple[Held, EventView]],
    out: Plan,
    seen: set[str],
    *,
    now: float,
    grace: float,
    broker_empty: Callable[[], bool | None],
) -> None:
    waiting: list[tuple[Held, EventView]] = []
    for h, view in unleased:
        if now - h.dispatched_at >= grace:
            waiting.append((h, view))
        else:
            h.suspect = None  # handed to the broker just now
    if not waiting or broker_empty() is not True:
        for h, _ in waiting:
            h.suspect = None  # it may be waiting its turn in the broker
        return
    for h, view in waiting:
        if h.suspect is None or h.suspect.takes != view.takes:
            h.suspect = Suspect(view.takes, now)
        elif now - h.suspect.since >= grace and _first(h, seen):
            out.orphans.append((h, Orphan(h.request.dedup_key, "none", view.takes)))


def _first(held: Held, seen: set[str]) -> bool:
    """One orphan per event, however many copies of it are held."""
    key = held.request.dedup_key
    if key in seen:
        return False
    seen.add(key)
    return True


def reason(orphan: Orphan) -> str:
    """The ``why`` of a redispatch."""
    return TASK_LOST if orphan.mode == "dead" else NEVER_TAKEN
