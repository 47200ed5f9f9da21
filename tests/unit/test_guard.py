"""tasks.delivery.guard: push a snapshot only when it is new and does not go backwards."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.delivery.guard import Decision, decide
from tasks.events.catalog import DeliveryState, rank
from tasks.model.pushed import Pushed

PENDING, IN_TRANSIT = DeliveryState.PENDING, DeliveryState.IN_TRANSIT
DELIVERED, CANCELLED = DeliveryState.DELIVERED, DeliveryState.CANCELLED


@pytest.mark.parametrize("state", list(DeliveryState))
def test_first_snapshot_of_a_delivery_is_pushed(state: DeliveryState) -> None:
    # Given nothing was pushed for the delivery yet
    # Then any snapshot is pushed
    assert decide("fp-new", rank(state), None) is Decision.PUSH


@pytest.mark.parametrize("state", list(DeliveryState))
def test_same_fingerprint_again_is_unchanged(state: DeliveryState) -> None:
    # Given a twin or a redelivered event that reads the same content
    last = Pushed(fingerprint="fp-1", rank=rank(state))
    # Then nothing is pushed
    assert decide("fp-1", rank(state), last) is Decision.UNCHANGED


@pytest.mark.parametrize(
    ("pushed", "observed", "decision"),
    [
        (PENDING, PENDING, Decision.PUSH),
        (PENDING, IN_TRANSIT, Decision.PUSH),
        (PENDING, DELIVERED, Decision.PUSH),
        (IN_TRANSIT, IN_TRANSIT, Decision.PUSH),
        (IN_TRANSIT, DELIVERED, Decision.PUSH),
        (IN_TRANSIT, CANCELLED, Decision.PUSH),
        (IN_TRANSIT, PENDING, Decision.BACKWARDS),
        (DELIVERED, DELIVERED, Decision.PUSH),
        (DELIVERED, CANCELLED, Decision.PUSH),
        (CANCELLED, DELIVERED, Decision.PUSH),
        (DELIVERED, PENDING, Decision.BACKWARDS),
        (DELIVERED, IN_TRANSIT, Decision.BACKWARDS),
        (CANCELLED, PENDING, Decision.BACKWARDS),
        (CANCELLED, IN_TRANSIT, Decision.BACKWARDS),
    ],
)
def test_changed_snapshot_is_pushed_unless_it_goes_backwards(
    pushed: DeliveryState, observed: DeliveryState, decision: Decision
) -> None:
    # Given a snapshot in state `pushed` reached the OMS
    last = Pushed(fingerprint="fp-old", rank=rank(pushed))
    # When a snapshot with other content is observed in state `observed`
    # Then it is pushed unless its state ranks below the pushed one
    assert decide("fp-new", rank(observed), last) is decision


@given(
    pushed=st.sampled_from(list(DeliveryState)),
    observed=st.sampled_from(list(DeliveryState)),
    fingerprint=st.text(min_size=1),
)
def test_after_a_terminal_push_no_earlier_state_is_ever_pushed(
    pushed: DeliveryState, observed: DeliveryState, fingerprint: str
) -> None:
    # Contract: after DELIVERED or CANCELLED, no PENDING or IN_TRANSIT snapshot is pushed.
    last = Pushed(fingerprint="fp-terminal", rank=rank(pushed))
    decision = decide(fingerprint, rank(observed), last)
    if pushed in (DELIVERED, CANCELLED) and observed in (PENDING, IN_TRANSIT):
        assert decision is not Decision.PUSH
