"""The poller's Prometheus metrics and its /healthz endpoint.

Each Poller owns a registry (tests run several in one process). ``serve`` exposes
``/metrics`` and ``/healthz`` on one port from a daemon thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


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
        self.heartbeat = Gauge(
            "bwp_loop_heartbeat_timestamp", "Unix time of the last completed poll", registry=r
        )

    def beat(self, now: float) -> None:
        """A poll completed at ``now``."""
        self.last_beat = now
        self.heartbeat.set(now)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsServer:
    """Serves ``/metrics`` and ``/healthz``; healthy while ``healthy()`` is true."""

    def __init__(
        self,
        metrics: PollerMetrics,
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
                    self._reply(200, metrics.render(), CONTENT_TYPE_LATEST)
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
