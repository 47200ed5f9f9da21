"""The Celery tasks: thin wrappers that decode arguments and call plain functions."""

from __future__ import annotations

import threading
from typing import Any

import structlog
from celery import Task
from celery.signals import (
    setup_logging,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_shutdown,
)
from celery.worker.request import Request

from config.logging import configure_logging
from config.settings import SettingsError, process_settings, refuse_to_start
from tasks.delivery import task_retry
from tasks.delivery.attempt import handle
from tasks.ledger.keeper import Tenancy
from tasks.ledger.runs import JobRuns
from tasks.metrics import TaskMetrics
from tasks.publish.call import SyncCall
from tasks.publish.names import RECONCILE_TASK, SWEEP_TASK
from tasks.reconcile import reconcile
from tasks.runtime import Runtime, build_runtime
from tasks.sweep import sweep_stale

_lock = threading.Lock()
_runtime: Runtime | None = None


def runtime() -> Runtime:
    """This process's collaborators, built on first use from the environment."""
    global _runtime  # noqa: PLW0603 - one runtime per worker process, by design
    with _lock:
        if _runtime is None:
            settings = process_settings()
            configure_logging(settings)
            _runtime = build_runtime(settings)
        return _runtime


def task_metrics() -> TaskMetrics | None:
    """This process's task metrics once its runtime is built, else None (never builds it:
    the metrics endpoint's thread must not)."""
    with _lock:
        return _runtime.deps.metrics if _runtime is not None else None


@setup_logging.connect
def _setup_logging(**_: Any) -> None:
    """Celery's own lines (worker, beat) in the same structured format as ours."""
    configure_logging(process_settings())


@worker_process_init.connect
def _init_process(**_: Any) -> None:
    runtime()


@worker_init.connect
def _init_worker(sender: Any = None, **_: Any) -> None:
    """Refuse to start without what the tasks need (one line, exit 2): a worker that
    started anyway would fail every task until it parked them all.

    Threads and solo pools run tasks in this process: build the runtime now rather than
    stalling the first tasks. The prefork pool builds one per child instead (a runtime
    built here would be forked, sockets and all).
    """
    try:
        process_settings().require_for("worker")
    except SettingsError as exc:
        refuse_to_start(exc)
    if not pool_is_prefork(sender):
        runtime()


def pool_is_prefork(worker: Any) -> bool:
    """Whether ``worker`` (the worker_init sender) runs its tasks in forked children."""
    pool = getattr(worker, "pool_cls", None)
    name = pool if isinstance(pool, str) else getattr(pool, "__module__", "")
    return "prefork" in str(name)


@worker_process_shutdown.connect
@worker_shutdown.connect  # the threads and solo pools: the runtime lives in the main process
def _close_process(**_: Any) -> None:
    global _runtime  # noqa: PLW0603
    with _lock:
        if _runtime is not None:
            # Warm shutdown handed the tasks not run back to the broker: their events are
            # waiting there again, not held by this process.
            _runtime.keeper.drop_all()
            _runtime.close()
            _runtime = None


class LeasedRequest(Request):
    """A sync task as the worker holds it: from its arrival (prefetched, or waiting for a
    retry countdown) until it is acknowledged, the event carries this process's lease,
    so that the poller can tell a live task from one lost with a killed worker.

    - done (acknowledged after success): the finish already removed the lease;
    - retried or rejected (the next attempt waits in the broker): released at once;
    - crashed, or revoked: left to expire, and the poller dispatches the event again.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tenancy: Tenancy | None = None
        self._release = False
        dedup_key = SyncCall.dedup_key_in(self.args)
        if dedup_key is not None:
            rt = runtime()
            self._tenancy = rt.keeper.take(rt.keys.event(dedup_key))

    def on_retry(self, exc_info: Any) -> Any:
        self._release = True  # the retry is in the broker now: no longer held here
        return super().on_retry(exc_info)

    def acknowledge(self) -> None:
        super().acknowledge()
        self._drop()

    def reject(self, requeue: bool = False) -> None:
        self._release = True
        super().reject(requeue)
        self._drop()

    def _drop(self) -> None:
        tenancy, self._tenancy = self._tenancy, None
        if tenancy is not None:
            runtime().keeper.drop(tenancy, release=self._release)


def register(app: Any) -> None:
    """Register the tasks on ``app``."""

    # The parameters are SyncCall's fields (tasks/publish/call.py), in its order.
    @app.task(  # type: ignore[untyped-decorator]
        bind=True, name=SyncCall.name, max_retries=None, acks_late=True, Request=LeasedRequest
    )
    def sync_delivery(
        self: Task[Any, Any], body: str, dedup_key: str, failures: int = 0, busy: int = 0
    ) -> str:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(task_id=self.request.id, event_key=dedup_key)
        result = handle(body, dedup_key, runtime(), failures=failures, busy=busy)
        if isinstance(result, task_retry.Retry):
            # Celery publishes the retry (same arguments, its retry count and countdown);
            # the call it makes is SyncCall's. argsrepr: Celery passes the option on to
            # the message (the type stubs do not list it).
            retry = SyncCall(body, dedup_key, failures=result.failures, busy=result.busy)
            raise self.retry(  # type: ignore[call-arg]
                args=retry.args,
                kwargs=retry.kwargs,
                countdown=result.countdown,
                max_retries=None,
                argsrepr=retry.argsrepr,
            )
        return str(result)

    @app.task(name=SWEEP_TASK, acks_late=True)  # type: ignore[untyped-decorator]
    def sweep_stale_events() -> int:
        rt = runtime()
        redone = sweep_stale(rt.ledger, app, rt.settings)
        JobRuns(rt.redis, rt.keys).record("sweep")
        rt.deps.metrics.stale_redispatched.inc(redone)
        return redone

    @app.task(name=RECONCILE_TASK, acks_late=True)  # type: ignore[untyped-decorator]
    def reconcile_open_deliveries() -> dict[str, int]:
        rt = runtime()
        report = reconcile(
            rt.deps.deliveries,
            rt.deps,
            older_than=rt.settings.reconcile_after_seconds,
            limit=rt.settings.reconcile_batch,
        )
        JobRuns(rt.redis, rt.keys).record("reconcile")
        return {"checked": report.checked, "errors": report.errors, **report.outcomes}
