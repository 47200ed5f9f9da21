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
