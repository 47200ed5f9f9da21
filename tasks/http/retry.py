"""In-call retries (tenacity): few attempts, full jitter, only retryable errors,
Retry-After honoured. Longer outages are left to the Celery-level retry."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TypeVar

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from tasks.errors import ApiUnavailable, OmsUnavailable, RetryableError

T = TypeVar("T")

#: error types worth a quick second attempt inside the same call
TRANSIENT = (ApiUnavailable, OmsUnavailable)


def retry_after_header(response: httpx.Response) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds form), None when absent or odd."""
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def backoff_seconds(
    attempt: int, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
    ceiling = min(cap, base * (2**attempt))
    return (rng or random).uniform(0, ceiling)


class _Wait:
    def __init__(self, base: float, cap: float) -> None:
        self._base, self._cap = base, cap

    def __call__(self, state: RetryCallState) -> float:
        jitter = backoff_seconds(state.attempt_number - 1, self._base, self._cap)
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, RetryableError) and exc.retry_after is not None:
            # Never wait longer than the cap inside a call: past it, the task retries later.
            return min(self._cap, max(jitter, exc.retry_after))
        return jitter


def call_with_retries(
    fn: Callable[[], T], *, attempts: int, base: float = 0.2, cap: float = 5.0
) -> T:
    """Run ``fn``; retry TRANSIENT errors up to ``attempts`` in all, then re-raise the last."""
    retrying = Retrying(
        stop=stop_after_attempt(attempts),
        wait=_Wait(base, cap),
        retry=retry_if_exception_type(TRANSIENT),
        reraise=True,
    )
    return retrying(fn)
