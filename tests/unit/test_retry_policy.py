"""tasks.delivery.task_retry: after an error, retry later (and when) or park (and as what)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.delivery.outcome import Outcome
from tasks.delivery.task_retry import (
    BUSY_MAX_RETRIES,
    GiveUp,
    Park,
    Retry,
    RetryPolicy,
    next_step,
)
from tasks.errors import (
    ApiAccessDenied,
    ApiBehindEvent,
    ApiUnavailable,
    DeadLetterUnavailable,
    DeliveryBusy,
    DependencyDown,
    LedgerUnavailable,
    MalformedEvent,
    MilestoneDeferred,
    OmsUnavailable,
    OrderNotVisibleYet,
    PermanentApiError,
    PermanentOmsError,
    TrackerUnknownYet,
)

POLICY = RetryPolicy(max_retries=5, not_found_max_retries=3, base=2.0, cap=60.0)


def step(
    exc: BaseException, failures: int = 0, busy: int = 0, policy: RetryPolicy = POLICY
) -> Retry | Park | GiveUp:
    return next_step(exc, failures=failures, busy=busy, policy=policy, rng=random.Random(7))


# --- a busy delivery -----------------------------------------------------------------


@pytest.mark.parametrize("busy", [0, 1, 50, BUSY_MAX_RETRIES - 1])
def test_busy_delivery_is_retried_quickly_without_spending_failures(busy: int) -> None:
    # Given another worker holds the delivery's lock
    # When the task meets DeliveryBusy
    decision = step(DeliveryBusy("locked"), failures=2, busy=busy)
    # Then it retries within a second, counting a busy retry and not a failure
    assert isinstance(decision, Retry)
    assert 0.2 <= decision.countdown <= 1.0
    assert (decision.failures, decision.busy) == (2, busy + 1)


def test_busy_retries_past_their_budget_spend_ordinary_failures() -> None:
    # Given the busy budget is spent
    decision = step(DeliveryBusy("locked"), failures=1, busy=BUSY_MAX_RETRIES)
    # Then the retry counts as a failure, with an ordinary backoff
    assert isinstance(decision, Retry)
    assert (decision.failures, decision.busy) == (2, BUSY_MAX_RETRIES)
    assert 2.0 <= decision.countdown <= 4.0  # base * 2**1 with equal jitter


def test_busy_retries_past_both_budgets_park_as_retries_exhausted() -> None:
    decision = step(DeliveryBusy("locked"), failures=POLICY.max_retries, busy=BUSY_MAX_RETRIES)
    assert isinstance(decision, Park)
    assert decision.kind == "retries-exhausted"


# --- permanent errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (MalformedEvent("body is not JSON"), "malformed"),
        (PermanentApiError("ValidationError"), "permanent-api-error"),
        (PermanentOmsError("HTTP 422"), "permanent-oms-error"),
    ],
)
@pytest.mark.parametrize("failures", [0, 3])
def test_permanent_error_parks_at_once_with_its_kind(
    exc: Exception, kind: str, failures: int
) -> None:
    decision = step(exc, failures=failures)
    assert decision == Park(kind, f"{type(exc).__name__}: {exc}")


# --- not visible yet -----------------------------------------------------------------


@pytest.mark.parametrize("failures", range(POLICY.not_found_max_retries))
def test_order_not_visible_yet_is_retried_a_few_times(failures: int) -> None:
    decision = step(OrderNotVisibleYet("not found"), failures=failures)
    assert isinstance(decision, Retry)
    assert decision.failures == failures + 1


def test_order_not_visible_after_its_budget_parks_as_permanent_api_error() -> None:
    # Given the not-found budget (3) is spent, though the general budget (5) is not
    decision = step(OrderNotVisibleYet("not found"), failures=POLICY.not_found_max_retries)
    # Then the event is parked as a permanent API error, saying how often it tried
    assert isinstance(decision, Park)
    assert decision.kind == "permanent-api-error"
    assert decision.reason == "gave up after 3 retries: OrderNotVisibleYet: not found"


# --- a milestone's tracker not known yet ---------------------------------------------


@pytest.mark.parametrize("failures", range(POLICY.not_found_max_retries))
def test_an_unknown_tracker_is_retried_for_the_not_found_budget(failures: int) -> None:
    # Given a milestone whose tracker no known delivery carries (its IN_TRANSIT may come)
    decision = step(TrackerUnknownYet("no delivery carries 1Z"), failures=failures)
    # Then it is retried, with the ordinary backoff
    assert isinstance(decision, Retry)
    assert decision.failures == failures + 1
    assert POLICY.base * 2**failures / 2 <= decision.countdown <= POLICY.base * 2**failures


def test_an_unknown_tracker_past_its_budget_is_acknowledged_not_parked() -> None:
    # Given the not-found budget (3) is spent
    decision = step(TrackerUnknownYet("no delivery carries 1Z"), failures=3)
    # Then the event is given up on as an unknown tracker (done and counted), not parked
    assert decision == GiveUp(
        "TrackerUnknownYet: no delivery carries 1Z", how=Outcome.UNKNOWN_TRACKER
    )
    assert Outcome.UNKNOWN_TRACKER == "unknown_tracker"


def test_a_deferred_milestone_waits_at_least_the_rest_of_its_window() -> None:
    decision = step(MilestoneDeferred("queried moments ago", retry_after=9.5))
    assert isinstance(decision, Retry)
    assert decision.countdown >= 9.5
    assert decision.failures == 0  # a wait for another's query, not the event's failure


def test_access_denied_parks_as_a_permanent_api_error() -> None:
    decision = step(ApiAccessDenied("AccessDeniedError"))
    assert isinstance(decision, Park)
    assert decision.kind == "permanent-api-error"


# --- other retryable errors ----------------------------------------------------------

RETRYABLE = [
    ApiUnavailable("HTTP 503"),
    OmsUnavailable("HTTP 502"),
    ApiBehindEvent("order API shows IN_TRANSIT for an event announcing DELIVERED"),
    DeadLetterUnavailable("dlq down"),
    KeyError("unexpected"),
    RuntimeError("unexpected"),
]


@pytest.mark.parametrize("exc", RETRYABLE, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("failures", range(POLICY.max_retries))
def test_retryable_and_unexpected_errors_are_retried_up_to_max_retries(
    exc: Exception, failures: int
) -> None:
    decision = step(exc, failures=failures, busy=4)
    assert isinstance(decision, Retry)
    assert (decision.failures, decision.busy) == (failures + 1, 4)


@pytest.mark.parametrize("exc", RETRYABLE, ids=lambda e: type(e).__name__)
def test_retryable_and_unexpected_errors_then_park_as_retries_exhausted(exc: Exception) -> None:
    decision = step(exc, failures=POLICY.max_retries)
    assert isinstance(decision, Park)
    assert decision.kind == "retries-exhausted"
    assert decision.reason.startswith(f"gave up after 5 retries: {type(exc).__name__}")


def test_no_retries_configured_parks_on_first_failure() -> None:
    policy = RetryPolicy(max_retries=0, not_found_max_retries=0, base=1.0, cap=10.0)
    assert step(ApiUnavailable("x"), policy=policy) == Park(
        "retries-exhausted", "gave up after 0 retries: ApiUnavailable: x"
    )
    assert isinstance(step(OrderNotVisibleYet("x"), policy=policy), Park)


# --- outages: no budget spent ---------------------------------------------------------


@pytest.mark.parametrize("failures", [0, 3, POLICY.max_retries, 1000])
def test_an_open_circuit_waits_a_few_probe_intervals_and_spends_nothing(failures: int) -> None:
    # Given the OMS's circuit is open (probed once a second across the deployment)
    decision = step(DependencyDown("oms", 1.0), failures=failures, busy=3)
    # Then the task waits 1-4 s, however often it has waited, never parked
    assert isinstance(decision, Retry)
    assert 1.0 <= decision.countdown <= 4.0
    assert (decision.failures, decision.busy) == (failures, 3)


@pytest.mark.parametrize("failures", [0, POLICY.max_retries, 1000])
def test_redis_down_is_waited_out_without_spending_the_budget(failures: int) -> None:
    decision = step(LedgerUnavailable("redis: ConnectionError"), failures=failures)
    assert isinstance(decision, Retry)
    assert decision.failures == failures
    assert 1.0 <= decision.countdown <= 2.0  # the base countdown, not a growing one


def test_the_api_behind_the_event_parks_with_both_states_once_the_budget_is_spent() -> None:
    behind = ApiBehindEvent("order API shows DELIVERED for an event announcing CANCELLED")
    assert step(behind, failures=POLICY.max_retries) == Park(
        "retries-exhausted",
        "gave up after 5 retries: ApiBehindEvent: order API shows DELIVERED for an event "
        "announcing CANCELLED",
    )


# --- countdowns ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failures", "ceiling"),
    [(0, 2.0), (1, 4.0), (2, 8.0), (3, 16.0), (4, 32.0), (5, 60.0), (20, 60.0)],
)
def test_countdown_is_equal_jitter_below_a_capped_ceiling(failures: int, ceiling: float) -> None:
    policy = RetryPolicy(max_retries=50, not_found_max_retries=3, base=2.0, cap=60.0)
    countdowns = []
    for seed in range(200):
        decision = next_step(
            ApiUnavailable("x"), failures=failures, busy=0, policy=policy, rng=random.Random(seed)
        )
        assert isinstance(decision, Retry)
        countdowns.append(decision.countdown)
    # never at once, never over the ceiling, and spread over the window
    assert all(ceiling / 2 <= c <= ceiling for c in countdowns)
    assert max(countdowns) - min(countdowns) > ceiling / 4


def test_countdown_is_reproducible_with_a_seeded_rng() -> None:
    def countdown(seed: int) -> float:
        decision = next_step(
            ApiUnavailable("x"), failures=2, busy=0, policy=POLICY, rng=random.Random(seed)
        )
        assert isinstance(decision, Retry)
        return decision.countdown

    assert countdown(1) == countdown(1)
    assert countdown(1) != countdown(2)


@pytest.mark.parametrize(
    ("retry_after", "low", "high"),
    [
        pytest.param(30.0, 30.0, 30.0, id="longer-than-the-jitter"),
        pytest.param(1000.0, 60.0, 60.0, id="capped"),
        pytest.param(0.5, 2.0, 4.0, id="shorter-than-the-jitter"),
        pytest.param(0.0, 2.0, 4.0, id="zero"),
    ],
)
@pytest.mark.parametrize(
    "exc_type", [ApiUnavailable, OmsUnavailable, OrderNotVisibleYet, ApiBehindEvent]
)
def test_retry_after_is_honoured_up_to_the_cap(
    exc_type: type[ApiUnavailable], retry_after: float, low: float, high: float
) -> None:
    # Given the other side asked to wait `retry_after` seconds, at the second failure
    exc = exc_type("slow down", retry_after=retry_after)
    for seed in range(50):
        decision = next_step(exc, failures=1, busy=0, policy=POLICY, rng=random.Random(seed))
        # Then the countdown is at least that long, but never beyond the cap
        assert isinstance(decision, Retry)
        assert low <= decision.countdown <= high


@given(
    failures=st.integers(0, 49),
    base=st.floats(0.01, 100),
    cap=st.floats(0.01, 3600),
    retry_after=st.one_of(st.none(), st.floats(0, 10_000)),
    seed=st.integers(),
)
def test_any_countdown_stays_within_the_window(
    failures: int, base: float, cap: float, retry_after: float | None, seed: int
) -> None:
    policy = RetryPolicy(max_retries=50, not_found_max_retries=3, base=base, cap=cap)
    exc = ApiUnavailable("x", retry_after=retry_after)
    decision = next_step(exc, failures=failures, busy=0, policy=policy, rng=random.Random(seed))
    assert isinstance(decision, Retry)
    ceiling = min(cap, base * 2**failures)
    floor = max(ceiling / 2, min(retry_after or 0.0, cap))
    assert floor <= decision.countdown <= max(ceiling, floor)
    assert decision.countdown <= cap


def test_default_rng_is_used_when_none_is_given() -> None:
    decision = next_step(ApiUnavailable("x"), failures=0, busy=0, policy=POLICY)
    assert isinstance(decision, Retry)
    assert 1.0 <= decision.countdown <= 2.0
