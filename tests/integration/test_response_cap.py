"""A byte cap per HTTP response, counted on decoded bytes, per endpoint: a real server sends
a gzip bomb (64 KiB on the wire, 64 MiB decoded) to the order API client, the token
endpoint's client and the OMS client; each gives up at its cap with a retryable error,
having held about the cap in memory, never the 64 MiB."""

from __future__ import annotations

import gzip
import json
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import redis

from config.settings import (
    API_MAX_RESPONSE_BYTES,
    OMS_MAX_RESPONSE_BYTES,
    TOKEN_MAX_RESPONSE_BYTES,
    Settings,
)
from tasks.errors import ApiUnavailable, OmsUnavailable, RetryableError
from tasks.http.deadline import Deadline, bounded_request
from tasks.keys import Keys
from tasks.oms.client import OmsClient
from tasks.order_api.client import OrderApi
from tasks.order_api.token import Credentials, TokenCache
from tasks.runtime import build_runtime

BOMB_DECODED = 64 * 1024 * 1024
TOKEN = json.dumps({"access_token": "t-small", "expires_in": 900}).encode()


class BombServer:
    """Answers ``POST /token`` with a small token, anything else with a gzip bomb; and
    ``/huge`` with headers announcing 100 MB of plain body it never sends."""

    def __init__(self) -> None:
        bomb = gzip.compress(bytes(BOMB_DECODED), compresslevel=9)
        self.bomb_size = len(bomb)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path == "/token":
                    self._send(TOKEN, {})
                elif self.path == "/huge":
                    self.send_response(200)
                    self.send_header("Content-Length", str(100_000_000))
                    self.end_headers()
                    self.wfile.flush()  # and nothing more: only a reader would wait
                else:
                    self._send(bomb, {"Content-Encoding": "gzip"})

            def _send(self, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def bomb() -> Iterator[BombServer]:
    server = BombServer()
    assert server.bomb_size < 100 * 1024  # 64 KiB on the wire
    yield server
    server.close()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=httpx.Timeout(30.0)) as client:
        yield client


class _Tokens:
    def get(self) -> str:
        return "token"

    def invalidate(self, token: str) -> None:
        return


def peak_while(call: Callable[[], Any]) -> tuple[BaseException, int]:
    """The error ``call`` raised and the peak of Python memory allocated meanwhile."""
    tracemalloc.start()
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the caller asserts on it
        error: BaseException = exc
    else:
        error = AssertionError("the call returned: the body was read whole")
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return error, peak


def test_the_order_api_client_stops_at_its_cap(bomb: BombServer, http: httpx.Client) -> None:
    # Given the order API client with its default cap (4 MiB), and an API sending a bomb
    api = OrderApi(
        http, _Tokens(), url=f"{bomb.url}/graphql", api_version="2024-11-01", target_id=None,
        attempts=1,
    )  # fmt: skip
    # When an order is fetched
    error, peak = peak_while(lambda: api.fetch_order("bp-1", "o-1"))
    # Then the call ends with a retryable error naming the cap, having held about the cap
    assert isinstance(error, ApiUnavailable), repr(error)
    assert f"larger than {API_MAX_RESPONSE_BYTES} bytes" in str(error)
    assert peak < 2 * API_MAX_RESPONSE_BYTES + 2 * 1024 * 1024, peak


def test_the_token_client_stops_at_its_cap(
    bomb: BombServer, http: httpx.Client, redis_client: redis.Redis, key_prefix: str
) -> None:
    credentials = Credentials(f"{bomb.url}/bomb-token", "client-id", "client-secret")
    tokens = TokenCache(redis_client, Keys(key_prefix), http, credentials, wait=1.0)
    error, peak = peak_while(tokens.get)
    assert isinstance(error, ApiUnavailable), repr(error)
    assert f"token endpoint: response body larger than {TOKEN_MAX_RESPONSE_BYTES} bytes" in str(
        error
    )
    assert peak < 2 * 1024 * 1024, peak


def test_the_oms_client_stops_at_its_cap(bomb: BombServer, http: httpx.Client) -> None:
    oms = OmsClient(
        http, url=f"{bomb.url}/deliveries", signing_secret="s", auth_token=None, attempts=1
    )
    error, peak = peak_while(lambda: oms.push({"idempotencyKey": "k-1"}))
    assert isinstance(error, OmsUnavailable), repr(error)
    assert f"OMS: response body larger than {OMS_MAX_RESPONSE_BYTES} bytes" in str(error)
    assert peak < 2 * 1024 * 1024, peak


def test_each_endpoints_cap_comes_from_its_setting(
    bomb: BombServer, redis_url: str, key_prefix: str
) -> None:
    # Given a worker's collaborators built from settings with three different caps
    settings = Settings(
        redis_url=redis_url,
        redis_key_prefix=key_prefix,
        bwp_api_url=f"{bomb.url}/graphql",
        bwp_token_url=f"{bomb.url}/token",
        bwp_client_id="client-id",
        bwp_client_secret="client-secret",  # type: ignore[arg-type]
        oms_url=f"{bomb.url}/deliveries",
        oms_signing_secret="signing-secret",  # type: ignore[arg-type]
        api_max_response_bytes=8192,
        token_max_response_bytes=4096,
        oms_max_response_bytes=2048,
        http_max_attempts=1,
        api_rate_per_second=0,
    )
    # Then the token endpoint (here a bomb) stops at 4096 bytes
    bombed = build_runtime(
        Settings(**{**settings.model_dump(), "bwp_token_url": f"{bomb.url}/bomb-token"})
    )
    try:
        with pytest.raises(ApiUnavailable, match=r"token endpoint: .* larger than 4096 bytes"):
            bombed.tokens.get()
    finally:
        bombed.close()
    runtime = build_runtime(settings)
    try:
        # and the order API (its token a small one, from /token) at 8192
        with pytest.raises(ApiUnavailable, match="order API: response body larger than 8192"):
            runtime.api.fetch_order("bp-1", "o-1")
        # and the OMS at 2048
        with pytest.raises(OmsUnavailable, match="OMS: response body larger than 2048"):
            runtime.oms.push({"idempotencyKey": "k-1"})
    finally:
        runtime.close()


def test_a_declared_length_past_the_cap_is_refused_before_reading(
    bomb: BombServer, http: httpx.Client
) -> None:
    # Given a server announcing 100 MB of plain body (and sending none of it)
    started = time.monotonic()
    # When the client asks with a 1 MiB cap and a 20 s deadline
    with pytest.raises(RetryableError) as raised:
        bounded_request(
            http,
            "POST",
            f"{bomb.url}/huge",
            deadline=Deadline(20.0),
            error=ApiUnavailable,
            what="probe",
            max_bytes=1024 * 1024,
        )
    # Then it refuses on the header, not by waiting for a body that never comes
    assert "larger than 1048576 bytes (100000000)" in str(raised.value)
    assert time.monotonic() - started < 10
