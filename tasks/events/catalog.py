"""The event catalog: which detail-types the worker handles and what each one implies.

Pure data. A delivery-family event names one delivery and implies a state for it; twins
(ITEM_DELIVERED, DELIVERY_COMPLETED, PACKAGE_DELIVERED) imply the same state, which is
what lets the worker recognise a twin without asking the order API.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class DeliveryState(StrEnum):
    PENDING = "PENDING"
    IN_TRANSIT = "IN_TRANSIT"
    DELIVERED = "DELIVERED"
    CANCELLED = "CANCELLED"


# PENDING < IN_TRANSIT < DELIVERED = CANCELLED (both terminal): design.md section 3.3.
STATE_RANK: Final[dict[DeliveryState, int]] = {
    DeliveryState.PENDING: 0,
    DeliveryState.IN_TRANSIT: 1,
    DeliveryState.DELIVERED: 2,
    DeliveryState.CANCELLED: 2,
}

TERMINAL_STATES: Final[frozenset[DeliveryState]] = frozenset(
    {DeliveryState.DELIVERED, DeliveryState.CANCELLED}
)

CANCELLATION_REASONS: Final[frozenset[str]] = frozenset(
    {"CUSTOMER_REQUESTED", "UNFULFILLABLE", "UNDELIVERABLE"}
)

# detail-type -> the delivery state the event implies. All three API generations are
# accepted whatever BWP_API_VERSION says (contract: "Events the worker accepts").
DELIVERY_EVENTS: Final[dict[str, DeliveryState]] = {
    "ITEM_IN_TRANSIT": DeliveryState.IN_TRANSIT,
    "ITEM_DELIVERED": DeliveryState.DELIVERED,
    "ITEM_CANCELLED": DeliveryState.CANCELLED,
    "DELIVERY_IN_TRANSIT": DeliveryState.IN_TRANSIT,
    "DELIVERY_COMPLETED": DeliveryState.DELIVERED,
    "DELIVERY_CANCELLED": DeliveryState.CANCELLED,
    "PACKAGE_DELIVERY_IN_TRANSIT": DeliveryState.IN_TRANSIT,
    "PACKAGE_DELIVERED": DeliveryState.DELIVERED,
    "PACKAGE_DELIVERY_CANCELLED": DeliveryState.CANCELLED,
}

# The twin sets, one per implied state, in the order of API generations.
TWINS: Final[dict[DeliveryState, tuple[str, ...]]] = {
    state: tuple(dt for dt, implied in DELIVERY_EVENTS.items() if implied is state)
    for state in (DeliveryState.IN_TRANSIT, DeliveryState.DELIVERED, DeliveryState.CANCELLED)
}


#: a carrier tracking milestone changed (2024-11-01). Its resource names the carrier's
#: tracker and, in events recorded in 2025, the order too: the task queries that order
#: when named, else finds the delivery through the tracker index (tasks.ledger.trackers)
MILESTONE_EVENT: Final = "PACKAGE_TRACKER_MILESTONE_CHANGED"

#: other Buy with Prime detail-types (docs/buy-with-prime-api.md section 2): acknowledged,
#: and named in metrics; any other name is counted as "other" (bounded label cardinality)
OTHER_KNOWN_EVENTS: Final[frozenset[str]] = frozenset(
    {
        "ORDER_CONFIRMED",
        "REFUND_REQUESTED",
        "REFUND_COMPLETED",
        "RETURN_STARTED",
        "RETURN_ITEM_GRADED",
        "RETURN_COMPLETED",
        "RETURN_DELIVERY_COMPLETED",
        "RETURN_DELIVERY_FAILED",
        "RETURN_PACKAGE_IN_TRANSIT",
        "RETURN_PACKAGE_DELIVERED",
        "RETURN_PACKAGE_DELIVERY_FAILED",
        "BUYABILITY_CHANGED",
        "INVENTORY_CHANGED",
        "PERSONAL_DATA_DELETION_TASK_COMPLETED",
        "PERSONAL_DATA_DELETION_TASK_FAILED",
        "PERSONAL_DATA_RETRIEVAL_TASK_COMPLETED",
        "PERSONAL_DATA_RETRIEVAL_TASK_FAILED",
    }
)

API_VERSIONS: Final = ("2024-01-01", "2024-04-01", "2024-11-01")
_OLDEST, _OLD = frozenset(API_VERSIONS[:1]), frozenset(API_VERSIONS[:2])
_NEWEST, _ALL = frozenset(API_VERSIONS[2:]), frozenset(API_VERSIONS)

#: the API versions whose subscriptions publish each known detail-type (the public docs;
#: docs/buy-with-prime-api.md section 2). The worker accepts every delivery-family type
#: whatever BWP_API_VERSION says; this table tells which ones a subscription can bring.
VERSIONS: Final[dict[str, frozenset[str]]] = {
    "ITEM_IN_TRANSIT": _OLDEST,
    "ITEM_DELIVERED": _OLDEST,
    "ITEM_CANCELLED": _OLDEST,
    "DELIVERY_IN_TRANSIT": _OLD,
    "DELIVERY_COMPLETED": _OLD,
    "DELIVERY_CANCELLED": _OLD,
    "PACKAGE_DELIVERY_IN_TRANSIT": _NEWEST,
    "PACKAGE_DELIVERED": _NEWEST,
    "PACKAGE_DELIVERY_CANCELLED": _NEWEST,
    MILESTONE_EVENT: _NEWEST,
    "ORDER_CONFIRMED": _NEWEST,
    "REFUND_REQUESTED": _ALL,
    "REFUND_COMPLETED": _NEWEST,
    "RETURN_STARTED": _ALL,
    "RETURN_ITEM_GRADED": _ALL,
    "RETURN_COMPLETED": _ALL,
    "RETURN_DELIVERY_COMPLETED": _OLD,
    "RETURN_DELIVERY_FAILED": _OLD,
    "RETURN_PACKAGE_IN_TRANSIT": _NEWEST,
    "RETURN_PACKAGE_DELIVERED": _NEWEST,
    "RETURN_PACKAGE_DELIVERY_FAILED": _NEWEST,
    "BUYABILITY_CHANGED": _ALL,
    "INVENTORY_CHANGED": _ALL,
    "PERSONAL_DATA_DELETION_TASK_COMPLETED": _ALL,
    "PERSONAL_DATA_DELETION_TASK_FAILED": _ALL,
    "PERSONAL_DATA_RETRIEVAL_TASK_COMPLETED": _ALL,
    "PERSONAL_DATA_RETRIEVAL_TASK_FAILED": _ALL,
}


def versions_of(detail_type: str) -> frozenset[str]:
    """The API versions that publish ``detail_type`` (empty for an unknown type)."""
    return VERSIONS.get(detail_type, frozenset())


def newest_generation_only(detail_type: str) -> bool:
    """True for a type only 2024-11-01 subscriptions publish: it always carries
    ``detail.idempotencyKey`` and the rest of the webhook body in ``detail``."""
    return versions_of(detail_type) == _NEWEST


def metric_label(detail_type: str) -> str:
    """``detail_type`` when it is a known Buy with Prime type, else "other"."""
    known = (
        detail_type in DELIVERY_EVENTS
        or detail_type == MILESTONE_EVENT
        or detail_type in OTHER_KNOWN_EVENTS
    )
    return detail_type if known else "other"


def rank(state: DeliveryState) -> int:
    """Position of ``state`` in the never-backwards order."""
    return STATE_RANK[state]


def is_delivery_event(detail_type: str) -> bool:
    return detail_type in DELIVERY_EVENTS


def implied_state(detail_type: str) -> DeliveryState:
    """The delivery state a delivery-family event announces.

    Raises KeyError for a detail-type outside the delivery family.
    """
    return DELIVERY_EVENTS[detail_type]
