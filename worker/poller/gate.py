"""When may the poller receive? Not during an outage of Redis or the broker (probed with
a growing backoff), not while the Celery queue is too deep (backpressure), and not while
it holds as many messages as it may. A pause is deliberate: the loop stays alive and
healthy, and the messages wait in SQS untouched.

Two threads use the gate (worker/poller/loop.py). The receiver thread asks ``ready()``
before each receive and owns the pause: whether an outage lasts, until when, the backoff
and the probes. The loop thread reports to it and shares nothing else: ``outage()`` hands
the moment of an outage over through a queue, ``holding()`` the held level under a lock.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import structlog

from worker.poller.metrics import PollerMetrics
from worker.poller.throttle import Throttle

log = structlog.get_logger("bwp.poller")


class HeldLevel:
    """How many messages and body bytes the poller holds, as the loop thread last said;
    any thread reads it (under a lock)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = self._bytes = 0

    def set(self, count: int, size: int) -> None:
        with self._lock:
            self._count, self._bytes = count, size

    def get(self) -> tuple[int, int]:
        with self._lock:
            return self._count, self._bytes


class IntakeGate:
    def __init__(
        self,
        metrics: PollerMetrics,
        *,
        error_backoff: float,
        max_backoff: float,
        outage_log_interval: float,
        max_queue_depth: int,
        max_held: int,
        max_held_bytes: int,
        queue_depth: Callable[[], int] | None,
        probe: Callable[[], bool] | None,
        clock: Callable[[], float],
    ) -> None:
        self.metrics = metrics
        self._error_backoff, self._max_backoff = error_backoff, max_backoff
        self._max_queue_depth, self._max_held = max_queue_depth, max_held
        self._max_held_bytes = max_held_bytes
        self._queue_depth, self._probe, self._clock = queue_depth, probe, clock
        # handed from the loop thread to the receiver thread
        self._outages: queue.SimpleQueue[float] = queue.SimpleQueue()
        self._held = HeldLevel()
        # the loop thread's
        self._outage_log = Throttle(outage_log_interval, clock)
        # the receiver thread's
        self._in_outage = False
        self._paused_until = 0.0
        self._backoff = error_backoff

    # --- the loop thread ----------------------------------------------------------------
    def outage(self, what: str, error: str) -> None:
        """Redis or the broker is down: stop intake until the probe says it is back.

        Receiving on would only cycle messages through their visibility timeout and
        count receives towards the redrive policy; paused, they wait in SQS untouched.
        """
        self._outages.put(self._clock())
        self.metrics.errors.labels(what).inc()
        if self._outage_log.allow():
            log.error("dependency_unavailable_intake_paused", dependency=what, error=error)

    def holding(self, count: int, size: int) -> None:
        """The poller holds ``count`` messages of ``size`` body bytes now."""
        self._held.set(count, size)

    # --- the receiver thread ------------------------------------------------------------
    def ready(self, stop: threading.Event) -> bool:
        """False (after waiting a little) while paused: an outage, backpressure, or as
        many messages (or body bytes) held as this poller may hold."""
        self._take_outages()
        if self._paused_until > self._clock():
            stop.wait(min(1.0, self._paused_until - self._clock()))
            return False
        if self._in_outage and not self._dependencies_answer():
            self._pause()
            return False
        self._in_outage = False
        count, size = self._held.get()
        full = count >= self._max_held or size >= self._max_held_bytes
        if full or self._backpressure():
            self.metrics.paused.inc()
            stop.wait(1.0)
            return False
        return True

    def _take_outages(self) -> None:
        """The outages the loop thread reported since the last look: paused from the
        latest, for the current backoff."""
        while True:
            try:
                at = self._outages.get_nowait()
            except queue.Empty:
                return
            self._in_outage = True
            self._paused_until = at + self._backoff

    def _backpressure(self) -> bool:
        if not self._max_queue_depth or self._queue_depth is None:
            return False
        try:
            return self._queue_depth() > self._max_queue_depth
        except Exception as exc:  # noqa: BLE001 - an unknown depth must not stop intake
            log.warning("queue_depth_unknown", error=type(exc).__name__)
            return False

    def _pause(self) -> None:
        self._backoff = min(self._backoff * 2, self._max_backoff)
        self._paused_until = self._clock() + self._backoff

    def _dependencies_answer(self) -> bool:
        if self._probe is None:
            return True
        try:
            ok = self._probe()
        except Exception:  # noqa: BLE001 - a failing probe means "not yet"
            ok = False
        if ok:
            self._backoff = self._error_backoff
            log.info("dependencies_back_intake_resumed")
        return ok
