"""Order queries for credentials that may lack the package-tracker permission.

PACKAGE_TRACKER_MILESTONE_CHANGED needs the package-tracker permission ("View Package
Tracker Data"); whether selecting ``packageTracker`` inside ``order`` needs it too is not
documented. If it does, Read-Order-only credentials get AccessDeniedError on every
2024-11-01 query, and every delivery would be parked. Instead, an AccessDeniedError on a
query that selects the tracker fields is answered by the same query without them:

- when that one succeeds, the tracker fields were the refused part: the order is used
  without tracking (pushes carry ``tracking: null``), one warning is logged, and each
  such query is counted (``bwp_order_queries_without_tracker_total``); for the next
  ``RECHECK_SECONDS`` queries go without the tracker fields at once, then the full query
  is tried again (a permission granted meanwhile is picked up);
- when it is denied too, the credentials lack Read Order (or BWP_TARGET_ID names another
  business product): ApiAccessDenied, and the event is parked as before.

``bwp-worker check`` runs the same probe and names the missing permission.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Final, Protocol

import structlog

from tasks.errors import ApiAccessDenied
from tasks.http.deadline import Deadline
from tasks.order_api.queries import selects_tracker

log = structlog.get_logger("bwp.order_api")

#: how long queries go without the tracker fields before the full query is tried again
RECHECK_SECONDS: Final = 600.0


class Counter(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class TrackerQueries(Protocol):
    def reserve(self) -> None: ...

    def fetch_order(
        self,
        business_product_id: str,
        order_id: str,
        *,
        deadline: Deadline | None = None,
        reserved: bool = False,
        tracker: bool = True,
    ) -> dict[str, Any]: ...


class TrackerAccess:
    """An order source (``tasks.delivery.sync.OrderSource``) over ``api`` that degrades to
    queries without the tracker fields while those are denied. Thread-safe."""

    def __init__(
        self,
        api: TrackerQueries,
        *,
        api_version: str,
        degraded: Counter,
        clock: Callable[[], float] = time.monotonic,
        recheck: float = RECHECK_SECONDS,
    ) -> None:
        self._api, self._degraded, self._clock = api, degraded, clock
        self._selects = selects_tracker(api_version)
        self._recheck = recheck
        self._lock = threading.Lock()
        self._denied_until = 0.0
        self._warned = False

    @property
    def degraded(self) -> bool:
        """Queries go without the tracker fields now."""
        with self._lock:
            return self._denied_until > self._clock()

    def reserve(self) -> None:
        self._api.reserve()

    def fetch_order(
        self,
        business_product_id: str,
        order_id: str,
        *,
        deadline: Deadline | None = None,
        reserved: bool = False,
    ) -> dict[str, Any]:
        """The order, with the tracker fields when the credentials may read them."""
        fetch = self._api.fetch_order
        if not self._selects:
            return fetch(business_product_id, order_id, deadline=deadline, reserved=reserved)
        if self.degraded:
            self._degraded.inc()
            return fetch(
                business_product_id, order_id, deadline=deadline, reserved=reserved, tracker=False
            )
        try:
            order = fetch(business_product_id, order_id, deadline=deadline, reserved=reserved)
        except ApiAccessDenied:
            # Raises ApiAccessDenied again when the tracker fields were not the reason.
            order = fetch(business_product_id, order_id, deadline=deadline, tracker=False)
            self._denied()
            return order
        self._allowed()
        return order

    def _denied(self) -> None:
        self._degraded.inc()
        with self._lock:
            self._denied_until = self._clock() + self._recheck
            first, self._warned = not self._warned, True
        if first:
            log.warning(
                "order_query_without_tracker",
                reason="AccessDeniedError on the packageTracker fields; the credentials "
                "lack the package-tracker permission (View Package Tracker Data)",
                effect="pushes carry no tracking; milestone events cannot find their delivery",
                recheck_seconds=self._recheck,
            )

    def _allowed(self) -> None:
        with self._lock:
            restored, self._warned = self._warned, False
        if restored:
            log.info("order_query_tracker_restored")
