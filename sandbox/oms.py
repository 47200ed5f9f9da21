"""An order management system stand-in that receives the worker's delivery updates.

HTTP paths (``build_app``):

- ``POST /deliveries`` (any POST outside ``/_oms/`` is treated the same) — checks, in
  order: down (503), injected failure, ``Authorization: Bearer`` when a token is
  configured (401), ``X-Signature`` when a secret is configured (401), JSON body valid
  against ``oms-delivery-update.schema.json`` (422), ``Idempotency-Key`` header equal to
  ``body.idempotencyKey`` (422), key already applied (409); else applied (200).
- ``GET /_oms/received``, ``GET /_oms/attempts``, ``GET /_oms/latest`` (keyed
  ``"<orderId>/<deliveryId>"``); ``POST /_oms/faults`` ``{"count", "status",
  "retry_after", "body"}`` (``body``: the raw text the failure answers with);
  ``POST /_oms/down`` ``{"down"}``; ``POST /_oms/latency`` ``{"seconds"}``;
  ``POST /_oms/reset``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import threading
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Final

import anyio
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

SCHEMA_FILE: Final = "oms-delivery-update.schema.json"
_KEPT_HEADERS: Final = ("content-type", "idempotency-key", "x-signature", "authorization")


@cache
def _validator() -> Draft202012Validator:
    # Next to this file rather than importlib.resources.files("sandbox"): when pytest puts
    # tests/ on sys.path, the name "sandbox" resolves to a namespace package over
    # tests/sandbox (submodules still import through the editable-install finder).
    text = Path(__file__).with_name(SCHEMA_FILE).read_text(encoding="utf-8")
    schema = json.loads(text)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Signature`` value for ``body`` sent at ``timestamp`` (unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def signature_error(secret: str, header: str | None, body: bytes, tolerance: float) -> str | None:
    """Why ``header`` does not sign ``body``, or None when it does.

    The header is ``t=<unix>,v1=<hex>[,v1=<hex>…]``: during a rotation of the signing
    secret the worker sends one ``v1`` per secret, and any one that verifies with the
    OMS's secret is enough.
    """
    if not header:
        return "missing X-Signature"
    pairs = [part.strip().partition("=")[::2] for part in header.split(",")]
    stamps = [value for key, value in pairs if key == "t"]
    candidates = [value for key, value in pairs if key == "v1"]
    try:
        (timestamp,) = (int(value) for value in stamps)
    except ValueError:
        return "malformed X-Signature"
    if not candidates:
        return "malformed X-Signature"
    if abs(time.time() - timestamp) > tolerance:
        return "X-Signature timestamp outside tolerance"
    expected = sign(secret, timestamp, body).rpartition("v1=")[2]
    # compare every candidate (no early exit): the time taken says nothing about which
    if sum(hmac.compare_digest(expected, value) for value in candidates) == 0:
        return "X-Signature mismatch"
    return None


@dataclass(frozen=True)
class Push:
    """An accepted delivery update."""

    headers: dict[str, str]
    body: dict[str, Any]
    received_at: float  # time.monotonic()
    received_wall: float  # time.time()


@dataclass(frozen=True)
class Attempt:
    """Any request to the delivery endpoint, accepted or not."""

    status: int
    headers: dict[str, str]
    body: str
    detail: str
    received_at: float
    received_wall: float


@dataclass
class _State:
    received: list[Push] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    applied: set[str] = field(default_factory=set)
    keys_seen: Counter[str] = field(default_factory=Counter)
    failures: deque[tuple[int, float | None, str | None]] = field(default_factory=deque)
    down: bool = False
    latency: float = 0.0
    #: state -> seconds: the first push of each delivery in that state is held that long
    hold_first: dict[str, float] = field(default_factory=dict)
    held: set[tuple[str, str, str]] = field(default_factory=set)


class SandboxOms:
    """The receiver's state and rules. Thread-safe."""

    def __init__(
        self,
        signing_secret: str | None = None,
        auth_token: str | None = None,
        *,
        signature_tolerance: float = 300.0,
    ) -> None:
        self.signing_secret = signing_secret
        self.auth_token = auth_token
        self.signature_tolerance = signature_tolerance
        self._lock = threading.Lock()
        self._s = _State()

    def reset(self) -> None:
        """Forget every push, key, fault and latency."""
        with self._lock:
            self._s = _State()

    @property
    def received(self) -> list[Push]:
        with self._lock:
            return list(self._s.received)

    @property
    def attempts(self) -> list[Attempt]:
        with self._lock:
            return list(self._s.attempts)

    @property
    def keys_seen(self) -> Counter[str]:
        """Idempotency key -> how many well-formed pushes carried it (applied or 409)."""
        with self._lock:
            return Counter(self._s.keys_seen)

    def duplicates(self) -> int:
        """Well-formed pushes whose key had been applied already."""
        with self._lock:
            return sum(n - 1 for n in self._s.keys_seen.values())

    def latest(self) -> dict[tuple[str, str], dict[str, Any]]:
        """The most recent accepted body per (orderId, deliveryId)."""
        with self._lock:
            return {(p.body["orderId"], p.body["deliveryId"]): p.body for p in self._s.received}

    def fail_next(
        self,
        count: int,
        status: int = 503,
        retry_after: float | None = None,
        body: str | None = None,
    ) -> None:
        """Answer the next ``count`` pushes with ``status`` (and ``body``, raw, when given:
        an OMS may answer anything, control characters included)."""
        with self._lock:
            self._s.failures.extend([(status, retry_after, body)] * count)

    def set_down(self, down: bool) -> None:
        with self._lock:
            self._s.down = down

    def set_latency(self, seconds: float) -> None:
        with self._lock:
            self._s.latency = seconds

    def hold_first(self, state: str, seconds: float) -> None:
        """Hold the first push of each delivery in ``state`` for ``seconds`` before applying
        it (a slow OMS under one request), while later pushes go through at once."""
        with self._lock:
            self._s.hold_first[state] = seconds

    def hold_for(self, raw: bytes) -> float:
        """How long to hold this push (0 for all but a delivery's first in a held state)."""
        try:
            body = json.loads(raw)
            key = (str(body["orderId"]), str(body["deliveryId"]), str(body["state"]))
        except (ValueError, KeyError, TypeError):
            return 0.0
        with self._lock:
            seconds = self._s.hold_first.get(key[2], 0.0)
            if not seconds or key in self._s.held:
                return 0.0
            self._s.held.add(key)
            return seconds

    @property
    def latency(self) -> float:
        with self._lock:
            return self._s.latency

    def _forced_failure(self) -> tuple[int, str, float | None, str | None] | None:
        with self._lock:
            if self._s.down:
                return 503, "down", None, None
            if self._s.failures:
                status, retry_after, body = self._s.failures.popleft()
                return status, "injected failure", retry_after, body
            return None

    def _reject_reason(self, headers: dict[str, str], raw: bytes) -> tuple[int, str] | None:
        if self.auth_token is not None and not hmac.compare_digest(
            headers.get("authorization", ""), f"Bearer {self.auth_token}"
        ):
            return 401, "bad or missing Authorization"
        if self.signing_secret is not None:
            reason = signature_error(
                self.signing_secret, headers.get("x-signature"), raw, self.signature_tolerance
            )
            if reason is not None:
                return 401, reason
        return None

    def _decide(
        self, headers: dict[str, str], raw: bytes
    ) -> tuple[int, str, dict[str, Any] | None]:
        """(status, detail, body to apply) before the duplicate check."""
        if (rejection := self._reject_reason(headers, raw)) is not None:
            return *rejection, None
        try:
            body = json.loads(raw)
        except ValueError as exc:
            return 422, f"body is not JSON: {exc}", None
        if (error := best_match(_validator().iter_errors(body))) is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "<root>"
            return 422, f"schema violation at {where}: {error.message}", None
        if headers.get("idempotency-key") != body["idempotencyKey"]:
            return 422, "Idempotency-Key header does not match body.idempotencyKey", None
        return 200, "applied", body

    def handle(self, headers: dict[str, str], raw: bytes) -> Reply:
        """Judge one request to the delivery endpoint (``headers`` lower-cased) and record it."""
        now, wall = time.monotonic(), time.time()
        retry_after: float | None = None
        body: dict[str, Any] | None = None
        raw_reply: str | None = None
        if (forced := self._forced_failure()) is not None:
            status, detail, retry_after, raw_reply = forced
        else:
            status, detail, body = self._decide(headers, raw)
        kept = {k: v for k, v in headers.items() if k in _KEPT_HEADERS}
        with self._lock:
            if body is not None:
                key = body["idempotencyKey"]
                self._s.keys_seen[key] += 1
                if key in self._s.applied:
                    status, detail = 409, f"idempotency key {key} already applied"
                else:
                    self._s.applied.add(key)
                    self._s.received.append(Push(kept, body, now, wall))
            text = raw.decode(errors="replace")
            self._s.attempts.append(Attempt(status, kept, text, detail, now, wall))
        return Reply(status, detail, retry_after, raw_reply)


@dataclass(frozen=True)
class Reply:
    status: int
    detail: str
    retry_after: float | None = None
    #: answered as is instead of the JSON status document
    raw: str | None = None


def _delivery_endpoint(oms: SandboxOms) -> Any:
    async def endpoint(request: Request) -> Response:
        if latency := oms.latency:
            await anyio.sleep(latency)
        raw = await request.body()
        if held := oms.hold_for(raw):
            await anyio.sleep(held)
        headers = {k.lower(): v for k, v in request.headers.items()}
        reply = oms.handle(headers, raw)
        extra = {}
        if reply.retry_after is not None:
            extra["Retry-After"] = str(math.ceil(reply.retry_after))
        if reply.raw is not None:
            return Response(reply.raw, reply.status, headers=extra, media_type="text/plain")
        body = {"status": reply.status, "detail": reply.detail}
        return JSONResponse(body, reply.status, headers=extra)

    return endpoint


def _admin_routes(oms: SandboxOms) -> list[Route]:
    async def received(_: Request) -> Response:
        return JSONResponse([asdict(push) for push in oms.received])

    async def attempts(_: Request) -> Response:
        return JSONResponse([asdict(attempt) for attempt in oms.attempts])

    async def latest(_: Request) -> Response:
        return JSONResponse({f"{o}/{d}": body for (o, d), body in oms.latest().items()})

    async def faults(request: Request) -> Response:
        body = await request.json()
        count, status = int(body.get("count", 1)), int(body.get("status", 503))
        oms.fail_next(count, status, body.get("retry_after"), body.get("body"))
        return Response(status_code=204)

    async def down(request: Request) -> Response:
        oms.set_down(bool((await request.json())["down"]))
        return Response(status_code=204)

    async def latency(request: Request) -> Response:
        oms.set_latency(float((await request.json())["seconds"]))
        return Response(status_code=204)

    async def reset(_: Request) -> Response:
        oms.reset()
        return Response(status_code=204)

    return [
        Route("/_oms/received", received, methods=["GET"]),
        Route("/_oms/attempts", attempts, methods=["GET"]),
        Route("/_oms/latest", latest, methods=["GET"]),
        Route("/_oms/faults", faults, methods=["POST"]),
        Route("/_oms/down", down, methods=["POST"]),
        Route("/_oms/latency", latency, methods=["POST"]),
        Route("/_oms/reset", reset, methods=["POST"]),
    ]


def build_app(oms: SandboxOms) -> Starlette:
    """The ASGI app serving ``oms``; run it with ``sandbox.http.serve_asgi``."""
    endpoint = _delivery_endpoint(oms)
    routes = [
        *_admin_routes(oms),
        Route("/deliveries", endpoint, methods=["POST"]),
        Route("/{path:path}", endpoint, methods=["POST"]),
    ]
    return Starlette(routes=routes)
