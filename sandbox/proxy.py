"""A forwarding HTTP proxy on loopback, for the tests of HTTPS_PROXY / HTTP_PROXY.

It speaks both forms a client uses: ``CONNECT host:port`` (an https:// target: bytes are
tunnelled, TLS stays end to end) and an absolute-form request ``GET http://host/path``
(an http:// target: forwarded with ``Connection: close``). It connects only to loopback:
each host name it is given maps to a loopback port, so a target under ``.invalid``, which
no resolver knows, is reached only through this proxy. ``requests`` records what it
forwarded, as (method, host).
"""

from __future__ import annotations

import select
import socket
import socketserver
import threading

from sandbox.stops import StopsOnExit

_BUFFER = 65536


class _Handler(socketserver.StreamRequestHandler):
    server: _Server
    timeout = 10

    def handle(self) -> None:
        request_line = self.rfile.readline(8192).decode("latin-1").strip()
        if not request_line:
            return
        method, target, _ = request_line.split(" ", 2)
        headers = []
        while (line := self.rfile.readline(8192)) not in (b"\r\n", b"\n", b""):
            headers.append(line)
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            self._tunnel(host, int(port))
        else:
            self._forward(method, target, headers)

    def _upstream(self, method: str, host: str, port: int) -> socket.socket | None:
        loopback_port = self.server.hosts.get(host.lower(), port if host == "127.0.0.1" else None)
        if loopback_port is None:
            self.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return None
        with self.server.lock:
            self.server.requests.append((method, host))
        return socket.create_connection(("127.0.0.1", loopback_port), timeout=10)

    def _tunnel(self, host: str, port: int) -> None:
        upstream = self._upstream("CONNECT", host, port)
        if upstream is None:
            return
        with upstream:
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.wfile.flush()
            _relay(self.connection, upstream)

    def _forward(self, method: str, target: str, headers: list[bytes]) -> None:
        rest = target.removeprefix("http://")
        authority, _, path = rest.partition("/")
        host, _, port = authority.partition(":")
        upstream = self._upstream(method, host, int(port or 80))
        if upstream is None:
            return
        kept = [h for h in headers if not h.lower().startswith((b"connection:", b"proxy-"))]
        length = next(
            (int(h.split(b":", 1)[1]) for h in headers if h.lower().startswith(b"content-length:")),
            0,
        )
        body = self.rfile.read(length) if length else b""
        head = f"{method} /{path} HTTP/1.1\r\n".encode() + b"".join(kept)
        with upstream:
            upstream.sendall(head + b"Connection: close\r\n\r\n" + body)
            while chunk := upstream.recv(_BUFFER):
                self.wfile.write(chunk)


def _relay(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    sockets = [a, b]
    while True:
        readable, _, _ = select.select(sockets, [], [], 10)
        if not readable:
            return
        for source in readable:
            data = source.recv(_BUFFER)
            if not data:
                return
            (b if source is a else a).sendall(data)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, hosts: dict[str, int]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hosts = {name.lower(): port for name, port in hosts.items()}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()


class ForwardProxy(StopsOnExit):
    """``with ForwardProxy({"oms.invalid": 8080}) as proxy:`` then ``proxy.url``."""

    def __init__(self, hosts: dict[str, int]) -> None:
        self._server = _Server(hosts)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="proxy", daemon=True
        )
        self._thread.start()

    @property
    def requests(self) -> list[tuple[str, str]]:
        with self._server.lock:
            return list(self._server.requests)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
