"""The circuits shared through real Redis (tasks/http/circuit.py): two Circuits objects
stand for two worker processes of one deployment."""

from __future__ import annotations

import time
from contextlib import suppress

import pytest
import redis
from structlog.testing import capture_logs

from tasks.errors import DependencyDown, OmsUnavailable
from tasks.http.circuit import OMS, Breaker, CircuitConfig, Circuits
from tasks.keys import Keys

CONFIG = CircuitConfig(threshold=3, probe_interval=0.5, refresh=0.0)


def circuits(client: redis.Redis, prefix: str, changes: list[tuple[str, bool]]) -> Circuits:
    return Circuits(client, Keys(prefix), CONFIG, on_change=lambda d, o: changes.append((d, o)))


def down() -> int:
    raise OmsUnavailable("OMS answered HTTP 503")


def test_failures_in_a_row_open_the_circuit_for_every_process_once(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    changes: list[tuple[str, bool]] = []
    mine, other = (
        circuits(redis_client, key_prefix, changes),
        circuits(redis_client, key_prefix, []),
    )
    breaker = Breaker(mine, OMS)
    # Given two outage-kind failures: still the event's own (the circuit stays closed)
    for _ in range(2):
        with pytest.raises(OmsUnavailable):
            breaker.call(down, OmsUnavailable)
    assert not other.is_open(OMS)
    # When the third in a row comes
    with capture_logs() as logs, pytest.raises(DependencyDown):
        breaker.call(down, OmsUnavailable)
    # Then the circuit is open for the other process too; one log line, one opening
    assert other.is_open(OMS)
    assert [entry["event"] for entry in logs] == ["circuit_opened"]
    assert changes == [(OMS, True)]


def test_a_success_between_failures_keeps_it_closed(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    breaker = Breaker(circuits(redis_client, key_prefix, []), OMS)
    for _ in range(5):
        for attempt in (down, down, lambda: 200):
            with suppress(OmsUnavailable):
                breaker.call(attempt, OmsUnavailable)
    assert not circuits(redis_client, key_prefix, []).is_open(OMS)


def test_while_open_one_probe_per_interval_goes_through_and_its_success_closes_it(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    changes: list[tuple[str, bool]] = []
    first, second = (
        circuits(redis_client, key_prefix, changes),
        circuits(redis_client, key_prefix, []),
    )
    for _ in range(CONFIG.threshold):
        with suppress(OmsUnavailable, DependencyDown):
            Breaker(first, OMS).call(down, OmsUnavailable)
    calls: list[str] = []

    def oms_answers() -> int:
        calls.append("sent")
        return 200

    # Given an open circuit whose probe slot is free: exactly one caller becomes the probe
    # (and its failure keeps the circuit open)...
    with pytest.raises(DependencyDown):
        Breaker(first, OMS).call(down, OmsUnavailable)
    # ... and nobody else calls the OMS during that probe interval; tasks are held back
    for breaker in (Breaker(first, OMS), Breaker(second, OMS)):
        with pytest.raises(DependencyDown):
            breaker.call(oms_answers, OmsUnavailable)
    with pytest.raises(DependencyDown):
        second.hold_back(OMS)
    assert calls == []
    # When the next interval's probe succeeds
    time.sleep(CONFIG.probe_interval + 0.05)
    assert Breaker(second, OMS).call(oms_answers, OmsUnavailable) == 200
    # Then the circuit is closed for everyone: every caller goes through at once
    assert calls == ["sent"]
    assert not first.is_open(OMS)
    assert Breaker(first, OMS).call(oms_answers, OmsUnavailable) == 200
    assert changes == [(OMS, True)]
    assert circuits(redis_client, key_prefix, []).states() == {
        "oms": False,
        "api": False,
        "token": False,
    }


def test_an_answer_that_is_not_an_outage_counts_as_the_dependency_answering(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    breaker = Breaker(circuits(redis_client, key_prefix, []), OMS)

    def refused() -> int:
        raise ValueError("422: the OMS refused this body")

    for _ in range(10):
        for attempt in (down, refused):
            with pytest.raises((OmsUnavailable, ValueError)):
                breaker.call(attempt, OmsUnavailable)
    assert not circuits(redis_client, key_prefix, []).is_open(OMS)
