"""A Celery worker's ``/metrics``: the counters only its tasks know (tasks/metrics.py).

``celery -A tasks worker`` imports this module at start (the app's ``imports``,
tasks/celery.py), so that the task side never imports the worker side. It serves on
``WORKER_METRICS_PORT`` (``0``: off) with the poller's server (worker/poller/metrics.py):

- threads or solo pool (the Procfile's): the main process runs every task; it serves
  its runtime's counters on the port.
- prefork pool: each child runs tasks with a runtime and counters of its own; child *i*
  serves on the port + *i* (a replaced child takes its predecessor's index and port, and
  starts from zero, as a restarted process does). The main process serves nothing.

Several workers on one host need one port each (or a range each, under prefork). A port
already taken is logged (``worker_metrics_unavailable``) and the worker runs on without
the endpoint: metrics are not worth refusing to sync deliveries.
"""

from __future__ import annotations

import threading
from typing import Any

import structlog
from billiard.process import current_process
from celery.signals import (
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_shutdown,
)

from config.settings import SettingsError, process_settings
from tasks.jobs import pool_is_prefork, task_metrics
from worker.poller.metrics import MetricsServer

log = structlog.get_logger("bwp.worker")

_lock = threading.Lock()
_server: MetricsServer | None = None


def render() -> bytes:
    """This process's task metrics; empty until its runtime is built."""
    metrics = task_metrics()
    return metrics.render() if metrics is not None else b""


def serve(offset: int) -> MetricsServer | None:
    """Start this process's endpoint on WORKER_METRICS_PORT + ``offset`` (None when off
    or when the port is taken)."""
    global _server  # noqa: PLW0603 - one endpoint per process, like the runtime
    try:
        settings = process_settings()
    except SettingsError:
        return None  # the worker refuses to start (tasks/jobs.py) and says why
    base = settings.worker_metrics_port
    if not base:
        return None
    port = base + offset
    with _lock:
        if _server is not None:
            return _server
        try:
            # on METRICS_HOST, with the metrics server's deadline and connection cap
            _server = MetricsServer.for_settings(
                settings, render, lambda: task_metrics() is not None, port=port
            ).start()
        except OSError as exc:
            log.error(
                "worker_metrics_unavailable",
                port=port,
                error=str(exc),
                hint="set WORKER_METRICS_PORT to a free port for each worker on this host",
            )
            return None
        log.info("worker_metrics_serving", port=port)
        return _server


def stop() -> None:
    global _server
    with _lock:
        server, _server = _server, None
    if server is not None:
        server.stop()


@worker_init.connect
def _serve_from_the_main_process(sender: Any = None, **_: Any) -> None:
    if not pool_is_prefork(sender):
        serve(0)


@worker_process_init.connect
def _serve_from_a_child(**_: Any) -> None:
    serve(int(getattr(current_process(), "index", 0) or 0))


@worker_process_shutdown.connect
@worker_shutdown.connect
def _stop(**_: Any) -> None:
    stop()
