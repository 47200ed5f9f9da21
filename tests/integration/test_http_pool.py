"""The worker's HTTP client: one pool per thread behind one client, certificates verified."""

from __future__ import annotations

import http.server
import ssl
import threading
from collections.abc import Iterator

import pytest

from config.clients import PerThreadTransport, make_http
from config.settings import load_settings


class _Ok(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, list[int]]]:
    connections: list[int] = []

    class Counting(_Ok):
        def setup(self) -> None:
            connections.append(1)
            super().setup()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Counting)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", connections
    httpd.shutdown()
    httpd.server_close()


def test_each_thread_reuses_its_own_pool_and_close_ends_them_all(
    server: tuple[str, list[int]],
) -> None:
    url, connections = server
    client = make_http(load_settings())
    transport = client._transport
    assert isinstance(transport, PerThreadTransport)

    # Given three threads that each make three requests
    def calls() -> None:
        for _ in range(3):
            assert client.get(url).text == "ok"

    threads = [threading.Thread(target=calls) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then each thread kept one connection open for its calls: three pools, three
    # connections for nine requests
    assert transport.pools == 3
    assert len(connections) == 3
    # And closing the client closes every pool
    client.close()
    assert transport.pools == 0


def test_the_pools_verify_certificates() -> None:
    transport = PerThreadTransport()
    assert transport.tls.verify_mode == ssl.CERT_REQUIRED
    assert transport.tls.check_hostname
