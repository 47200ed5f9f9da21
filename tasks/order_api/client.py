"""The Buy with Prime order API client: one POST per order query, errors classified.

Classification follows the contract ("Outages and errors"): both the HTTP status and
``errors[].extensions.classification.type`` decide, since the API may answer errors with
HTTP 200. The documented ``errorCode`` values are names (``ResourceNotFoundException``,
``PackageTrackerNotAvailableForUpdate``, "N/A"), not HTTP numbers: a code is only read
when an entry has no classification type the worker knows, and a code it does not know
is ignored. Transient errors are retried inside the call (tenacity); the rest is raised
for the task to retry later or park.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final, Protocol

import httpx

from config.settings import API_MAX_RESPONSE_BYTES
from tasks.errors import ApiAccessDenied, ApiUnavailable, OrderNotVisibleYet, PermanentApiError
from tasks.http.circuit import API, Breaker, Circuits
from tasks.http.deadline import Deadline, bounded_request
from tasks.http.retry import call_with_retries, retry_after_header
from tasks.order_api.queries import order_request

#: the classification types of the public docs
KNOWN_TYPES: Final = frozenset(
    {
        "AccessDeniedError",
        "ConflictError",
        "InternalServerError",
        "ResourceNotFoundError",
        "ThrottlingError",
        "ValidationError",
    }
)
#: documented ``errorType`` / ``errorCode`` names → the classification type they belong to,
#: for an entry whose ``classification.type`` is missing or unknown
_BY_NAME: Final = {
    "AccessDeniedException": "AccessDeniedError",
    "ConflictException": "ConflictError",
    "AliasValueAlreadyExists": "ConflictError",
    "PackageTrackerNotAvailableForUpdate": "ConflictError",
    "InternalServerException": "InternalServerError",
    "ResourceNotFoundException": "ResourceNotFoundError",
    "ThrottlingException": "ThrottlingError",
    "ValidationException": "ValidationError",
}
_TYPE_NAME: Final = re.compile(r"[A-Za-z]{1,64}")


class Tokens(Protocol):
    def get(self) -> str: ...
    def invalidate(self, token: str) -> None: ...


class _Unauthorized(Exception):
    pass


def _error_types(payload: dict[str, Any]) -> list[str]:
    errors = payload.get("errors")
    if not errors:
        return []
    if not isinstance(errors, list):
        errors = [errors]
    return [_error_type(error) for error in errors]


def _error_type(error: Any) -> str:
    """An entry's classification type; else the type its documented ``errorType`` or
    ``errorCode`` name belongs to; else its own (plain-name) type; else "Unknown"."""
    ext = error.get("extensions") if isinstance(error, dict) else None
    ext = ext if isinstance(ext, dict) else {}
    classification = ext.get("classification")
    classification = classification if isinstance(classification, dict) else {}
    kind = classification.get("type")
    if kind in KNOWN_TYPES:
        return str(kind)
    for holder in (classification, ext):
        for field in ("errorType", "errorCode"):
            name = holder.get(field)
            if isinstance(name, str) and name in _BY_NAME:
                return _BY_NAME[name]
    # Only a plain name is echoed into errors and logs; anything else is "Unknown".
    return kind if isinstance(kind, str) and _TYPE_NAME.fullmatch(kind) else "Unknown"


def classify(response: httpx.Response) -> dict[str, Any]:
    """The ``order`` object of a response, or the error it stands for.

    Raises ApiUnavailable (retry soon), OrderNotVisibleYet (retry a few times),
    PermanentApiError (park), or _Unauthorized (refresh the token once).
    """
    status = response.status_code
    if status == 401:
        raise _Unauthorized
    if status == 429 or status >= 500:
        raise ApiUnavailable(
            f"order API answered HTTP {status}", retry_after=retry_after_header(response)
        )
    try:
        payload = response.json()
    except ValueError as exc:
        if status >= 400:  # a gateway's HTML refusal is still a refusal
            _raise_for(status, [], response)
        raise ApiUnavailable(f"order API answered HTTP {status} with a non-JSON body") from exc
    if not isinstance(payload, dict):
        if status >= 400:
            _raise_for(status, [], response)
        raise ApiUnavailable(f"order API answered HTTP {status} with an unexpected body")
    types = _error_types(payload)
    if status >= 400 or types:
        _raise_for(status, types, response)
    data = payload.get("data")
    order = data.get("order") if isinstance(data, dict) else None
    if not isinstance(order, dict):
        raise OrderNotVisibleYet("order API returned no order")
    return order


def _raise_for(status: int, types: list[str], response: httpx.Response) -> None:
    described = ",".join(types) or "no classification"
    if "AccessDeniedError" in types or status == 403:
        raise ApiAccessDenied(f"order API denied access: HTTP {status}, {described}")
    if "ValidationError" in types or status == 400:
        raise PermanentApiError(f"order API refused the query: HTTP {status}, {described}")
    if "ResourceNotFoundError" in types or status == 404:
        raise OrderNotVisibleYet(f"order API: not found (HTTP {status})")
    if status >= 400 and not types:
        raise PermanentApiError(f"order API answered HTTP {status}")
    raise ApiUnavailable(
        f"order API error: HTTP {status}, {described}", retry_after=retry_after_header(response)
    )


class OrderApi:
    def __init__(
        self,
        http: httpx.Client,
        tokens: Tokens,
        *,
        url: str,
        api_version: str,
        target_id: str | None,
        attempts: int,
        before_call: Callable[[], None] = lambda: None,
        total_timeout: float = 30.0,
        circuits: Circuits | None = None,
        max_response_bytes: int = API_MAX_RESPONSE_BYTES,
    ) -> None:
        self._http, self._tokens = http, tokens
        self._breaker = Breaker(circuits, API)
        self._url, self._version, self._target = url, api_version, target_id
        self._attempts = attempts
        self._before_call = before_call
        self._total = total_timeout
        self._max_bytes = max_response_bytes
        #: order queries sent by this client (tests count them)
        self.calls = 0

    def reserve(self) -> None:
        """Take one call's rate-limit slot and make sure of the token now, so that a
        caller can wait for them before it takes a lock (then ``reserved=True``)."""
        self._tokens.get()
        self._before_call()

    def fetch_order(
        self,
        business_product_id: str,
        order_id: str,
        *,
        deadline: Deadline | None = None,
        reserved: bool = False,
        tracker: bool = True,
    ) -> dict[str, Any]:
        """The ``order`` object for ``order_id``; raises per ``classify``.

        Each request ends within the total timeout, and by ``deadline`` when given
        (ApiUnavailable when it passes). ``reserved``: the first call's rate-limit slot
        was taken by ``reserve``. ``tracker=False``: without the package-tracker fields.
        """
        task = deadline or Deadline()
        slots = [reserved]  # the first attempt may use the reserved slot
        return call_with_retries(
            lambda: self._fetch(business_product_id, order_id, task, slots, tracker),
            attempts=self._attempts,
        )

    def _fetch(
        self,
        business_product_id: str,
        order_id: str,
        task: Deadline,
        slots: list[bool],
        tracker: bool,
    ) -> dict[str, Any]:
        try:
            return self._query(business_product_id, order_id, task, slots, tracker)
        except _Unauthorized:
            pass
        # 401: the shared token was revoked or expired early. Refresh once, try once.
        try:
            return self._query(business_product_id, order_id, task, slots, tracker, refresh=True)
        except _Unauthorized:
            raise PermanentApiError("order API refused a freshly issued token (HTTP 401)") from None

    def _query(
        self,
        business_product_id: str,
        order_id: str,
        task: Deadline,
        slots: list[bool],
        tracker: bool,
        refresh: bool = False,
    ) -> dict[str, Any]:
        """One attempt: the token (its own circuit), then the query through the API's."""
        token = self._tokens.get()
        if refresh:
            self._tokens.invalidate(token)
            token = self._tokens.get()
        return self._breaker.call(
            lambda: classify(
                self._post(token, business_product_id, order_id, task, slots, tracker)
            ),
            ApiUnavailable,
        )

    def _post(
        self,
        token: str,
        business_product_id: str,
        order_id: str,
        task: Deadline,
        slots: list[bool],
        tracker: bool,
    ) -> httpx.Response:
        if slots[0]:
            slots[0] = False
        else:
            self._before_call()
        self.calls += 1
        headers = {
            "Authorization": f"Bearer {token}",
            "x-api-version": self._version,
            "x-api-target-id": self._target or business_product_id,
        }
        return bounded_request(
            self._http,
            "POST",
            self._url,
            deadline=task.within(self._total),
            error=ApiUnavailable,
            what="order API",
            max_bytes=self._max_bytes,
            json=order_request(self._version, order_id, tracker=tracker),
            headers=headers,
        )
