"""Build the poller from Settings and run it until SIGTERM/SIGINT, shutting down in order."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from dataclasses import asdict

import redis
import structlog

from config.clients import is_redis_url, make_redis, make_sqs
from config.secrets import Redactor
from config.settings import Settings
from tasks.celery import celery_queue_key, make_app
from tasks.dispatch import Dispatcher
from tasks.keys import Keys
from tasks.ledger.runs import JobRuns
from tasks.runtime import make_circuits, make_ledger
from tasks.sqs.dlq import DeadLetters
from worker.poller.config import PollerConfig
from worker.poller.loop import Poller
from worker.poller.metrics import MetricsServer, Totals, heartbeat_fresh
from worker.poller.preflight import check_queues

log = structlog.get_logger("bwp.poller")

#: /healthz turns 503 when the loop has not turned for this long
HEALTHY_WITHIN_SECONDS = 60.0


def queue_depth_probe(settings: Settings) -> Callable[[], int] | None:
    """LLEN of the Celery queue list when the broker is Redis, else None."""
    key = celery_queue_key(settings)
    if key is None:
        return None
    client = make_redis(settings.broker_url)

    def depth() -> int:
        return int(client.llen(key))

    return depth


def dependency_probe(ledger: redis.Redis, settings: Settings) -> Callable[[], bool]:
    """PING Redis (and the broker when it is another Redis): both must answer."""
    broker = None
    if settings.broker_url != settings.redis_url and is_redis_url(settings.broker_url):
        broker = make_redis(settings.broker_url)

    def probe() -> bool:
        return bool(ledger.ping()) and (broker is None or bool(broker.ping()))

    return probe


def build_poller(settings: Settings) -> tuple[Poller, redis.Redis]:
    """A Poller wired to the configured SQS, Redis and broker."""
    settings.require_for("poll")
    assert settings.sqs_queue_url is not None
    sqs = make_sqs(settings)
    control = make_sqs(settings, control=True)
    check_queues(control, settings)  # a missing queue or a denial: exit 2 (SettingsError)
    client = make_redis(settings.redis_url)
    config = PollerConfig(
        queue_url=settings.sqs_queue_url,
        wait_seconds=settings.sqs_wait_time_seconds,
        visibility_timeout=settings.sqs_visibility_timeout,
        park_unsupported=settings.unsupported_events == "park",
        max_queue_depth=settings.max_queue_depth,
        shutdown_grace=settings.shutdown_grace_seconds,
        max_held=settings.max_held_messages,
        max_held_bytes=settings.max_held_bytes,
        settle_interval=settings.settle_interval_seconds,
        orphan_grace=settings.orphan_grace_seconds,
        max_redispatches=settings.max_redispatches,
        max_deliveries=settings.max_deliveries_per_event,
    )
    poller = Poller(
        sqs,
        make_ledger(client, settings),
        Dispatcher.for_settings(make_app(settings), settings),
        DeadLetters(
            control,
            settings.sqs_dlq_url,
            Redactor(settings.secrets()).scrub_text,
            max_bytes=settings.sqs_dlq_max_message_bytes,
        ),
        config,
        queue_depth=queue_depth_probe(settings),
        probe=dependency_probe(client, settings),
        control_sqs=control,
        job_runs=JobRuns(client, Keys(settings.redis_key_prefix)),
        circuits=make_circuits(client, settings),
    )
    return poller, client


def run_poller(settings: Settings, max_polls: int | None = None) -> Totals:
    """Run until a signal; returns the totals after the summary line is logged."""
    poller, client = build_poller(settings)
    stop = threading.Event()

    def on_signal(signum: int, _: object) -> None:
        log.info("shutdown_requested", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = None
    if settings.metrics_port:
        # The loop beats every iteration, receiving or deliberately paused (an outage,
        # backpressure): only a loop that is stuck or gone goes stale.
        max_age = HEALTHY_WITHIN_SECONDS
        server = MetricsServer.for_settings(
            settings, poller.metrics.render, lambda: heartbeat_fresh(poller.metrics, max_age)
        ).start()
        log.info("metrics_serving", host=server.host, port=server.port)
    try:
        totals = poller.run(stop, max_polls=max_polls)
    finally:
        # Order: intake stopped (loop left), held work finished inside the loop,
        # then the metrics endpoint and the clients go.
        if server is not None:
            server.stop()
        client.close()
    log.info("poller_stopped", **asdict(totals))
    if poller.failed:
        # ECS restarts it; held messages were handed back above
        raise SystemExit(1)
    return totals
