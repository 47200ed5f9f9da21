"""The Celery app: its configuration derived from Settings, nothing read at import time.

``celery -A tasks worker`` finds ``tasks.celery.app``. The app is built on first access
(module ``__getattr__``), with its tasks registered; its configuration is computed lazily
from the environment the first time Celery reads it (``add_defaults`` with a callable).
Importing this module builds nothing.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import parse_qs, urlsplit

from celery import Celery
from kombu import Queue

from config.clients import is_redis_url
from config.settings import Settings, SettingsError, process_settings, refuse_to_start
from tasks.publish.names import RECONCILE_TASK, SWEEP_TASK

#: a scheduled job still waiting this many intervals is dropped (the next one is sent by
#: then). Several intervals: a worker whose clock runs ahead of beat's, or a short backlog
#: on the schedule queue, must not make every run expire unrun.
SCHEDULE_EXPIRY_INTERVALS = 10


def broker_prefix(settings: Settings) -> str:
    """The key prefix of every broker key, so the broker shares a Redis with nobody's data."""
    return f"{settings.redis_key_prefix}celery:"


def celery_queue_key(settings: Settings) -> str | None:
    """The Redis list holding the Celery queue, or None when the broker is not Redis."""
    if not is_redis_url(settings.broker_url):
        return None
    return broker_prefix(settings) + settings.celery_queue


def broker_tls(url: str) -> dict[str, Any] | None:
    """kombu's ``ssl`` options for a ``rediss://`` broker: the server's certificate is
    verified, against the URL's ``ssl_ca_certs`` bundle when it names one (a private CA),
    else the system's trust store. None for a plain broker.

    Without these kombu connects ``rediss://`` with CERT_NONE, and the AUTH password
    would cross a connection anyone in the path can intercept.
    """
    parts = urlsplit(url)
    if parts.scheme != "rediss":
        return None
    options: dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    ca_file = parse_qs(parts.query).get("ssl_ca_certs")
    if ca_file:
        options["ssl_ca_certs"] = ca_file[-1]
    return options


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings for the worker's guarantees (design.md section 6)."""
    return {
        "broker_url": settings.broker_url,
        "broker_use_ssl": broker_tls(settings.broker_url),
        "broker_transport_options": {
            # Without ack emulation (the default) the poller holds every event in SQS and
            # the sweep re-dispatches a `queued` event whose task a killed worker took
            # along (design.md section 8); a stopping worker still hands its unacked tasks
            # back. With it, a killed worker's task also comes back after the visibility
            # timeout, which must exceed the longest task run plus its retry countdown.
            "ack_emulation": settings.broker_ack_emulation,
            "visibility_timeout": settings.broker_visibility_timeout,
            "unacked_mutex_expire": 60,
            "global_keyprefix": broker_prefix(settings),
        },
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "broker_pool_limit": 10,
        "task_default_queue": settings.celery_queue,
        # Workers consume both queues (kombu's Redis transport takes from them in turn):
        # the scheduled jobs have their own, so 2,000 syncs waiting cannot starve them.
        "task_queues": (Queue(settings.celery_queue), Queue(settings.schedule_queue)),
        "task_routes": {
            SWEEP_TASK: {"queue": settings.schedule_queue},
            RECONCILE_TASK: {"queue": settings.schedule_queue},
        },
        # Loaded by the worker at start (never imported from tasks/): it serves the task
        # metrics on WORKER_METRICS_PORT.
        "imports": ("worker.celery_metrics",),
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "task_ignore_result": True,
        "result_backend": None,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # Flower sees every task. Costs CPU (design.md section 7, docs/performance.md);
        # WORKER_TASK_EVENTS=false starts without them and Flower turns them on when it
        # connects (a worker started with them on cannot be switched off remotely).
        "worker_send_task_events": settings.worker_task_events,
        "task_send_sent_event": False,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        # SIGTERM (an ECS stop, 30 s): running tasks get 20 s to finish, then Celery's
        # cold shutdown hands unacked and countdown-held tasks back to the broker.
        "worker_soft_shutdown_timeout": 20.0,
        "worker_enable_soft_shutdown_on_idle": True,
        # Enforced by the prefork pool only; under the threads pool (the Procfile's) the
        # HTTP timeouts and bounded retries are what bound a task.
        "task_soft_time_limit": 120,
        "task_time_limit": 150,
        "enable_utc": True,
        "timezone": "UTC",
        "beat_schedule": {
            "sweep-stale-events": {
                "task": SWEEP_TASK,
                "schedule": settings.sweep_interval_seconds,
                "options": {
                    "queue": settings.schedule_queue,
                    "expires": SCHEDULE_EXPIRY_INTERVALS * settings.sweep_interval_seconds,
                },
            },
            "reconcile-open-deliveries": {
                "task": RECONCILE_TASK,
                "schedule": settings.reconcile_interval_seconds,
                "options": {
                    "queue": settings.schedule_queue,
                    "expires": SCHEDULE_EXPIRY_INTERVALS * settings.reconcile_interval_seconds,
                },
            },
        },
    }


def _from_environment() -> dict[str, Any]:
    try:
        return celery_config(process_settings())
    except SettingsError as exc:
        refuse_to_start(exc)


def make_app(settings: Settings | None = None) -> Celery:
    """A Celery app configured from ``settings``, or lazily from the environment."""
    app = Celery("bwp")
    if settings is None:
        app.add_defaults(_from_environment)
    else:
        app.conf.update(celery_config(settings))
    return app


_app: Celery | None = None


def __getattr__(name: str) -> Celery:
    """``tasks.celery.app``: the process's Celery app with the tasks registered."""
    global _app  # noqa: PLW0603 - one app per process, built on first access
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _app is None:
        from tasks import flower_guard
        from tasks.jobs import register

        _app = make_app()
        register(_app)
        flower_guard.install(_app)  # `celery -A tasks flower` refuses to run open
    return _app
