"""The intake gate between the poller's two threads: the loop thread reports outages and
the held level, the receiver thread decides (worker/poller/gate.py)."""

from __future__ import annotations

import threading

import structlog

from worker.poller.gate import IntakeGate
from worker.poller.metrics import PollerMetrics
from worker.poller.throttle import Throttle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def gate(clock: Clock, probe: list[bool] | None = None, **kw: int) -> IntakeGate:
    answers = iter(probe or [])
    return IntakeGate(
        PollerMetrics(),
        error_backoff=2.0,
        max_backoff=30.0,
        outage_log_interval=30.0,
        max_queue_depth=0,
        max_held=kw.get("max_held", 10),
        max_held_bytes=kw.get("max_held_bytes", 1000),
        queue_depth=None,
        probe=(lambda: next(answers)) if probe is not None else None,
        clock=clock,
    )


def stopped() -> threading.Event:
    """A stop event already set: the gate's waits return at once."""
    event = threading.Event()
    event.set()
    return event


def test_an_outage_reported_on_another_thread_pauses_the_next_receive() -> None:
    clock = Clock()
    g = gate(clock, probe=[False, True])
    assert g.ready(stopped())
    # When the loop thread reports an outage
    reporter = threading.Thread(target=g.outage, args=("redis", "down"))
    reporter.start()
    reporter.join()
    # Then the receiver thread pauses for the backoff, probes, and doubles it while down
    assert not g.ready(stopped())
    assert g.metrics.value("bwp_loop_errors_total", stage="redis") == 1
    clock.now += 2.0
    assert not g.ready(stopped())  # the probe says no: paused 4 s more
    clock.now += 3.9
    assert not g.ready(stopped())
    clock.now += 0.1
    assert g.ready(stopped())  # the probe answers: intake resumes


def test_outages_are_logged_once_per_interval() -> None:
    clock = Clock()
    g = gate(clock)
    with structlog.testing.capture_logs() as logs:
        for _ in range(5):
            g.outage("redis", "down")
        clock.now += 30.0
        g.outage("broker", "down")
    events = [e["dependency"] for e in logs if e["event"] == "dependency_unavailable_intake_paused"]
    assert events == ["redis", "broker"]
    assert g.metrics.value("bwp_loop_errors_total", stage="redis") == 5


def test_the_held_level_the_loop_thread_reports_closes_and_opens_intake() -> None:
    clock = Clock()
    g = gate(clock, max_held=10, max_held_bytes=1000)
    g.holding(10, 5)
    assert not g.ready(stopped())
    g.holding(3, 1000)
    assert not g.ready(stopped())
    assert g.metrics.value("bwp_backpressure_pauses_total") == 2
    g.holding(9, 999)
    assert g.ready(stopped())


def test_a_throttle_lets_one_call_through_per_interval() -> None:
    clock = Clock()
    throttle = Throttle(10.0, clock)
    assert [throttle.allow() for _ in range(3)] == [True, False, False]
    clock.now += 10.0
    assert throttle.allow()
