"""A total, wall-clock deadline on HTTP calls: httpx's own timeouts are per phase.

``httpx.Timeout(10)`` bounds each connect, each read and each write, so a server that
sends one byte every few seconds holds a worker thread for as long as it likes. Here a
request runs under a :class:`Deadline` (monotonic): each phase's timeout is clipped to
the time left, and the body is read in chunks with the deadline checked between them.
A passed deadline, and a connection that fails, raise the caller's retryable error.

A task may pass its own Deadline to the clients (``fetch_order(..., deadline=)``,
``push(..., deadline=)``); each request then ends at the earlier of the task's deadline
and ``HTTP_TOTAL_TIMEOUT_SECONDS``.

The body is also capped in size, counted on decoded bytes and per endpoint (``max_bytes``:
``API_MAX_RESPONSE_BYTES``, ``TOKEN_MAX_RESPONSE_BYTES``, ``OMS_MAX_RESPONSE_BYTES``): the
raw stream is decompressed here under that cap (tasks/http/body.py), so a gzip bomb
costs at most the cap in memory. A larger body raises the caller's retryable error.

Known limit: a server that trickles the *status line and headers* is bounded only by
the per-phase timeout clipped at the start of the request (httpx exposes no socket
before the headers are in).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import httpx

from tasks.errors import RetryableError
from tasks.http.body import ACCEPT_ENCODING, BodyRefused, BoundedDecoder

#: headers that describe the wire form of a body already decoded here
_WIRE_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


class Deadline:
    """A moment on the monotonic clock after which work must stop."""

    def __init__(
        self, seconds: float = math.inf, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self._end = clock() + seconds

    def remaining(self) -> float:
        """Seconds left, never negative (``inf`` for no deadline)."""
        return max(0.0, self._end - self._clock())

    def expired(self) -> bool:
        return self._clock() >= self._end

    def within(self, seconds: float) -> Deadline:
        """The earlier of this deadline and ``seconds`` from now."""
        return Deadline(min(seconds, self._end - self._clock()), clock=self._clock)


def _clipped(timeout: httpx.Timeout, left: float) -> httpx.Timeout:
    def clip(value: float | None) -> float:
        return left if value is None else min(value, left)

    return httpx.Timeout(
        connect=clip(timeout.connect),
        read=clip(timeout.read),
        write=clip(timeout.write),
        pool=clip(timeout.pool),
    )


def bounded_request(
    http: httpx.Client,
    method: str,
    url: str,
    *,
    deadline: Deadline,
    error: Callable[[str], RetryableError],
    what: str,
    max_bytes: int,
    **kwargs: Any,
) -> httpx.Response:
    """``http.request(method, url, **kwargs)``, ended when ``deadline`` passes or the
    decoded body would exceed ``max_bytes``.

    Raises ``error("<what>: ...")`` when the deadline passes before or during the call,
    or the body is too large or cannot be decoded, and ``error("<what> unreachable:
    <httpx error>")`` when the connection fails (refused, reset, timed out before the
    deadline, a proxy error). Any other httpx error (a malformed URL, say) propagates.
    """
    if deadline.expired():
        raise error(f"{what}: deadline passed before the request")
    timeout = _clipped(http.timeout, max(deadline.remaining(), 0.001))
    request = http.build_request(method, url, timeout=timeout, **kwargs)
    # only encodings decoded here under the cap (a client default could add br or zstd)
    request.headers["Accept-Encoding"] = ACCEPT_ENCODING
    try:
        response = http.send(request, stream=True)
        try:
            body = _read(response, deadline, max_bytes)
        except BodyRefused as exc:
            raise error(f"{what}: {exc}") from None
        except _Late:
            raise error(f"{what}: response not complete within the deadline") from None
        finally:
            response.close()
    except httpx.TransportError as exc:
        if isinstance(exc, httpx.TimeoutException) and deadline.expired():
            raise error(f"{what}: no response within the deadline") from exc
        raise error(f"{what} unreachable: {type(exc).__name__}") from exc
    headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _WIRE_HEADERS]
    return httpx.Response(response.status_code, headers=headers, content=body, request=request)


class _Late(Exception):
    """The deadline passed while the body was arriving."""


def _read(response: httpx.Response, deadline: Deadline, max_bytes: int) -> bytes:
    """The decoded body, read raw in chunks and decoded under ``max_bytes``."""
    if response.is_stream_consumed:  # a transport that read it already (httpx.MockTransport)
        if len(response.content) > max_bytes:
            raise BodyRefused(f"response body larger than {max_bytes} bytes")
        return response.content
    decoder = BoundedDecoder(response.headers.get("content-encoding"), max_bytes)
    declared = response.headers.get("content-length", "")
    plain = "content-encoding" not in response.headers
    if plain and declared.isdigit() and int(declared) > max_bytes:
        # refused before a byte of it is read
        raise BodyRefused(f"response body larger than {max_bytes} bytes ({declared})")
    chunks: list[bytes] = []
    for raw in response.iter_raw():
        if deadline.expired():
            raise _Late
        chunks.append(decoder.feed(raw))
    chunks.append(decoder.flush())
    return b"".join(chunks)
