"""Serve an ASGI app on a free loopback port from a daemon thread (tests, demo, benchmarks).

Several servers can run in one process: each owns its socket, thread and event loop.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from sandbox.stops import StopsOnExit

_START_TIMEOUT = 10.0


@dataclass
class ServerHandle(StopsOnExit):
    """A running server: ``url`` to reach it, ``stop()`` to end it (idempotent)."""

    url: str
    host: str
    port: int
    _server: Any = field(repr=False)
    _thread: threading.Thread = field(repr=False)
    _sock: socket.socket = field(repr=False)

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        self._sock.close()


def serve_asgi(app: Any, host: str = "127.0.0.1", port: int = 0) -> ServerHandle:
    """Start ``app`` under uvicorn and return once it accepts connections.

    Raises RuntimeError when the server does not start within 10 seconds.
    """
    # Binding here (rather than letting uvicorn bind) is what makes port 0 usable: the
    # kernel picks the port and we know it before the server thread starts. The explicit
    # IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose proto is
    # IPPROTO_TCP, and without it every keep-alive response stalls ~40 ms (Nagle + delayed ACK).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port: int = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        loop="asyncio",
        ws="none",
        lifespan="off",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"asgi-{bound_port}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + _START_TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError(f"ASGI server on {host}:{bound_port} did not start")
        time.sleep(0.005)
    return ServerHandle(f"http://{host}:{bound_port}", host, bound_port, server, thread, sock)
