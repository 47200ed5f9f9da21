"""What a task does after an error: retry later (and when) or park (and as what). Pure.

The retry budget (``max_retries``) counts only failures that belong to the event: an
answer that does not let it finish (the order API behind the event, an outage-kind
error while the dependency's circuit is closed, so that it works for others). An open
circuit (DependencyDown) or an unreachable Redis is an outage for everyone: the task
waits and retries without spending anything, however long it lasts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tasks.delivery.outcome import Outcome
from tasks.errors import (
    BwpError,
    DeliveryBusy,
    DependencyDown,
    LedgerUnavailable,
    MilestoneDeferred,
    OrderNotVisibleYet,
    RetryableError,
    TrackerUnknownYet,
)

#: a delivery lock is held for one query and one push: waiting for it is cheap
BUSY_MAX_RETRIES = 100


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int
    not_found_max_retries: int
    base: float
    cap: float


@dataclass(frozen=True, slots=True)
class Retry:
    countdown: float
    failures: int
    busy: int


@dataclass(frozen=True, slots=True)
class Park:
    kind: str
    reason: str


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Stop retrying without parking: the event is acknowledged (marked done ``how``)."""

    reason: str
    #: how the event is marked done
    how: Outcome


def _countdown(policy: RetryPolicy, failures: int, exc: BaseException, rng: random.Random) -> float:
    ceiling = min(policy.cap, policy.base * (2**failures))
    wait = rng.uniform(ceiling / 2, ceiling)  # "equal jitter": never retry at once
    if isinstance(exc, RetryableError) and exc.retry_after is not None:
        wait = max(wait, min(exc.retry_after, policy.cap))
    return wait


def next_step(  # noqa: PLR0911 - one decision per kind of error
    exc: BaseException,
    *,
    failures: int,
    busy: int,
    policy: RetryPolicy,
    rng: random.Random | None = None,
) -> Retry | Park | GiveUp:
    """Decide after ``exc``; ``failures``/``busy`` count the retries already spent."""
    rng = rng or random.Random()
    reason = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, DeliveryBusy) and busy < BUSY_MAX_RETRIES:
        return Retry(rng.uniform(0.2, 1.0), failures, busy + 1)
    if isinstance(exc, DependencyDown):
        # the circuit's probe finds the moment it returns; the backlog then flows within
        # a few probe intervals, not at an exponential countdown
        interval = exc.retry_after or 1.0
        return Retry(rng.uniform(interval, 4 * interval), failures, busy)
    if isinstance(exc, LedgerUnavailable):
        return Retry(_countdown(policy, 0, exc, rng), failures, busy)
    if isinstance(exc, BwpError) and not exc.retryable:
        return Park(exc.dlq_kind, reason)
    if isinstance(exc, MilestoneDeferred):  # a wait for a query of moments ago, no failure
        return Retry(max(exc.retry_after or 1.0, 0.1), failures, busy)
    if isinstance(exc, TrackerUnknownYet):  # its IN_TRANSIT may be on the way: as not-found
        if failures < policy.not_found_max_retries:
            return Retry(_countdown(policy, failures, exc, rng), failures + 1, busy)
        return GiveUp(reason, how=Outcome.UNKNOWN_TRACKER)
    budget = (
        policy.not_found_max_retries if isinstance(exc, OrderNotVisibleYet) else policy.max_retries
    )
    if failures < budget:
        return Retry(_countdown(policy, failures, exc, rng), failures + 1, busy)
    kind = exc.dlq_kind if isinstance(exc, OrderNotVisibleYet) else "retries-exhausted"
    return Park(kind, f"gave up after {failures} retries: {reason}")
