"""tasks.http.retry: a few quick in-call attempts, only for transient errors.

Every call passes ``base=0`` (or a cap of a few milliseconds), so no test sleeps longer.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.errors import (
    ApiUnavailable,
    LedgerUnavailable,
    OmsUnavailable,
    OrderNotVisibleYet,
    PermanentApiError,
    PermanentOmsError,
)
from tasks.http.retry import backoff_seconds, call_with_retries


class Script:
    """A callable that raises the scripted errors in turn, then returns ``"ok"``."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def no_wait(fn: Callable[[], str], attempts: int) -> str:
    return call_with_retries(fn, attempts=attempts, base=0, cap=0)


def test_success_at_once_is_one_call() -> None:
    fn = Script()
    assert no_wait(fn, attempts=3) == "ok"
    assert fn.calls == 1


@pytest.mark.parametrize("error", [ApiUnavailable("503"), OmsUnavailable("502")])
def test_transient_errors_are_retried_until_success(error: Exception) -> None:
    # Given two transient failures before success
    fn = Script(error, error)
    # When called with three attempts
    result = no_wait(fn, attempts=3)
    # Then the third attempt's result comes back
    assert result == "ok"
    assert fn.calls == 3


def test_after_the_last_attempt_the_last_error_is_raised() -> None:
    # Given a dependency that fails every time, differently each time
    errors = [ApiUnavailable("first"), OmsUnavailable("second"), ApiUnavailable("third")]
    fn = Script(*errors, ApiUnavailable("never reached"))
    # When called with three attempts
    with pytest.raises(ApiUnavailable) as caught:
        no_wait(fn, attempts=3)
    # Then exactly three calls were made and the third error is re-raised as it was
    assert fn.calls == 3
    assert caught.value is errors[2]


@pytest.mark.parametrize(
    "error",
    [
        PermanentApiError("ValidationError"),
        PermanentOmsError("HTTP 422"),
        OrderNotVisibleYet("not found"),  # retried later by the task, not inside the call
        LedgerUnavailable("redis down"),
        KeyError("bug"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_other_errors_are_not_retried_inside_the_call(error: Exception) -> None:
    fn = Script(error)
    with pytest.raises(type(error)) as caught:
        no_wait(fn, attempts=5)
    assert fn.calls == 1
    assert caught.value is error


def test_one_attempt_means_no_retry() -> None:
    fn = Script(ApiUnavailable("503"))
    with pytest.raises(ApiUnavailable):
        no_wait(fn, attempts=1)
    assert fn.calls == 1


def test_retry_after_is_honoured_inside_the_call() -> None:
    # Given a dependency that asks for a 10 ms pause once
    fn = Script(ApiUnavailable("429", retry_after=0.01))
    # When called with no backoff of its own
    started = time.monotonic()
    assert call_with_retries(fn, attempts=2, base=0, cap=1.0) == "ok"
    # Then the call waited at least what was asked
    assert time.monotonic() - started >= 0.01


def test_retry_after_never_waits_beyond_the_cap() -> None:
    # Given a dependency that asks for an hour's pause
    fn = Script(OmsUnavailable("503", retry_after=3600))
    # When the in-call cap is 5 ms
    started = time.monotonic()
    assert call_with_retries(fn, attempts=2, base=0, cap=0.005) == "ok"
    # Then the call did not wait the hour: the task-level retry is for long waits
    assert time.monotonic() - started < 1.0


# --- backoff -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "ceiling"), [(0, 0.2), (1, 0.4), (2, 0.8), (3, 1.6), (5, 5.0), (30, 5.0)]
)
def test_backoff_is_full_jitter_below_a_capped_ceiling(attempt: int, ceiling: float) -> None:
    waits = [backoff_seconds(attempt, 0.2, 5.0, random.Random(seed)) for seed in range(200)]
    assert all(0 <= w <= ceiling for w in waits)
    assert min(waits) < ceiling / 4
    assert max(waits) > ceiling * 3 / 4


def test_backoff_with_zero_base_or_cap_is_zero() -> None:
    assert backoff_seconds(3, 0, 5.0, random.Random(1)) == 0
    assert backoff_seconds(3, 0.2, 0, random.Random(1)) == 0


@given(
    attempt=st.integers(0, 60),
    base=st.floats(0, 100),
    cap=st.floats(0, 3600),
    seed=st.integers(),
)
def test_any_backoff_lies_in_zero_to_ceiling(
    attempt: int, base: float, cap: float, seed: int
) -> None:
    wait = backoff_seconds(attempt, base, cap, random.Random(seed))
    assert 0 <= wait <= min(cap, base * 2**attempt)
