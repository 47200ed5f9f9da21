"""Flower sees every task end: a burst of tasks on the Procfile's threads-pool worker, and
a real Celery event receiver (what Flower runs) must see each attempt reach a final state.

Celery 5.6.3's EventDispatcher.flush cleared its task-event buffer after publishing it,
dropping the events pool threads appended during the socket write (celery/celery issue
10434, fixed in Celery 5.7.0 by PRs 10401, 10417 and 10435): tasks stayed RECEIVED or
STARTED in Flower for good although they had finished.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from celery import Celery

from config.settings import Settings, load_settings
from sandbox.stack import LocalStack, StackOptions
from tasks.celery import celery_queue_key, make_app

pytestmark = pytest.mark.e2e

BURST = 200
PROCFILE_CONCURRENCY = 16  # the Procfile's default WORKER_CONCURRENCY
FINAL = frozenset({"task-succeeded", "task-failed", "task-retried"})


class TaskEventLog:
    """Every event a Celery ``EventReceiver`` got, collected on its own thread."""

    def __init__(self, app: Celery) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._events: list[dict[str, Any]] = []
        self._receiver: Any = None
        self._thread = threading.Thread(target=self._run, name="task-event-log", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            with self._app.connection_for_read() as conn:
                self._receiver = self._app.events.Receiver(conn, handlers={"*": self._on_event})
                self._receiver.capture(limit=None, timeout=None, wakeup=False)
        except Exception as exc:  # noqa: BLE001 - reported by the test, not lost in a thread
            self.error = exc

    def _on_event(self, event: dict[str, Any]) -> None:
        with self._lock:
            self._events.append(event)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._receiver is not None:
            self._receiver.should_stop = True
        self._thread.join(10)

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._events)

    def saw(self, event_type: str) -> bool:
        return any(e["type"] == event_type for e in self.events())

    def attempts(self) -> dict[str, list[str]]:
        """Each task's event types, in the order received."""
        by_task: dict[str, list[str]] = defaultdict(list)
        for event in self.events():
            if event["type"].startswith("task-"):
                by_task[event["uuid"]].append(event["type"])
        return dict(by_task)


def unended(attempts: dict[str, list[str]]) -> dict[str, list[str]]:
    """The tasks whose attempts did not each reach a final event (one received, one end)."""
    return {
        task_id: types
        for task_id, types in attempts.items()
        if types.count("task-received") != sum(t in FINAL for t in types) or types[-1] not in FINAL
    }


def broker_settings(stack: LocalStack) -> Settings:
    """The broker part of the settings the stack's processes get (the events travel under
    its key prefix, so other stacks on the same Redis stay out)."""
    env = stack.env()
    return load_settings(
        redis_url=env["REDIS_URL"],
        redis_key_prefix=env["REDIS_KEY_PREFIX"],
        celery_queue=env["CELERY_QUEUE"],
    )


@contextmanager
def event_log(stack: LocalStack) -> Iterator[TaskEventLog]:
    log = TaskEventLog(make_app(broker_settings(stack)))
    log.start()
    try:
        yield log
    finally:
        log.stop()


def test_every_task_of_a_burst_reaches_a_final_event(redis_url: str) -> None:
    with LocalStack(StackOptions(redis_url=redis_url)) as stack, event_log(stack) as log:
        queue_key = celery_queue_key(broker_settings(stack))
        assert queue_key is not None
        orders = [f"322-FLW-{i:04d}" for i in range(BURST)]
        for order_id in orders:
            stack.api.store.add_order(order_id, "bp", [("li", 1, "d-1")])
        # Given a burst of tasks waiting on the Celery queue before the worker starts
        # (no API rate limit: the burst stays a burst)
        stack.start_poller(API_RATE_PER_SECOND="0")
        for order_id in orders:
            stack.api.move(order_id, "d-1", "DELIVERED")
        stack.wait_until(lambda: stack.redis.llen(queue_key) >= BURST, what="the burst queued")
        # When the Procfile's worker takes it, 16 threads at once, their tasks finishing in
        # the same instants (every call waits the same latency), a few retried (the order
        # not visible yet)
        stack.api.set_latency(0.02)
        stack.oms.set_latency(0.05)
        stack.api.inject("not_found", 10)
        stack.start_worker(concurrency=PROCFILE_CONCURRENCY, API_RATE_PER_SECOND="0")
        stack.wait_until(lambda: log.saw("worker-online"), what="the receiver hearing the worker")
        stack.wait_until(
            lambda: {p.body["orderId"] for p in stack.oms.received} >= set(orders),
            timeout=60,
            what="every order pushed",
        )
        # Then the receiver heard every task end, every attempt of it
        try:
            stack.wait_until(
                lambda: len(log.attempts()) >= BURST and not unended(log.attempts()),
                timeout=15,
                what="a final event for every task",
            )
        except TimeoutError:
            attempts = log.attempts()
            missing = unended(attempts)
            pytest.fail(
                f"{len(missing)} of {len(attempts)} tasks (burst of {BURST}) never reached a "
                f"final event; e.g. {list(missing.items())[:3]}; receiver error: {log.error!r}"
            )
        assert log.error is None
        attempts = log.attempts()
        assert sum(t == "task-retried" for ts in attempts.values() for t in ts) == 10
