"""How a sync task ends with its event done. Pure.

An outcome's value is the ``how`` of the event's `done` record, and what the task returns
and logs. (An event that failed for good ends ``Parked`` instead: tasks.delivery.attempt.)
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    PUSHED = "pushed"  # the OMS received a new snapshot
    UNCHANGED = "unchanged"  # the API shows what the OMS already has
    BACKWARDS = "backwards"  # the API shows an earlier state than was pushed: not sent
    NO_NEWS = "no_news"  # the pushed state already covers the event: no order query
    ALREADY_DONE = "already_done"  # the ledger says another task finished this event
    COALESCED = "coalesced"  # a milestone covered by another query of its tracker
    UNKNOWN_TRACKER = "unknown_tracker"  # a milestone whose tracker stayed unknown
