"""tasks.events.catalog: the delivery-family detail-types and the never-backwards order."""

from __future__ import annotations

import pytest

from tasks.events.catalog import (
    CANCELLATION_REASONS,
    TERMINAL_STATES,
    TWINS,
    DeliveryState,
    implied_state,
    is_delivery_event,
    rank,
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
