"""The delivery guard's decision (design.md sections 3.2-3.3). Pure.

A snapshot is pushed only when its fingerprint differs from the last pushed one and its
state does not rank below the last pushed state; and, for an event that announces a
state, only when it carries that fact (``covers``).
"""

from __future__ import annotations

from enum import StrEnum

from tasks.events.catalog import DeliveryState, rank
from tasks.model.pushed import Pushed


class Decision(StrEnum):
    PUSH = "push"
    UNCHANGED = "unchanged"
    BACKWARDS = "backwards"


def decide(fingerprint: str, rank: int, last: Pushed | None) -> Decision:
    if last is None:
        return Decision.PUSH
    if fingerprint == last.fingerprint:
        return Decision.UNCHANGED
    if rank < last.rank:
        return Decision.BACKWARDS
    return Decision.PUSH


def covers(shown: DeliveryState, announced: DeliveryState) -> bool:
    """Does a snapshot in state ``shown`` carry the fact an event announcing ``announced``
    brought? A later state does (the API moved on), the same state does; an earlier one
    does not, nor the other terminal state (CANCELLED for a DELIVERED event)."""
    return shown == announced or rank(shown) > rank(announced)
