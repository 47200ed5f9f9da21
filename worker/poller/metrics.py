"""The poller's Prometheus metrics and its /healthz endpoint.

Each Poller owns a registry (tests run several in one process). ``MetricsServer`` exposes
``/metrics`` and ``/healthz`` on one port from a daemon thread, with a deadline per
connection and a cap on connections.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from config.settings import Settings


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
            "Messages held, not dispatched: their event's task is queued or running already",
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
            "bwp_loop_errors",
            "Poller errors by stage: receive, delete, extend, loop (a batch), settle (a "
            "settling tick), redis and broker (an outage that paused intake)",
            ["stage"],
            registry=r,
        )
        self.sqs_requests = Counter(
            "bwp_sqs_requests", "SQS API requests by the poller", ["action"], registry=r
        )
        self.paused = Counter(
            "bwp_backpressure_pauses",
            "Polls skipped: the Celery queue deeper than MAX_QUEUE_DEPTH, or this poller "
            "holding MAX_HELD_MESSAGES messages or MAX_HELD_BYTES body bytes",
            registry=r,
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
        """A poll completed at ``now`` (the loop thread)."""
        self.heartbeat.set(now)

    @property
    def last_beat(self) -> float:
        """When the loop last turned (0: never); any thread reads it (the gauge's lock)."""
        return self.value("bwp_loop_heartbeat_timestamp")

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
    ``/healthz`` on ``host:port``; healthy while ``healthy()`` is true. The poller serves
    its ``PollerMetrics.render``, a Celery worker its task metrics
    (worker/celery_metrics.py). Raises OSError when the port is taken.

    Bounded against clients that hold connections (a trickle must not take the health
    check down, or the orchestrator kills a healthy process):

    - ``deadline``: each connection's whole budget (request read, answer written), a
      wall-clock bound rather than a timeout per ``recv``, so a client sending a byte at
      a time is cut off when it runs out.
    - ``max_connections``: connections served at once (one thread each). A connection
      past the cap drops the oldest open one, so a fresh ``/healthz`` always gets in
      while slow clients hold every slot.

    ``socket_timeout`` is the earlier name of ``deadline``.
    """

    def __init__(
        self,
        render: Callable[[], bytes],
        port: int,
        healthy: Callable[[], bool],
        *,
        host: str = "0.0.0.0",
        deadline: float = 5.0,
        max_connections: int = 16,
        socket_timeout: float | None = None,
    ) -> None:
        budget = deadline if socket_timeout is None else socket_timeout

        class Handler(BaseHTTPRequestHandler):
            def setup(self) -> None:
                super().setup()
                wire = _DeadlineIO(self.connection, time.monotonic() + budget)
                self.rfile = io.BufferedReader(wire)
                self.wfile = io.BufferedWriter(wire)  # flushed after each request

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

        self._server = _BoundedServer((host, port), Handler, _Connections(max_connections))
        self.host = host
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics", daemon=True
        )

    @classmethod
    def for_settings(
        cls,
        settings: Settings,
        render: Callable[[], bytes],
        healthy: Callable[[], bool],
        *,
        port: int | None = None,
    ) -> MetricsServer:
        """A server on METRICS_HOST, at ``port`` (METRICS_PORT by default), with the
        configured bounds."""
        return cls(
            render,
            settings.metrics_port if port is None else port,
            healthy,
            host=settings.metrics_host,
            deadline=settings.metrics_connection_deadline_seconds,
            max_connections=settings.metrics_max_connections,
        )

    @property
    def open_connections(self) -> int:
        """Connections being served right now (tests count them)."""
        return len(self._server.connections)

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _DeadlineIO(io.RawIOBase):
    """A connection's socket as a raw stream whose every read and write may only use the
    time left until ``end`` (monotonic): the deadline is the connection's, not a recv's."""

    def __init__(self, sock: socket.socket, end: float) -> None:
        super().__init__()
        self._sock, self._end = sock, end

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self._sock.settimeout(self._left())
        return self._sock.recv_into(buffer)

    def write(self, data: Any) -> int:
        self._sock.settimeout(self._left())
        self._sock.sendall(data)
        return len(data)

    def _left(self) -> float:
        left = self._end - time.monotonic()
        if left <= 0:
            raise TimeoutError("the connection's deadline passed")
        return left


class _Connections:
    """The open connections, oldest first, at most ``cap`` of them."""

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._open: OrderedDict[socket.socket, None] = OrderedDict()
        self._lock = threading.Lock()

    def admit(self, sock: socket.socket) -> list[socket.socket]:
        """Count ``sock`` in; returns the oldest connections it pushes past the cap."""
        with self._lock:
            self._open[sock] = None
            dropped = []
            while len(self._open) > self._cap:
                dropped.append(self._open.popitem(last=False)[0])
            return dropped

    def release(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.pop(sock, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._open)


class _BoundedServer(ThreadingHTTPServer):
    """One thread per connection, at most ``connections``' cap of them at once."""

    daemon_threads = True
    #: stopping does not wait for connections still open (each ends by its deadline)
    block_on_close = False

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        connections: _Connections,
    ) -> None:
        self.connections = connections
        if ":" in address[0]:  # an IPv6 address, "::" for every interface
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        for oldest in self.connections.admit(request):
            # its thread wakes with EOF (or a broken pipe) and ends
            with suppress(OSError):
                oldest.shutdown(socket.SHUT_RDWR)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.connections.release(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client dropped, cut off or too slow: nothing to report (no traceback)."""
        return


def heartbeat_fresh(
    metrics: PollerMetrics, max_age: float, clock: Callable[[], float] = time.time
) -> bool:
    return metrics.last_beat > 0 and clock() - metrics.last_beat <= max_age
