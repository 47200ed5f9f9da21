"""The poller's Prometheus metrics and its /healthz endpoint.

Each Poller owns a registry (tests run several in one process). ``serve`` exposes
``/metrics`` and ``/healthz`` on one port from a daemon thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


@dataclass(frozen=True)
class Totals:
    """What a poller did, read from its metrics (the counters are kept once, there)."""

    received: int = 0
    dispatched: int = 0
    redispatched: int = 0
    duplicates: int = 0
    no_news: int = 0
    parked: int = 0
    unsupported: int = 0
    polls: int = 0
    handed_back: int = 0
    held: int = 0
    settled: int = 0
    extensions: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


class PollerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.last_beat = 0.0
        r = self.registry
        self.received = Counter("bwp_messages_received", "SQS messages received", registry=r)
        self.dispatched = Counter(
            "bwp_events_dispatched", "Events published as Celery tasks", registry=r
        )
        self.duplicates = Counter(
            "bwp_duplicates", "Messages whose event was already queued or done", registry=r
        )
        self.twins = Counter(
            "bwp_twins_absorbed",
            "Events whose delivery already showed their state (no query)",
            registry=r,
        )
        self.inflight = Counter(
            "bwp_inflight_skipped",
            "Messages left in SQS: another poller holds the claim",
            registry=r,
        )
        self.unsupported = Counter(
            "bwp_unsupported_events",
            "Well-formed events of other detail-types",
            ["detail_type"],
            registry=r,
        )
        self.parked = Counter(
            "bwp_messages_parked", "Messages parked in the DLQ", ["kind"], registry=r
        )
        self.batch_size = Histogram(
            "bwp_batch_size", "Messages per receive", buckets=(0, 1, 2, 3, 5, 8, 10), registry=r
        )
        self.event_age = Histogram(
            "bwp_event_age_seconds",
            "Event age at receipt (now - envelope time)",
            buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 1800, 3600, 86400),
            registry=r,
        )
        self.errors = Counter(
            "bwp_loop_errors", "Receive/delete/dispatch errors", ["stage"], registry=r
        )
        self.sqs_requests = Counter(
            "bwp_sqs_requests", "SQS API requests by the poller", ["action"], registry=r
        )
        self.paused = Counter(
            "bwp_backpressure_pauses", "Polls skipped: Celery queue too deep", registry=r
        )
        self.held = Gauge(
            "bwp_held_messages", "Messages held in flight until their event settles", registry=r
        )
        self.settled = Counter(
            "bwp_held_settled",
            "Held messages deleted because their event settled",
            ["how"],
            registry=r,
        )
        self.redispatched = Counter(
            "bwp_events_redispatched",
            "Held events dispatched again: their ledger record vanished (record_lost), the "
            "worker holding their task died (task_lost), or no worker ever took it "
            "(never_taken)",
            ["why"],
            registry=r,
        )
        self.lapses = Counter(
            "bwp_visibility_lapses",
            "Held messages whose visibility ran out before the poller extended it",
            registry=r,
        )
        self.received_again = Counter(
            "bwp_held_received_again",
            "Held messages SQS delivered again (same MessageId, new receipt)",
            registry=r,
        )
        self.park_failures = Counter(
            "bwp_park_failures",
            "Messages the DLQ did not take: left to the queue's redrive policy",
            ["kind"],
            registry=r,
        )
        self.circuit_open = Gauge(
            "bwp_circuit_open",
            "1 while a dependency's circuit (oms, api, token) is open for every worker",
            ["dependency"],
            registry=r,
        )
        self.job_last_run = Gauge(
            "bwp_scheduled_job_last_run_timestamp_seconds",
            "Unix time a scheduled job (sweep, reconcile) last ran to its end, as Redis says",
            ["job"],
            registry=r,
        )
        self.handed_back = Counter(
            "bwp_messages_handed_back",
            "Messages made visible again (not handed off, or at shutdown)",
            registry=r,
        )
        self.heartbeat = Gauge(
            "bwp_loop_heartbeat_timestamp", "Unix time of the last completed poll", registry=r
        )

    def beat(self, now: float) -> None:
        """A poll completed at ``now``."""
        self.last_beat = now
        self.heartbeat.set(now)

    def value(self, name: str, **labels: str) -> float:
        """The current value of one sample (0 when it was never set)."""
        return self.registry.get_sample_value(name, labels) or 0.0

    def totals(self) -> Totals:
        def count(name: str, **labels: str) -> int:
            return int(self.value(name, **labels))

        def by_label(name: str, label: str) -> dict[str, int]:
            found: dict[str, int] = {}
            for metric in self.registry.collect():
                for sample in metric.samples:
                    if sample.name == name and sample.value:
                        found[sample.labels[label]] = int(sample.value)
            return found

        kinds = by_label("bwp_messages_parked_total", "kind")
        return Totals(
            received=count("bwp_messages_received_total"),
            dispatched=count("bwp_events_dispatched_total"),
            redispatched=sum(by_label("bwp_events_redispatched_total", "why").values()),
            duplicates=count("bwp_duplicates_total"),
            no_news=count("bwp_twins_absorbed_total"),
            parked=sum(kinds.values()),
            unsupported=sum(by_label("bwp_unsupported_events_total", "detail_type").values()),
            polls=count("bwp_sqs_requests_total", action="receive"),
            handed_back=count("bwp_messages_handed_back_total"),
            held=count("bwp_held_messages"),
            settled=sum(by_label("bwp_held_settled_total", "how").values()),
            extensions=count("bwp_sqs_requests_total", action="extend"),
            by_kind=kinds,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsServer:
    """Serves ``/metrics`` (what ``render()`` returns, Prometheus's text format) and
    ``/healthz``; healthy while ``healthy()`` is true. The poller serves its
    ``PollerMetrics.render``, a Celery worker its task metrics (worker/celery_metrics.py).
    Raises OSError when the port is taken."""

    def __init__(
        self,
        render: Callable[[], bytes],
        port: int,
        healthy: Callable[[], bool],
        *,
        socket_timeout: float = 10.0,
    ) -> None:

        class Handler(BaseHTTPRequestHandler):
            # A client that opens a connection and sends nothing (or a byte at a time)
            # would otherwise hold a thread and a socket forever: enough of them and
            # /healthz stops answering, and the orchestrator kills a healthy poller.
            timeout = socket_timeout

            def do_GET(self) -> None:
                if self.path == "/metrics":
                    self._reply(200, render(), CONTENT_TYPE_LATEST)
                elif self.path == "/healthz":
                    ok = healthy()
                    self._reply(200 if ok else 503, b"ok\n" if ok else b"stale\n", "text/plain")
                else:
                    self._reply(404, b"not found\n", "text/plain")

            def _reply(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                return

        self._server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics", daemon=True
        )

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def heartbeat_fresh(
    metrics: PollerMetrics, max_age: float, clock: Callable[[], float] = time.time
) -> bool:
    return metrics.last_beat > 0 and clock() - metrics.last_beat <= max_age
