"""Logging setup: structlog everywhere, JSON by default, secrets redacted.

Only entry points (the CLI, the Celery worker's process init) call ``configure_logging``.
"""

from __future__ import annotations

import logging
import sys

import structlog
from structlog.typing import Processor

from config.secrets import Redactor
from config.settings import Settings


def configure_logging(settings: Settings) -> None:
    """Configure structlog and the standard library (Celery, boto) to one format, with
    every configured secret redacted."""
    numeric = logging.getLevelNamesMapping()[settings.log_level]
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        Redactor(settings.secrets()),
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if settings.log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.WriteLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=renderer,
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    for noisy in ("botocore", "boto3", "urllib3", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
    # Celery's "Task … received" and "… succeeded in" lines, two per task, say what our
    # `event_synced` line says (with the task id bound); at DEBUG they come back.
    # Failures and retries are logged by us at WARNING and above either way.
    for per_task in ("celery.app.trace", "celery.worker.strategy"):
        logging.getLogger(per_task).setLevel(
            numeric if numeric <= logging.DEBUG else logging.WARNING
        )
