"""The poller's receiver thread: long-polls SQS one batch ahead of the loop thread, while
the intake gate allows, and hands every batch over (worker/poller/loop.py says who owns
what).

Everything here is the receiver thread's but the hand-over: ``inbox`` (one batch ahead),
``late`` (batches received after the stop, which the loop thread hands back) and ``done``.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import TYPE_CHECKING

import structlog

from tasks.sqs.errors import describe
from tasks.sqs.queue import AWS_ERRORS, SqsQueue
from worker.poller.config import PollerConfig
from worker.poller.gate import IntakeGate
from worker.poller.metrics import PollerMetrics

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

log = structlog.get_logger("bwp.poller")

Batches = queue.Queue[list["MessageTypeDef"]] | queue.SimpleQueue[list["MessageTypeDef"]]


class Receiver:
    def __init__(
        self, sqs: SQSClient, gate: IntakeGate, metrics: PollerMetrics, config: PollerConfig
    ) -> None:
        self._queue = SqsQueue(sqs, config.queue_url, count=self._count)
        self._gate, self._metrics, self._cfg = gate, metrics, config
        #: SQS requests made by the receiver thread (written by it alone)
        self.requests = 0
        self.inbox: queue.Queue[list[MessageTypeDef]] = queue.Queue(maxsize=1)
        self.late: queue.SimpleQueue[list[MessageTypeDef]] = queue.SimpleQueue()
        #: set when the thread ended because it made ``max_polls`` receives
        self.done = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the loop thread ----------------------------------------------------------------
    def start(self, stop: threading.Event, max_polls: int | None) -> None:
        """Start a receiver thread, with a fresh hand-over, until ``stop`` (or until this
        receiver made ``max_polls`` receives in all)."""
        self.inbox, self.late, self.done = (
            queue.Queue(maxsize=1),
            queue.SimpleQueue(),
            threading.Event(),
        )
        self._thread = threading.Thread(
            target=self._run, args=(stop, max_polls), name="receiver", daemon=True
        )
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def next_batch(self, timeout: float) -> list[MessageTypeDef] | None:
        try:
            return self.inbox.get(timeout=timeout)
        except queue.Empty:
            return None

    def leftovers(self) -> list[MessageTypeDef]:
        """The batches handed over but not taken (once stopping): the loop thread hands
        them back."""
        return _drain(self.inbox) + _drain(self.late)

    # --- the receiver thread ------------------------------------------------------------
    def _run(self, stop: threading.Event, max_polls: int | None) -> None:
        while not stop.is_set() and (max_polls is None or self.requests < max_polls):
            try:
                messages = self._receive(stop) if self._gate.ready(stop) else None
            except Exception:  # the receiver survives anything one receive does
                self._metrics.errors.labels("receive").inc()
                log.exception("receive_loop_error")
                stop.wait(self._cfg.error_backoff)
                continue
            if not messages:
                continue
            while not stop.is_set():
                try:
                    self.inbox.put(messages, timeout=0.1)
                    break
                except queue.Full:
                    continue
            else:
                # received after the stop (the long poll was in flight): the loop thread
                # hands it back once this thread ended
                self.late.put(messages)
        # wait for the loop thread to take the last batch before saying "done"
        while not self.inbox.empty() and not stop.is_set():
            time.sleep(0.05)
        self.done.set()

    def _receive(self, stop: threading.Event) -> list[MessageTypeDef] | None:
        try:
            return self._queue.receive(
                wait_seconds=self._cfg.wait_seconds,
                visibility_timeout=self._cfg.visibility_timeout,
            )
        except AWS_ERRORS as exc:
            self._metrics.errors.labels("receive").inc()
            log.warning("receive_failed", **describe(exc))
            stop.wait(self._cfg.error_backoff)
            return None

    def _count(self, action: str, requests: int) -> None:
        self.requests += requests
        self._metrics.sqs_requests.labels(action).inc(requests)


def _drain(batches: Batches) -> list[MessageTypeDef]:
    found: list[MessageTypeDef] = []
    while True:
        try:
            found += batches.get_nowait()
        except queue.Empty:
            return found
