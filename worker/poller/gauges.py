"""Gauges the poller exports about shared state that no single worker owns: when each
scheduled job last ran, and whether each dependency's circuit is open. Read from Redis
on the poller's loop thread, each at most every so often."""

from __future__ import annotations

from collections.abc import Callable

from tasks.errors import LedgerUnavailable
from tasks.http.circuit import Circuits
from tasks.ledger.runs import JobRuns
from worker.poller.metrics import PollerMetrics

#: seconds between reads of the scheduled jobs' last runs
JOB_RUNS_EVERY = 15.0
#: seconds between reads of the circuits
CIRCUITS_EVERY = 1.0


class SharedGauges:
    def __init__(
        self,
        metrics: PollerMetrics,
        *,
        job_runs: JobRuns | None,
        circuits: Circuits | None,
        clock: Callable[[], float],
    ) -> None:
        self._metrics, self._job_runs, self._circuits = metrics, job_runs, circuits
        self._clock = clock
        self._jobs_read_at = self._circuits_read_at = -float("inf")

    def refresh(self) -> None:
        """Read what is due (Redis down: the gauges keep their last values)."""
        now = self._clock()
        try:
            if self._job_runs is not None and now - self._jobs_read_at >= JOB_RUNS_EVERY:
                self._jobs_read_at = now
                for job, at in self._job_runs.last().items():
                    self._metrics.job_last_run.labels(job).set(at)
            if self._circuits is not None and now - self._circuits_read_at >= CIRCUITS_EVERY:
                self._circuits_read_at = now
                for dependency, is_open in self._circuits.states().items():
                    self._metrics.circuit_open.labels(dependency).set(1 if is_open else 0)
        except LedgerUnavailable:
            return
