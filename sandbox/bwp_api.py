"""A Buy with Prime order API stand-in: OAuth token endpoint, GraphQL endpoint, admin surface.

HTTP paths (``build_app``):

- ``POST /token`` — client credentials (form-encoded ``grant_type=client_credentials``,
  ``client_id``, ``client_secret``; HTTP Basic also accepted) → ``{"access_token",
  "token_type": "Bearer", "expires_in"}``; wrong credentials → 401 ``invalid_client``.
- ``POST /graphql`` — checks, in order: latency, bearer token (401 ``UnauthorizedError``),
  ``x-api-version`` (400), JSON body, GraphQL parse and validation (400
  ``ValidationError``), then one injected fault per order query, then execution with
  ``x-api-target-id`` checked against the order's business product id (HTTP 200
  ``AccessDeniedError``; unknown order HTTP 200 ``ResourceNotFoundError``). Credentials
  without the package-tracker permission (``tracker_permission=False``) get HTTP 200
  ``AccessDeniedError`` on ``order`` for any query that selects ``packageTracker`` (the
  case the docs leave open: Read Order alone may not reach the tracker fields). Error
  entries carry ``classification {type errorType errorCode}`` with documented names
  (``sandbox.bwp_errors``).
- ``GET /_sandbox/stats``; ``POST /_sandbox/faults`` ``{"kind", "count", "retry_after"}``;
  ``POST /_sandbox/down`` ``{"graphql": bool, "token": bool}`` (HTTP 503 from the
  endpoint until set back: an outage, as opposed to a counted fault);
  ``POST /_sandbox/permissions`` ``{"packageTracker": bool}``;
  ``POST /_sandbox/clear-faults``; ``POST /_sandbox/latency`` ``{"seconds"}``;
  ``POST /_sandbox/invalidate-tokens``; ``POST /_sandbox/orders`` ``{"orderId",
  "businessProductId", "lineItems": [{"id", "quantity", "deliveryId"}]}``;
  ``POST /_sandbox/move`` ``{"orderId", "deliveryId", "state", "reason", "trackingNumber",
  "carrierCode", "trackingUrl", "milestone", "estimatedEarliest", "estimatedLatest",
  "split": {"lineItemId", "units", "toDeliveryId"}}`` (``split`` first moves units of a
  line item from the delivery to another, created PENDING when new; a new milestone on
  a tracked delivery publishes PACKAGE_TRACKER_MILESTONE_CHANGED).

Schemas, data shapes and mutations: see ``sandbox.bwp_schema``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
import secrets
import threading
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass
from typing import Any, Final
from urllib.parse import parse_qs

import anyio
from graphql import (
    FieldNode,
    GraphQLError,
    OperationDefinitionNode,
    OperationType,
    execute_sync,
    parse,
    validate,
)
from graphql.language import DocumentNode
from graphql.utilities import value_from_ast_untyped
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.bwp_errors import UNAUTHORIZED, classification, error_entry
from sandbox.bwp_schema import GENERATIONS, ROOT, Context, schema_for
from sandbox.bwp_store import Delivery, OrderStore
from sandbox.publisher import MilestonePublisher, Publisher

FAULT_KINDS: Final = frozenset(
    {
        "throttle",
        "http429",
        "http503",
        "internal",
        "not_found",
        "validation",
        "access_denied",
        "conflict",
    }
)
#: faults answered as HTTP 200 with an errors[] entry on the order field
_IN_BAND: Final = frozenset({"throttle", "internal", "not_found", "access_denied", "conflict"})


@dataclass(frozen=True)
class Fault:
    kind: str
    retry_after: float | None = None


class SandboxApi:
    """The API's state: orders, credentials, tokens, counters, faults, latency.

    Thread-safe: the server thread and the test (or demo) thread both use it.
    """

    def __init__(
        self,
        store: OrderStore | None = None,
        *,
        client_id: str = "sandbox-client",
        client_secret: str = "sandbox-secret",  # noqa: S107
        token_ttl: float = 900.0,
        publisher: Publisher | None = None,
        milestone_publisher: MilestonePublisher | None = None,
    ) -> None:
        self.store = store if store is not None else OrderStore()
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_ttl = token_ttl
        self.publisher = publisher
        self.milestone_publisher = milestone_publisher
        self._lock = threading.Lock()
        # Serialises moves so that two concurrent moves cannot both see the old state and
        # publish the same transition twice; separate from _lock as publishing is slow.
        self._move_lock = threading.Lock()
        self._tokens: dict[str, float] = {}
        self._faults: deque[Fault] = deque()
        self._latency = 0.0
        self._down: set[str] = set()
        self._counts: Counter[str] = Counter()
        self._by_order: Counter[str] = Counter()
        #: the credentials hold the package-tracker permission (View Package Tracker Data)
        self.tracker_permission = True

    # tokens
    def issue_token(self, client_id: str, client_secret: str) -> str | None:
        """A fresh access token, or None for wrong credentials."""
        ok = secrets.compare_digest(client_id, self.client_id) and secrets.compare_digest(
            client_secret, self.client_secret
        )
        if not ok:
            return None
        token = secrets.token_urlsafe(24)
        now = time.monotonic()
        with self._lock:
            self._tokens = {t: exp for t, exp in self._tokens.items() if exp > now}
            self._tokens[token] = now + self.token_ttl
        return token

    def token_valid(self, token: str | None) -> bool:
        with self._lock:
            expiry = self._tokens.get(token or "")
        return expiry is not None and expiry > time.monotonic()

    def invalidate_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    # faults and latency
    def inject(self, kind: str, count: int = 1, retry_after: float | None = None) -> None:
        """Queue ``count`` faults of ``kind``; each order query consumes one, in order."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)}")
        with self._lock:
            self._faults.extend([Fault(kind, retry_after)] * count)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def set_latency(self, seconds: float) -> None:
        with self._lock:
            self._latency = seconds

    def set_down(self, *, graphql: bool | None = None, token: bool | None = None) -> None:
        """Answer HTTP 503 from the GraphQL and/or the token endpoint until set back."""
        with self._lock:
            for name, down in (("graphql", graphql), ("token", token)):
                if down is True:
                    self._down.add(name)
                elif down is False:
                    self._down.discard(name)

    def is_down(self, endpoint: str) -> bool:
        with self._lock:
            return endpoint in self._down

    @property
    def latency(self) -> float:
        with self._lock:
            return self._latency

    # counters
    def count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def record_order_query(self, order_id: str | None) -> Fault | None:
        """Count an order query and take the next injected fault, if any."""
        with self._lock:
            self._counts["order_queries"] += 1
            self._by_order[order_id or ""] += 1
            return self._faults.popleft() if self._faults else None

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "token_requests": self._counts["token_requests"],
                "graphql_requests": self._counts["graphql_requests"],
                "order_queries": self._counts["order_queries"],
                "order_queries_by_order": dict(self._by_order),
                "mutations": self._counts["mutations"],
                "tracker_denied": self._counts["tracker_denied"],
                "faults_pending": len(self._faults),
            }

    # deliveries
    def move(
        self, order_id: str, delivery_id: str, state: str | None, **changes: str | None
    ) -> Delivery:
        """Update a delivery (``changes``: OrderStore.update_delivery's fields); when its
        state changed, publish the events announcing it; when its milestone changed on a
        tracked delivery, publish PACKAGE_TRACKER_MILESTONE_CHANGED.

        Raises KeyError for an unknown order or delivery, ValueError for a bad value,
        TypeError for an unknown field.
        """
        with self._move_lock:
            before = self.store.delivery(order_id, delivery_id)
            after = self.store.update_delivery(order_id, delivery_id, state=state, **changes)
            order = self.store.get_order(order_id)
            if order is None:
                return after
            if self.publisher is not None and after.state != before.state:
                self.publisher(order.business_product_id, order_id, delivery_id, after.state)
            carrier, number = after.carrier_code, after.tracking_number
            if (
                self.milestone_publisher is not None
                and carrier is not None
                and number is not None
                and after.milestone != before.milestone
            ):
                self.milestone_publisher(order.business_product_id, carrier, number)
            return after


def _errors(status: int, kind: str, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"errors": [error_entry(kind, message)]}, status, headers=headers)


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def _client_credentials(request: Request, form: dict[str, str]) -> tuple[str, str]:
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return "", ""
        return user, password
    return form.get("client_id", ""), form.get("client_secret", "")


def _operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    for node in document.definitions:
        if isinstance(node, OperationDefinitionNode) and (
            name is None or (node.name is not None and node.name.value == name)
        ):
            return node
    return None


def _order_field(operation: OperationDefinitionNode | None) -> FieldNode | None:
    if operation is None or operation.operation is not OperationType.QUERY:
        return None
    for selection in operation.selection_set.selections:
        if isinstance(selection, FieldNode) and selection.name.value == "order":
            return selection
    return None


def _order_id(field: FieldNode, variables: dict[str, Any] | None) -> str | None:
    for argument in field.arguments or ():
        if argument.name.value == "orderIdentifier":
            value = value_from_ast_untyped(argument.value, variables)
            if isinstance(value, dict) and value.get("orderId") is not None:
                return str(value["orderId"])
    return None


def _selects(node: Any, name: str) -> bool:
    """Some field under ``node``'s selection set (fragments aside) is called ``name``."""
    selection_set = getattr(node, "selection_set", None)
    for selection in selection_set.selections if selection_set else ():
        if isinstance(selection, FieldNode) and selection.name.value == name:
            return True
        if _selects(selection, name):
            return True
    return False


def _tracker_denied(field: FieldNode) -> Response:
    key = field.alias.value if field.alias is not None else field.name.value
    message = "Access denied: packageTracker needs the View Package Tracker Data permission"
    entry = error_entry("access_denied", message, [key])
    return JSONResponse({"errors": [entry], "data": {key: None}})


def _fault_response(fault: Fault, field: FieldNode) -> Response:
    key = field.alias.value if field.alias is not None else field.name.value
    if fault.kind in _IN_BAND:
        entry = error_entry(fault.kind, f"Injected {fault.kind} fault", [key])
        return JSONResponse({"errors": [entry], "data": {key: None}})
    headers = {}
    if fault.retry_after is not None:
        headers["Retry-After"] = str(math.ceil(fault.retry_after))
    if fault.kind == "http429":
        headers.setdefault("Retry-After", "1")
        return _errors(429, "throttle", "Rate exceeded", **headers)
    if fault.kind == "http503":
        return JSONResponse({"message": "Service Unavailable"}, 503, headers=headers)
    return _errors(400, "validation", "Injected validation fault")


def _validation_failure(errors: list[GraphQLError]) -> JSONResponse:
    entries = [{**error.formatted, "extensions": classification("validation")} for error in errors]
    return JSONResponse({"errors": entries}, 400)


def _read_request(payload: Any) -> tuple[str, dict[str, Any] | None, str | None]:
    """(query, variables, operationName) of a GraphQL POST body; ValueError when malformed."""
    if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
        raise ValueError("body must be a JSON object with a string 'query'")
    variables, name = payload.get("variables"), payload.get("operationName")
    if variables is not None and not isinstance(variables, dict):
        raise ValueError("'variables' must be an object")
    if name is not None and not isinstance(name, str):
        raise ValueError("'operationName' must be a string")
    return payload["query"], variables, name


@dataclass(frozen=True)
class _Prepared:
    generation: str
    document: DocumentNode
    variables: dict[str, Any] | None
    operation_name: str | None


async def _prepare(api: SandboxApi, request: Request) -> _Prepared | Response:
    """The validated GraphQL request, or the error response refusing it."""
    if not api.token_valid(_bearer(request)):
        return JSONResponse(UNAUTHORIZED, 401)
    version = request.headers.get("x-api-version", "")
    if version not in GENERATIONS:
        return _errors(400, "validation", f"Unsupported x-api-version {version!r}")
    try:
        query, variables, name = _read_request(json.loads(await request.body()))
        document, errors = _checked(GENERATIONS[version], query)
    except (ValueError, GraphQLError) as exc:
        return _errors(400, "validation", f"Malformed request: {exc}")
    if errors:
        return _validation_failure(errors)
    return _Prepared(GENERATIONS[version], document, variables, name)


@functools.lru_cache(maxsize=256)
def _checked(generation: str, query: str) -> tuple[DocumentNode, list[GraphQLError]]:
    """Parse and validate a query once per text: the worker sends one text per version,
    and re-validating it cost ~2 ms of the sandbox's CPU per request under load."""
    document = parse(query)
    return document, validate(schema_for(generation), document)


def _graphql_endpoint(api: SandboxApi) -> Any:
    async def endpoint(request: Request) -> Response:
        api.count("graphql_requests")
        if api.is_down("graphql"):
            return _errors(503, "InternalServerError", "service unavailable")
        if latency := api.latency:
            await anyio.sleep(latency)
        prepared = await _prepare(api, request)
        if isinstance(prepared, Response):
            return prepared
        operation = _operation(prepared.document, prepared.operation_name)
        if operation is not None and operation.operation is OperationType.MUTATION:
            api.count("mutations")
        if (field := _order_field(operation)) is not None:
            if fault := api.record_order_query(_order_id(field, prepared.variables)):
                return _fault_response(fault, field)
            if not api.tracker_permission and _selects(field, "packageTracker"):
                api.count("tracker_denied")
                return _tracker_denied(field)
        context = Context(api, prepared.generation, request.headers.get("x-api-target-id"))
        result = execute_sync(
            schema_for(prepared.generation),
            prepared.document,
            ROOT,
            context,
            prepared.variables,
            prepared.operation_name,
        )
        if result.data is None and result.errors:
            return _validation_failure(list(result.errors))
        return JSONResponse(result.formatted)

    return endpoint


def _token_endpoint(api: SandboxApi) -> Any:
    async def endpoint(request: Request) -> Response:
        api.count("token_requests")
        if api.is_down("token"):
            return JSONResponse({"error": "temporarily_unavailable"}, 503)
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, 400)
        token = api.issue_token(*_client_credentials(request, form))
        if token is None:
            return JSONResponse({"error": "invalid_client"}, 401)
        body = {"access_token": token, "token_type": "Bearer", "expires_in": int(api.token_ttl)}
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    return endpoint


_MOVE_FIELDS: Final = {
    "reason": "reason",
    "tracking_number": "trackingNumber",
    "carrier_code": "carrierCode",
    "tracking_url": "trackingUrl",
    "milestone": "milestone",
    "estimated_earliest": "estimatedEarliest",
    "estimated_latest": "estimatedLatest",
}


def _admin_move(api: SandboxApi, body: dict[str, Any]) -> Delivery:
    """``/_sandbox/move``: split units first when asked, then move the delivery."""
    if (split := body.get("split")) is not None:
        api.store.split(
            body["orderId"],
            split["lineItemId"],
            body["deliveryId"],
            split["toDeliveryId"],
            int(split["units"]),
        )
    options = {name: body.get(key) for name, key in _MOVE_FIELDS.items()}
    return api.move(body["orderId"], body["deliveryId"], body.get("state"), **options)


def _permissions_route(api: SandboxApi) -> Route:
    """``POST /_sandbox/permissions {"packageTracker": bool}``: grant or revoke it."""

    async def permissions(request: Request) -> Response:
        api.tracker_permission = bool((await request.json())["packageTracker"])
        return Response(status_code=204)

    return Route("/_sandbox/permissions", permissions, methods=["POST"])


def _admin_routes(api: SandboxApi) -> list[Route]:
    async def stats(_: Request) -> Response:
        return JSONResponse(api.stats())

    async def faults(request: Request) -> Response:
        body = await request.json()
        api.inject(body["kind"], int(body.get("count", 1)), body.get("retry_after"))
        return JSONResponse(api.stats())

    async def clear_faults(_: Request) -> Response:
        api.clear_faults()
        return Response(status_code=204)

    async def latency(request: Request) -> Response:
        api.set_latency(float((await request.json())["seconds"]))
        return Response(status_code=204)

    async def invalidate(_: Request) -> Response:
        api.invalidate_tokens()
        return Response(status_code=204)

    async def orders(request: Request) -> Response:
        body = await request.json()
        items = [(i["id"], i.get("quantity"), i["deliveryId"]) for i in body["lineItems"]]
        order = api.store.add_order(body["orderId"], body["businessProductId"], items)
        return JSONResponse(asdict(order), 201)

    async def move(request: Request) -> Response:
        body = await request.json()
        try:
            delivery = _admin_move(api, body)
        except KeyError as exc:
            return JSONResponse({"error": f"unknown {exc}"}, 404)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        return JSONResponse(asdict(delivery))

    return [
        Route("/_sandbox/stats", stats, methods=["GET"]),
        Route("/_sandbox/faults", faults, methods=["POST"]),
        Route("/_sandbox/clear-faults", clear_faults, methods=["POST"]),
        Route("/_sandbox/latency", latency, methods=["POST"]),
        Route("/_sandbox/invalidate-tokens", invalidate, methods=["POST"]),
        _down_route(api),
        _permissions_route(api),
        Route("/_sandbox/orders", orders, methods=["POST"]),
        Route("/_sandbox/move", move, methods=["POST"]),
    ]


def _down_route(api: SandboxApi) -> Route:
    async def down(request: Request) -> Response:
        body = await request.json()
        api.set_down(graphql=body.get("graphql"), token=body.get("token"))
        return Response(status_code=204)

    return Route("/_sandbox/down", down, methods=["POST"])


def build_app(api: SandboxApi) -> Starlette:
    """The ASGI app serving ``api``; run it with ``sandbox.http.serve_asgi``."""
    routes = [
        Route("/token", _token_endpoint(api), methods=["POST"]),
        Route("/graphql", _graphql_endpoint(api), methods=["POST"]),
        *_admin_routes(api),
    ]
    return Starlette(routes=routes)
