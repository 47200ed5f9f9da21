"""POST delivery updates to the merchant's OMS, response handling per the contract.

2xx = applied; 409 = already applied; 408, 425, 429, 5xx, timeouts and connection errors
= retry (Retry-After honoured); any other 4xx = PermanentOmsError with status and excerpt.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from config.secrets import Redactor
from config.settings import OMS_MAX_RESPONSE_BYTES
from tasks.errors import DeliveryBusy, OmsUnavailable, PermanentOmsError
from tasks.http.circuit import OMS, Breaker, Circuits
from tasks.http.deadline import Deadline, bounded_request
from tasks.http.retry import call_with_retries, retry_after_header
from tasks.oms.payload import encode, signature

_RETRY_STATUSES = frozenset({408, 425, 429})
_EXCERPT = 200


class OmsClient:
    def __init__(
        self,
        http: httpx.Client,
        *,
        url: str,
        signing_secret: str | None,
        auth_token: str | None,
        attempts: int,
        clock: Callable[[], float] = time.time,
        total_timeout: float = 30.0,
        circuits: Circuits | None = None,
        previous_signing_secret: str | None = None,
        max_response_bytes: int = OMS_MAX_RESPONSE_BYTES,
    ) -> None:
        self._http, self._url = http, url
        self._breaker = Breaker(circuits, OMS)
        self._total = total_timeout
        self._secret, self._token = signing_secret, auth_token
        #: the secret being retired: a second ``v1=`` while the OMS may still know only it
        self._previous = previous_signing_secret
        self._max_bytes = max_response_bytes
        self._attempts, self._clock = attempts, clock
        #: POSTs sent by this client, failed attempts included (tests count them)
        self.requests = 0

    def push(
        self,
        body: dict[str, Any],
        *,
        deadline: Deadline | None = None,
        still_held: Callable[[], bool] | None = None,
    ) -> int:
        """Deliver one update; returns the final HTTP status (2xx or 409).

        Every attempt carries the same Idempotency-Key, and goes out only while
        ``still_held()`` (the delivery's lock is still the caller's): a retry after the
        lock was lost could land an older snapshot after a newer one. Raises DeliveryBusy
        then, DependencyDown while the OMS's circuit is open, OmsUnavailable when the
        in-call attempts ran out (or ``deadline`` / the total timeout passed),
        PermanentOmsError on a refusal.
        """
        raw = encode(body)
        task = deadline or Deadline()
        key = body["idempotencyKey"]

        def attempt() -> int:
            if still_held is not None and not still_held():
                raise DeliveryBusy("the delivery's lock was lost before a push attempt")
            return self._breaker.call(lambda: self._attempt(raw, key, task), OmsUnavailable)

        return call_with_retries(attempt, attempts=self._attempts)

    def _attempt(self, raw: bytes, key: str, task: Deadline) -> int:
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        if self._secret:
            headers["X-Signature"] = signature(
                self._secret, int(self._clock()), raw, self._previous
            )
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        self.requests += 1
        response = bounded_request(
            self._http,
            "POST",
            self._url,
            deadline=task.within(self._total),
            error=OmsUnavailable,
            what="OMS",
            max_bytes=self._max_bytes,
            content=raw,
            headers=headers,
        )
        status = response.status_code
        if 200 <= status < 300 or status == 409:
            return status
        if status in _RETRY_STATUSES or status >= 500:
            raise OmsUnavailable(
                f"OMS answered HTTP {status}", retry_after=retry_after_header(response)
            )
        raise PermanentOmsError(f"OMS answered HTTP {status}: {self._excerpt(response.text)}")

    def _excerpt(self, text: str) -> str:
        """A one-line start of a refusal body, with our own secrets cut out (an OMS may
        echo the request's headers; the excerpt travels on to the DLQ)."""
        known = (self._token, self._secret, self._previous)
        text = Redactor(s for s in known if s).scrub_text(text)
        return " ".join(text[:_EXCERPT].split())
