"""Build the poller from Settings and run it until SIGTERM/SIGINT, shutting down in order.

Every client the runner opens (two SQS clients, the ledger's Redis, the broker's Redis,
the Celery app's pools, the metrics server) is entered into one ``ExitStack`` and closed
when the poller stops, a failed start included.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import asdict

import redis
import structlog

from config.clients import make_redis, make_sqs
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


def queue_depth_probe(broker: redis.Redis, key: str) -> Callable[[], int]:
    """LLEN of the Celery queue's list ``key`` on the broker's Redis."""

    def depth() -> int:
        return int(broker.llen(key))

    return depth


def dependency_probe(ledger: redis.Redis, broker: redis.Redis | None) -> Callable[[], bool]:
    """PING Redis (and the broker, when it is another Redis): both must answer."""

    def probe() -> bool:
        return bool(ledger.ping()) and (broker is None or bool(broker.ping()))

    return probe


def poller_config(settings: Settings) -> PollerConfig:
    assert settings.sqs_queue_url is not None
    return PollerConfig(
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


def build_poller(settings: Settings, clients: ExitStack) -> Poller:
    """A Poller wired to the configured SQS, Redis and broker. Each client it opens is
    entered into ``clients``, whose exit closes them."""
    settings.require_for("poll")
    sqs = clients.enter_context(closing(make_sqs(settings)))
    control = clients.enter_context(closing(make_sqs(settings, control=True)))
    check_queues(control, settings)  # a missing queue or a denial: exit 2 (SettingsError)
    client = clients.enter_context(closing(make_redis(settings.redis_url)))
    app = make_app(settings)
    clients.callback(app.close)
    # The broker's Redis (when the broker is Redis): the tasks' LPUSH, the queue's depth,
    # and the probe when it is not the ledger's server.
    key = celery_queue_key(settings)
    broker: redis.Redis | None = None
    depth: Callable[[], int] | None = None
    if key is None:
        dispatcher = Dispatcher(app, settings.celery_queue)
    else:
        broker = clients.enter_context(closing(make_redis(settings.broker_url)))
        dispatcher = Dispatcher(app, settings.celery_queue, broker=broker, queue_key=key)
        depth = queue_depth_probe(broker, key)
    other_broker = broker if settings.broker_url != settings.redis_url else None
    return Poller(
        sqs,
        make_ledger(client, settings),
        dispatcher,
        DeadLetters(
            control,
            settings.sqs_dlq_url,
            Redactor(settings.secrets()).scrub_text,
            max_bytes=settings.sqs_dlq_max_message_bytes,
        ),
        poller_config(settings),
        queue_depth=depth,
        probe=dependency_probe(client, other_broker),
        control_sqs=control,
        job_runs=JobRuns(client, Keys(settings.redis_key_prefix)),
        circuits=make_circuits(client, settings),
    )


@contextmanager
def stopped_by_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stop`` inside the block; the previous handlers after."""

    def on_signal(signum: int, _: object) -> None:
        log.info("shutdown_requested", signal=signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run_poller(settings: Settings, max_polls: int | None = None) -> Totals:
    """Run until a signal; returns the totals after the summary line is logged."""
    stop = threading.Event()
    with ExitStack() as process:
        with ExitStack() as clients:
            poller = build_poller(settings, clients)
            process.enter_context(stopped_by_signals(stop))
            if settings.metrics_port:
                # The loop beats every iteration, receiving or deliberately paused (an
                # outage, backpressure): only a loop that is stuck or gone goes stale.
                max_age = HEALTHY_WITHIN_SECONDS
                server = MetricsServer.for_settings(
                    settings,
                    poller.metrics.render,
                    lambda: heartbeat_fresh(poller.metrics, max_age),
                ).start()
                clients.callback(server.stop)
                log.info("metrics_serving", host=server.host, port=server.port)
            # Order: intake stopped (loop left), held work finished inside the loop, then
            # the metrics endpoint and the clients go (``clients``, last opened first).
            totals = poller.run(stop, max_polls=max_polls)
        log.info("poller_stopped", **asdict(totals))
    if poller.failed:
        # ECS restarts it; held messages were handed back above
        raise SystemExit(1)
    return totals
