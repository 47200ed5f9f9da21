"""No alert or dashboard query pairs a task's start event with its end event in Flower.

Flower counts the events it receives. It misses those sent while the broker is down or
while Flower restarts (and Celery before 5.7.0 dropped some under the threads pool,
celery/celery issue 10434), so a figure built from a pair (tasks received minus tasks
retried, started minus ended) drifts for good or raises a false alert when one half is
missed. The queries count one side against the poller's own counters instead, and read
Flower's pair-made prefetch gauge only where the worker's heartbeat says it is busy.
"""

from __future__ import annotations

import pytest

from tests.unit.test_observability import alert_rules, dashboard_exprs, names_in

STARTS = frozenset({"task-received", "task-started"})
ENDS = frozenset({"task-succeeded", "task-failed", "task-retried", "task-rejected"})
#: Flower gauges kept by a pair of events (received +1 / started -1): never read
PAIR_GAUGES = frozenset({"flower_worker_prefetched_tasks"})
#: set by task-started, zeroed by the final event: read only beside the heartbeat's count
PREFETCH = "flower_task_prefetch_time_seconds"
HEARTBEAT = "flower_worker_number_of_currently_executing_tasks"


def event_types(expr: str) -> set[str]:
    """The Celery event types the query reads from ``flower_events_total``."""
    types: set[str] = set()
    for name, matchers in names_in(expr):
        if name != "flower_events_total":
            continue
        operator, value = matchers.get("type", ("=~", ".*"))
        if operator == "=":
            types.add(value)
        elif operator == "=~":
            types |= STARTS | ENDS if value == ".*" else set(value.split("|"))
        else:  # != and !~: every other type
            types |= (STARTS | ENDS) - set(value.split("|"))
    return types


def pairing(expr: str) -> str | None:
    """Why ``expr`` leans on a pair of a task's events, or None."""
    types = event_types(expr)
    if types & STARTS and types & ENDS:
        return f"pairs {sorted(types & STARTS)} with {sorted(types & ENDS)}"
    read = {name for name, _ in names_in(expr)}
    if read & PAIR_GAUGES:
        return f"reads {sorted(read & PAIR_GAUGES)}"
    if PREFETCH in read and (HEARTBEAT not in read or " and " not in f" {expr} "):
        return f"reads {PREFETCH} without the heartbeat's busy workers"
    return None


QUERIES = [(rule["alert"], rule["expr"]) for rule in alert_rules()] + dashboard_exprs()


@pytest.mark.parametrize(("where", "expr"), QUERIES, ids=lambda v: v[:60])
def test_no_query_leans_on_a_pair_of_flower_events(where: str, expr: str) -> None:
    assert pairing(expr) is None, f"{where}: {pairing(expr)}"


@pytest.mark.parametrize(
    "expr",
    [
        # the sweep alert as it was: received - retried - dispatched
        'sum(increase(flower_events_total{type="task-received", task="bwp.sync_delivery"}[30m]))'
        ' - sum(increase(flower_events_total{type="task-retried"}[30m]))'
        " - sum(increase(bwp_events_dispatched_total[30m])) > 20",
        'sum(rate(flower_events_total{type=~"task-started|task-succeeded"}[5m]))',
        "sum(rate(flower_events_total[5m]))",
        'sum(rate(flower_events_total{type!="task-failed"}[5m]))',
        "sum(flower_worker_prefetched_tasks)",
        "max by (task) (flower_task_prefetch_time_seconds)",
    ],
)
def test_a_pair_would_be_caught(expr: str) -> None:
    assert pairing(expr) is not None


def test_one_side_against_the_pollers_counter_is_no_pair() -> None:
    expr = (
        'sum(increase(flower_events_total{type=~"task-succeeded|task-failed"}[30m]))'
        " - sum(increase(bwp_events_dispatched_total[30m])) > 20"
    )
    assert pairing(expr) is None
