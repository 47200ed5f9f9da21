"""What a task does after an error: retry later (and when) or park (and as what). Pure."""

from __future__ import annotations

import random
from dataclasses import dataclass

from tasks.errors import (
    ApiBehindEvent,
    BwpError,
    DeliveryBusy,
    OrderNotVisibleYet,
    RetryableError,
    TrackerUnknownYet,
)

#: how often a task waits for an API that lags behind the event before giving up
BEHIND_MAX_RETRIES = 3
#: a delivery lock is held for one query and one push: waiting for it is cheap
BUSY_MAX_RETRIES = 100
#: how a milestone whose tracker stayed unknown is marked done
UNKNOWN_TRACKER = "unknown_tracker"


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
    """Stop retrying without parking: the work that mattered is done."""

    reason: str
    #: how the event is marked done
    how: str = "api_behind"


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
    if isinstance(exc, BwpError) and not exc.retryable:
        return Park(exc.dlq_kind, reason)
    if isinstance(exc, ApiBehindEvent):
        if failures < BEHIND_MAX_RETRIES:
            return Retry(_countdown(policy, failures, exc, rng), failures + 1, busy)
        return GiveUp(reason)
    if isinstance(exc, TrackerUnknownYet):  # its IN_TRANSIT may be on the way: as not-found
        if failures < policy.not_found_max_retries:
            return Retry(_countdown(policy, failures, exc, rng), failures + 1, busy)
        return GiveUp(reason, how=UNKNOWN_TRACKER)
    budget = (
        policy.not_found_max_retries if isinstance(exc, OrderNotVisibleYet) else policy.max_retries
    )
    if failures < budget:
        return Retry(_countdown(policy, failures, exc, rng), failures + 1, busy)
    kind = exc.dlq_kind if isinstance(exc, OrderNotVisibleYet) else "retries-exhausted"
    return Park(kind, f"gave up after {failures} retries: {reason}")
