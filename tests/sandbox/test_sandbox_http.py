"""serve_asgi: several real servers in one process, each on its own free port."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from sandbox.http import serve_asgi


def _app(name: str) -> Starlette:
    async def hello(_: Request) -> PlainTextResponse:
        return PlainTextResponse(name)

    return Starlette(routes=[Route("/", hello)])


def test_two_servers_answer_on_their_own_ports_and_stop() -> None:
    # Given two servers in one process
    first, second = serve_asgi(_app("first")), serve_asgi(_app("second"))
    try:
        # Then each answers with its own app on its own port
        assert first.port != second.port
        assert first.url == f"http://127.0.0.1:{first.port}"
        assert httpx.get(first.url).text == "first"
        assert httpx.get(second.url).text == "second"
    finally:
        first.stop()
        second.stop()
    # When stopped, nothing listens any more
    with pytest.raises(httpx.ConnectError):
        httpx.get(first.url, timeout=1)
