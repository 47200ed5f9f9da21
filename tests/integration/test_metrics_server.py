"""The metrics and health server against clients that hold connections, over real sockets:
a deadline per connection (not per recv), a cap on connections that keeps /healthz
answering, and the address it listens on (METRICS_HOST)."""

from __future__ import annotations

import select
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator

import pytest

from config.settings import load_settings
from worker.poller.metrics import MetricsServer, PollerMetrics

#: one request line and a header, sent a byte at a time by the slow clients below
REQUEST = b"GET /healthz HTTP/1.0\r\nX-Slow: " + b"." * 60 + b"\r\n\r\n"


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def closed_by_server(sock: socket.socket) -> bool:
    """The server hung up on ``sock`` (EOF or reset), without blocking."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1024) == b""
    except ConnectionError:
        return True


def healthz(port: int, host: str = "127.0.0.1") -> int:
    with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=10) as reply:
        return int(reply.status)


@pytest.fixture
def connections() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def test_a_client_trickling_its_request_is_cut_off_at_the_connection_deadline() -> None:
    # Given the server with a 1 s budget per connection (``socket_timeout``, its old name,
    # was a timeout per recv: a byte every 50 ms never tripped it)
    server = MetricsServer(PollerMetrics().render, 0, lambda: True, socket_timeout=1.0).start()
    loris = socket.create_connection(("127.0.0.1", server.port))
    try:
        # When a client sends its request one byte every 50 ms (4 s for all of it)
        sent = 0
        for byte in REQUEST:
            if closed_by_server(loris):
                break
            try:
                loris.sendall(bytes([byte]))
            except ConnectionError:
                break
            sent += 1
            time.sleep(0.05)  # the client's trickle, not a wait for the server
        answer = b"" if sent < len(REQUEST) else loris.recv(1024)
    finally:
        loris.close()
        server.stop()
    # Then the server hung up before the request was complete (about 20 bytes in)
    assert sent < len(REQUEST), f"the whole request got through, answered {answer[:15]!r}"


def test_idle_connections_past_the_cap_hold_no_threads_and_healthz_still_answers(
    connections: list[socket.socket],
) -> None:
    # Given the server capped at 4 connections, each allowed a minute
    cap, clients = 4, 24
    server = MetricsServer(
        PollerMetrics().render, 0, lambda: True, deadline=60.0, max_connections=cap
    ).start()
    threads_before = threading.active_count()
    try:
        # When 24 clients connect and send half a request line, then nothing
        for _ in range(clients):
            sock = socket.create_connection(("127.0.0.1", server.port))
            sock.sendall(b"GET /heal")
            connections.append(sock)
        # Then /healthz answers (the server accepts in order: every client is in by now)
        assert healthz(server.port) == 200
        # and the slow clients hold at most the cap of threads and connections
        wait_for(
            lambda: threading.active_count() - threads_before <= cap,
            f"at most {cap} connection threads",
        )
        assert server.open_connections <= cap
        # the oldest were hung up on to make room; the newest are still being served
        assert all(_hung_up(s) for s in connections[: clients - cap])
        assert not any(closed_by_server(s) for s in connections[-(cap - 1) :])
        # and /healthz keeps answering while the slow clients come back for more
        for _ in range(3):
            for _ in range(cap):
                sock = socket.create_connection(("127.0.0.1", server.port))
                sock.sendall(b"GET /me")
                connections.append(sock)
            assert healthz(server.port) == 200
        wait_for(lambda: server.open_connections <= cap, "the cap held")
    finally:
        server.stop()


def _hung_up(sock: socket.socket) -> bool:
    """Wait (bounded) for the server to hang up on ``sock``; False if it keeps it open."""
    readable, _, _ = select.select([sock], [], [], 2.0)
    return bool(readable) and closed_by_server(sock)


def test_the_server_listens_on_metrics_host_only() -> None:
    # Given METRICS_HOST naming one loopback address (the whole 127/8 is this host's)
    settings = load_settings(metrics_host="127.0.0.2", metrics_port=0)
    server = MetricsServer.for_settings(settings, PollerMetrics().render, lambda: True).start()
    try:
        # Then it answers there, and nowhere else
        assert healthz(server.port, host="127.0.0.2") == 200
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
    finally:
        server.stop()
