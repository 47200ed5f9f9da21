"""tasks.events.catalog: the delivery-family detail-types and the never-backwards order."""

from __future__ import annotations

import pytest

from tasks.events.catalog import (
    API_VERSIONS,
    CANCELLATION_REASONS,
    DELIVERY_EVENTS,
    MILESTONE_EVENT,
    OTHER_KNOWN_EVENTS,
    TERMINAL_STATES,
    TWINS,
    VERSIONS,
    DeliveryState,
    implied_state,
    is_delivery_event,
    metric_label,
    newest_generation_only,
    rank,
    versions_of,
)

PENDING, IN_TRANSIT = DeliveryState.PENDING, DeliveryState.IN_TRANSIT
DELIVERED, CANCELLED = DeliveryState.DELIVERED, DeliveryState.CANCELLED


@pytest.mark.parametrize(
    ("earlier", "later"),
    [
        (PENDING, IN_TRANSIT),
        (PENDING, DELIVERED),
        (PENDING, CANCELLED),
        (IN_TRANSIT, DELIVERED),
        (IN_TRANSIT, CANCELLED),
    ],
)
def test_states_rank_in_delivery_order(earlier: DeliveryState, later: DeliveryState) -> None:
    assert rank(earlier) < rank(later)


def test_delivered_and_cancelled_rank_equal_and_are_the_terminal_states() -> None:
    assert rank(DELIVERED) == rank(CANCELLED)
    assert {DELIVERED, CANCELLED} == TERMINAL_STATES
    assert all(rank(s) < rank(DELIVERED) for s in DeliveryState if s not in TERMINAL_STATES)


@pytest.mark.parametrize(
    ("detail_type", "state"),
    [
        ("ITEM_IN_TRANSIT", IN_TRANSIT),
        ("ITEM_DELIVERED", DELIVERED),
        ("ITEM_CANCELLED", CANCELLED),
        ("DELIVERY_IN_TRANSIT", IN_TRANSIT),
        ("DELIVERY_COMPLETED", DELIVERED),
        ("DELIVERY_CANCELLED", CANCELLED),
        ("PACKAGE_DELIVERY_IN_TRANSIT", IN_TRANSIT),
        ("PACKAGE_DELIVERED", DELIVERED),
        ("PACKAGE_DELIVERY_CANCELLED", CANCELLED),
    ],
)
def test_each_delivery_event_implies_its_state(detail_type: str, state: DeliveryState) -> None:
    assert is_delivery_event(detail_type)
    assert implied_state(detail_type) is state


@pytest.mark.parametrize(
    "detail_type",
    [
        "ORDER_CONFIRMED",
        "PACKAGE_TRACKER_MILESTONE_CHANGED",
        "REFUND_REQUESTED",
        "RETURN_DELIVERY_COMPLETED",
        "RETURN_PACKAGE_DELIVERED",
        "item_delivered",
        "PACKAGE_DELIVERED ",
        "",
    ],
)
def test_other_detail_types_are_not_delivery_events(detail_type: str) -> None:
    assert not is_delivery_event(detail_type)
    with pytest.raises(KeyError):
        implied_state(detail_type)


@pytest.mark.parametrize(
    ("state", "twins"),
    [
        (IN_TRANSIT, ("ITEM_IN_TRANSIT", "DELIVERY_IN_TRANSIT", "PACKAGE_DELIVERY_IN_TRANSIT")),
        (DELIVERED, ("ITEM_DELIVERED", "DELIVERY_COMPLETED", "PACKAGE_DELIVERED")),
        (CANCELLED, ("ITEM_CANCELLED", "DELIVERY_CANCELLED", "PACKAGE_DELIVERY_CANCELLED")),
    ],
)
def test_twins_are_the_three_generations_of_one_fact(
    state: DeliveryState, twins: tuple[str, ...]
) -> None:
    # The twin set of a state lists one detail-type per API generation, oldest first
    assert TWINS[state] == twins
    assert all(implied_state(twin) is state for twin in twins)


def test_no_event_announces_pending() -> None:
    assert set(TWINS) == {IN_TRANSIT, DELIVERED, CANCELLED}


def test_cancellation_reasons_are_the_documented_three() -> None:
    assert {"CUSTOMER_REQUESTED", "UNFULFILLABLE", "UNDELIVERABLE"} == CANCELLATION_REASONS


# --- which types exist in which API version ---------------------------------------------


def test_every_known_detail_type_says_which_versions_publish_it() -> None:
    known = {*DELIVERY_EVENTS, MILESTONE_EVENT, *OTHER_KNOWN_EVENTS}
    assert set(VERSIONS) == known
    assert all(VERSIONS[t] and VERSIONS[t] <= set(API_VERSIONS) for t in known)


@pytest.mark.parametrize(
    ("detail_type", "versions"),
    [
        ("ITEM_DELIVERED", {"2024-01-01"}),
        ("DELIVERY_COMPLETED", {"2024-01-01", "2024-04-01"}),
        ("PACKAGE_DELIVERED", {"2024-11-01"}),
        ("PACKAGE_TRACKER_MILESTONE_CHANGED", {"2024-11-01"}),
        ("ORDER_CONFIRMED", {"2024-11-01"}),
        ("REFUND_COMPLETED", {"2024-11-01"}),
        ("REFUND_REQUESTED", {"2024-01-01", "2024-04-01", "2024-11-01"}),
        ("RETURN_PACKAGE_DELIVERED", {"2024-11-01"}),
        ("RETURN_DELIVERY_FAILED", {"2024-01-01", "2024-04-01"}),
        ("SOMETHING_ELSE", set()),
    ],
)
def test_versions_of_a_detail_type(detail_type: str, versions: set[str]) -> None:
    assert versions_of(detail_type) == versions
    assert newest_generation_only(detail_type) == (versions == {"2024-11-01"})


def test_return_and_privacy_types_are_named_in_metrics() -> None:
    for detail_type in ("RETURN_PACKAGE_IN_TRANSIT", "PERSONAL_DATA_DELETION_TASK_FAILED"):
        assert metric_label(detail_type) == detail_type
    assert metric_label("NOT_A_TYPE") == "other"
