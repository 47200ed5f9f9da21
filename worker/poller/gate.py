"""When may the poller receive? Not during an outage of Redis or the broker (probed with
a growing backoff), not while the Celery queue is too deep (backpressure), and not while
it holds as many messages as it may. A pause is deliberate: the loop stays alive and
healthy, and the messages wait in SQS untouched.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog

from worker.poller.metrics import PollerMetrics

log = structlog.get_logger("bwp.poller")


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
        held: Callable[[], int],
        max_held_bytes: int,
        held_bytes: Callable[[], int],
        queue_depth: Callable[[], int] | None,
        probe: Callable[[], bool] | None,
        clock: Callable[[], float],
    ) -> None:
        self.metrics = metrics
        self._error_backoff, self._max_backoff = error_backoff, max_backoff
        self._outage_log_interval = outage_log_interval
        self._max_queue_depth, self._max_held, self._held = max_queue_depth, max_held, held
        self._max_held_bytes, self._held_bytes = max_held_bytes, held_bytes
        self._queue_depth, self._probe, self._clock = queue_depth, probe, clock
        self._last_outage_log = 0.0
        self._in_outage = False
        self._paused_until = 0.0
        self._backoff = error_backoff

    def ready(self, stop: threading.Event) -> bool:
        """False (after waiting a little) while paused: an outage, backpressure, or as
        many messages (or body bytes) held as this poller may hold."""
        if self._paused_until > self._clock():
            stop.wait(min(1.0, self._paused_until - self._clock()))
            return False
        if self._in_outage and not self._dependencies_answer():
            self._pause()
            return False
        self._in_outage = False
        full = self._held() >= self._max_held or self._held_bytes() >= self._max_held_bytes
        if full or self._backpressure():
            self.metrics.paused.inc()
            stop.wait(1.0)
            return False
        return True

    def outage(self, what: str, error: str) -> None:
        """Redis or the broker is down: stop intake until the probe says it is back.

        Receiving on would only cycle messages through their visibility timeout and
        count receives towards the redrive policy; paused, they wait in SQS untouched.
        """
        self.metrics.errors.labels(what).inc()
        self._in_outage = True
        self._paused_until = self._clock() + self._backoff
        now = self._clock()
        if now - self._last_outage_log >= self._outage_log_interval:
            self._last_outage_log = now
            log.error("dependency_unavailable_intake_paused", dependency=what, error=error)

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
