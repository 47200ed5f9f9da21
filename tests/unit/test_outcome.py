"""How a sync task ends: the strings its outcomes and parks stand for are the contract
(the `done` record's ``how``, the task's return value, the logs)."""

from __future__ import annotations

from tasks.delivery.attempt import Parked
from tasks.delivery.outcome import Outcome
from tasks.ledger.events import EventState


def test_outcomes_are_the_strings_the_ledger_and_the_logs_carry() -> None:
    assert {o.value for o in Outcome} == {
        "pushed",
        "unchanged",
        "backwards",
        "no_news",
        "already_done",
        "coalesced",
        "unknown_tracker",
    }
    assert f"{Outcome.NO_NEWS}" == "no_news"


def test_a_park_reads_as_its_state_and_kind() -> None:
    # Given an event the DLQ took, and one no DLQ took
    taken, refused = Parked("malformed"), Parked("retries-exhausted", EventState.FAILED)
    # Then each reads as before the types: "parked:<kind>" and "failed:<kind>"
    assert str(taken) == "parked:malformed"
    assert str(refused) == "failed:retries-exhausted"
