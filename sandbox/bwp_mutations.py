"""The sandbox mutations as documented: what a package update asks for, and whether it may.

``updateOrderPackageInformation`` (2024-11-01) addresses each package detail by its id
and takes a ``packageState`` holding either ``packageInformationState`` (the package's
state and reason) or ``packageTrackerState`` (its tracker): "can't provide both" in one
detail. ``updateOrderDeliveryInformation`` (2024-01-01/04-01) takes
``deliveryInformationState`` or ``packageTrackerState`` the same way. Moves allowed
(docs/buy-with-prime-api.md section 7): PENDING → IN_TRANSIT, PENDING → CANCELLED
(UNFULFILLABLE or CUSTOMER_REQUESTED), IN_TRANSIT → DELIVERED, IN_TRANSIT → CANCELLED
(UNDELIVERABLE); DELIVERED and CANCELLED are terminal. Any other move is a ConflictError
(``ConflictException``); a tracker update on a terminal package, or naming another tracking
number than the package's, is a ConflictError with ``errorCode``
``PackageTrackerNotAvailableForUpdate``.

Sandbox choices where the docs are silent: ``packageTrackerState`` holds
``packageTrackerIdentifier { trackingNumber carrierCode }``, ``status`` (a milestone code)
and ``trackingUrl``; a tracker status DELIVERED delivers the package, any status past
INFO_RECEIVED puts a PENDING package IN_TRANSIT (the docs: "when you change the
PackageTracker state, the PackageInformationDetails state is also updated"). Partial
quantities (``…DetailsFor`` in the input) are not modelled: ``POST /_sandbox/move`` with
``split`` moves units between packages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from sandbox.bwp_errors import api_error
from sandbox.bwp_store import Delivery

#: (from state, to state) → the reasons allowed (None: no reason)
MOVES: Final[dict[tuple[str, str], frozenset[str | None]]] = {
    ("PENDING", "IN_TRANSIT"): frozenset({None}),
    ("PENDING", "CANCELLED"): frozenset({"UNFULFILLABLE", "CUSTOMER_REQUESTED"}),
    ("IN_TRANSIT", "DELIVERED"): frozenset({None}),
    ("IN_TRANSIT", "CANCELLED"): frozenset({"UNDELIVERABLE"}),
}
_TERMINAL: Final = frozenset({"DELIVERED", "CANCELLED"})
_NOT_YET_MOVING: Final = frozenset({"PENDING", "INFO_RECEIVED"})


@dataclass(frozen=True)
class PackageChange:
    """One detail of a mutation: a package state or a tracker state, never both."""

    delivery_id: str
    state: dict[str, Any] | None
    tracker: dict[str, Any] | None


def changes_of(generation: str, args: dict[str, Any]) -> tuple[str, list[PackageChange]]:
    """(order id, the details' changes) of a mutation's arguments."""
    if generation == "2024-11":
        order_id = args["orderIdentifier"]["orderId"]
        details = args["input"]["packageInformation"]["details"]
        return order_id, [
            PackageChange(
                d["id"],
                d["packageState"].get("packageInformationState"),
                d["packageState"].get("packageTrackerState"),
            )
            for d in details
        ]
    request = args["input"]
    return request["orderId"], [
        PackageChange(d["id"], d.get("deliveryInformationState"), d.get("packageTrackerState"))
        for d in request["details"]
    ]


def move_of(delivery: Delivery, change: PackageChange) -> dict[str, Any]:
    """The ``SandboxApi.move`` arguments (``state`` plus fields) for ``change``; raises the
    documented GraphQL error when the change is not allowed."""
    if (change.state is None) == (change.tracker is None):
        raise api_error(
            "validation",
            f"package {delivery.id}: provide either the package state or the tracker state "
            "(can't provide both, nor neither)",
        )
    if change.state is not None:
        return _state_move(delivery, change.state)
    assert change.tracker is not None
    return _tracker_move(delivery, change.tracker)


def _state_move(delivery: Delivery, state_input: dict[str, Any]) -> dict[str, Any]:
    state, reason = state_input["state"], state_input.get("reason")
    reasons = MOVES.get((delivery.state, state))
    if reasons is None:
        raise api_error("conflict", f"package {delivery.id} cannot move {delivery.state} → {state}")
    if state != "CANCELLED":
        reason = None  # a reason only goes with a cancellation
    elif reason not in reasons:
        allowed = " or ".join(sorted(r for r in reasons if r))
        raise api_error(
            "validation", f"cancelling a {delivery.state} package needs reason {allowed}"
        )
    return {"state": state, "reason": reason}


def _tracker_move(delivery: Delivery, tracker: dict[str, Any]) -> dict[str, Any]:
    ident = tracker["packageTrackerIdentifier"]
    number, carrier = ident["trackingNumber"], ident["carrierCode"]
    if delivery.state in _TERMINAL:
        raise api_error(
            "tracker_not_available", f"package {delivery.id} is {delivery.state}: tracker closed"
        )
    if delivery.tracking_number not in (None, number):
        raise api_error(
            "tracker_not_available", f"package {delivery.id} is tracked by another number"
        )
    status = tracker.get("status")
    state = None
    if status == "DELIVERED":
        state = "DELIVERED"
    elif status is not None and status not in _NOT_YET_MOVING and delivery.state == "PENDING":
        state = "IN_TRANSIT"
    return {
        "state": state,
        "tracking_number": number,
        "carrier_code": carrier,
        "tracking_url": tracker.get("trackingUrl"),
        "milestone": status,
    }
