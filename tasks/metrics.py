"""The worker's own Prometheus counters, in one place.

One ``TaskMetrics`` per worker runtime, on its own registry (tests build several in one
process). Flower exports the task-level view; these count what only the sync knows.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


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
            "Milestone events acknowledged because their tracker was never pushed",
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
