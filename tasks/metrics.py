"""The worker's own Prometheus counters, in one place.

One ``TaskMetrics`` per worker runtime, on its own registry (tests build several in one
process). A Celery worker serves it on ``WORKER_METRICS_PORT`` (worker/celery_metrics.py);
Flower exports the task-level view, these count what only the sync knows.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, generate_latest

#: the kinds a task parks an event as: exported at 0 from the start, so that the first
#: park of a kind is an increase Prometheus sees (a series born at 1 shows none)
TASK_PARK_KINDS = ("permanent-api-error", "permanent-oms-error", "retries-exhausted", "malformed")


class TaskMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.siblings_skipped = Counter(
            "bwp_sibling_deliveries_skipped",
            "Deliveries of a queried order left out: a state or reason the worker does not "
            "know, on a delivery the event does not name",
            registry=self.registry,
        )
        self.unknown_trackers = Counter(
            "bwp_milestone_unknown_trackers",
            "Milestone events acknowledged because no known delivery carried their tracker "
            "after the bounded retries",
            registry=self.registry,
        )
        self.milestones_coalesced = Counter(
            "bwp_milestones_coalesced",
            "Milestone events done without a query: a query of the same tracker that began "
            "after they arrived covered them",
            registry=self.registry,
        )
        self.milestones_deferred = Counter(
            "bwp_milestones_deferred",
            "Milestone task runs that waited out their tracker's coalescing window",
            registry=self.registry,
        )
        self.queries_without_tracker = Counter(
            "bwp_order_queries_without_tracker",
            "Order queries sent without the tracker fields: the credentials were refused them "
            "(AccessDeniedError; the package-tracker permission is missing)",
            registry=self.registry,
        )
        self.park_failures = Counter(
            "bwp_task_park_failures",
            "Events that failed for good but no DLQ took (marked failed: the poller parks "
            "them, or leaves them to the queue's redrive policy)",
            ["kind"],
            registry=self.registry,
        )
        self.circuit_openings = Counter(
            "bwp_circuit_openings",
            "Times this worker process opened a dependency's circuit (oms, api, token)",
            ["dependency"],
            registry=self.registry,
        )
        self.circuit_waits = Counter(
            "bwp_circuit_waits",
            "Task attempts sent back to wait because a dependency's circuit was open",
            ["dependency"],
            registry=self.registry,
        )
        # The poller's counter of the same name counts what it parks; a worker's, what
        # its tasks park: one `sum by (kind)` covers both.
        self.parked = Counter(
            "bwp_messages_parked",
            "Events parked in the DLQ by a task, by kind",
            ["kind"],
            registry=self.registry,
        )
        for kind in TASK_PARK_KINDS:
            self.parked.labels(kind)
        self.retries = Counter(
            "bwp_sync_retries",
            "Sync task retries scheduled, by the error class that caused them",
            ["error"],
            registry=self.registry,
        )
        self.stale_redispatched = Counter(
            "bwp_stale_events_redispatched",
            "Queued events whose task was lost, dispatched again by the sweep",
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
