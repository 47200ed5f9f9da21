"""A total deadline on HTTP calls, and a socket timeout on the metrics server.

httpx's timeouts are per phase: a server that trickles one byte a second never trips
them. The clients must give up when the total budget is spent, with a retryable error.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from collections.abc import Iterator

import httpx
import pytest

from tasks.errors import ApiUnavailable, OmsUnavailable, RetryableError
from tasks.http.deadline import Deadline, bounded_request
from tasks.oms.client import OmsClient
from tasks.order_api.client import OrderApi
from worker.poller.metrics import MetricsServer, PollerMetrics

BODY = b'{"data": {"order": {"id": "o-1"}}}'
CAP = 64 * 1024


class TrickleServer:
    """Answers every request with full headers, then the body one byte per ``interval``."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/"
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                conn.sendall(f"{head}Content-Length: {len(BODY)}\r\n\r\n".encode())
                for byte in BODY:
                    if self._stop.wait(self.interval):
                        return
                    conn.sendall(bytes([byte]))
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        self._sock.close()


@pytest.fixture
def trickle() -> Iterator[TrickleServer]:
    server = TrickleServer(interval=1.0)
    yield server
    server.close()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    # per-phase timeout far longer than the test: only a total deadline can end the call
    with httpx.Client(timeout=httpx.Timeout(30.0)) as client:
        yield client


class _Tokens:
    def get(self) -> str:
        return "token"

    def invalidate(self, token: str) -> None:
        return


def test_a_trickling_server_cannot_hold_a_request_past_its_deadline(
    trickle: TrickleServer, http: httpx.Client
) -> None:
    # Given a server that sends its body one byte per second (35 s in all)
    started = time.monotonic()
    # When a request runs under a 2-second deadline
    with pytest.raises(ApiUnavailable, match="deadline"):
        bounded_request(
            http,
            "GET",
            trickle.url,
            deadline=Deadline(2.0),
            error=ApiUnavailable,
            what="probe",
            max_bytes=CAP,
        )
    # Then it ends within about the deadline, not the 35 s the server would take
    assert time.monotonic() - started < 4.0


def test_the_order_api_client_gives_up_at_its_total_timeout(
    trickle: TrickleServer, http: httpx.Client
) -> None:
    api = OrderApi(
        http,
        _Tokens(),
        url=trickle.url,
        api_version="2024-11-01",
        target_id=None,
        attempts=1,
        total_timeout=1.5,
    )
    started = time.monotonic()
    with pytest.raises(ApiUnavailable) as raised:
        api.fetch_order("bp-1", "o-1")
    assert time.monotonic() - started < 3.5
    assert isinstance(raised.value, RetryableError)


def test_the_oms_client_stops_at_the_tasks_deadline(
    trickle: TrickleServer, http: httpx.Client
) -> None:
    # Given a task with 1.5 s left and an OMS that trickles its answer
    oms = OmsClient(
        http, url=trickle.url, signing_secret=None, auth_token=None, attempts=1, total_timeout=60
    )
    started = time.monotonic()
    # When the task pushes
    with pytest.raises(OmsUnavailable, match="deadline"):
        oms.push({"idempotencyKey": "k-1"}, deadline=Deadline(1.5))
    # Then the push ends at the task's deadline, not the client's 60 s budget
    assert time.monotonic() - started < 3.5


def test_a_passed_deadline_sends_nothing(http: httpx.Client) -> None:
    clock = iter([0.0, 5.0, 5.0]).__next__
    with pytest.raises(OmsUnavailable, match="before the request"):
        bounded_request(
            http,
            "GET",
            "http://127.0.0.1:9/",
            deadline=Deadline(1.0, clock=clock),
            error=OmsUnavailable,
            what="OMS",
            max_bytes=CAP,
        )


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/"


def test_a_connection_that_fails_raises_the_callers_error(http: httpx.Client) -> None:
    # Given nothing listening at the URL
    url = _closed_port_url()
    # Then the request raises the caller's retryable error, named, not httpx's
    with pytest.raises(OmsUnavailable, match=r"^OMS unreachable: ConnectError$") as raised:
        bounded_request(
            http,
            "GET",
            url,
            deadline=Deadline(5.0),
            error=OmsUnavailable,
            what="OMS",
            max_bytes=CAP,
        )
    assert isinstance(raised.value.__cause__, httpx.ConnectError)
    # ... and so do the clients built on it
    api = OrderApi(http, _Tokens(), url=url, api_version="2024-11-01", target_id=None, attempts=1)
    with pytest.raises(ApiUnavailable, match=r"^order API unreachable: ConnectError$"):
        api.fetch_order("bp-1", "o-1")


def test_a_whole_response_within_the_deadline_is_returned_as_is(
    http: httpx.Client,
) -> None:
    fast = TrickleServer(interval=0.0)
    try:
        response = bounded_request(
            http,
            "GET",
            fast.url,
            deadline=Deadline(5.0),
            error=ApiUnavailable,
            what="probe",
            max_bytes=CAP,
        )
    finally:
        fast.close()
    assert response.status_code == 200 and response.json() == {"data": {"order": {"id": "o-1"}}}


def test_a_slow_loris_client_is_dropped_and_healthz_still_answers() -> None:
    # Given the poller's metrics server with a short socket timeout
    server = MetricsServer(PollerMetrics().render, 0, lambda: True, socket_timeout=0.5).start()
    try:
        # When a client opens a connection and sends half a request line, then nothing
        loris = socket.create_connection(("127.0.0.1", server.port))
        loris.sendall(b"GET /heal")
        loris.settimeout(5)
        # Then /healthz answers meanwhile
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5) as r:
            assert r.status == 200
        # And the server hangs up on the slow client instead of holding it forever
        assert loris.recv(1024) == b""
        loris.close()
    finally:
        server.stop()
