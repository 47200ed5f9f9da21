"""The OAuth access token, shared by every worker through Redis (design.md section 5).

The token is stored with a TTL that ends ``refresh_margin`` seconds before the token
does, so it is refreshed shortly before expiry. One process at a time refreshes (a
``SET NX`` lock); the others wait for its result. A 401 invalidates exactly the token
that failed (compare-and-delete), forcing one refresh.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import redis

from config.settings import TOKEN_MAX_RESPONSE_BYTES
from tasks.errors import ApiUnavailable, DependencyDown, PermanentApiError
from tasks.http.circuit import TOKEN, Breaker, Circuits
from tasks.http.deadline import Deadline, bounded_request
from tasks.keys import Keys
from tasks.ledger import lua
from tasks.ledger.scripts.order_api import DELETE_IF_EQUAL, DeleteIfEqualArgs
from tasks.redis_outage import redis_outage


@dataclass(frozen=True, slots=True)
class Credentials:
    token_url: str
    client_id: str
    client_secret: str

    def __repr__(self) -> str:  # never print the secret
        return f"Credentials(token_url={self.token_url!r}, client_id={self.client_id!r})"

    def form(self) -> dict[str, str]:
        """The OAuth 2.0 client-credentials request (buy-with-prime-api.md section 5)."""
        return {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
        }


class TokenCache:
    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        http: httpx.Client,
        credentials: Credentials,
        *,
        refresh_margin: float = 120.0,
        wait: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        total_timeout: float = 30.0,
        circuits: Circuits | None = None,
        max_response_bytes: int = TOKEN_MAX_RESPONSE_BYTES,
    ) -> None:
        self._r, self._keys, self._http, self._creds = client, keys, http, credentials
        self._circuits = circuits
        self._breaker = Breaker(circuits, TOKEN)
        self._total = total_timeout
        self._max_bytes = max_response_bytes
        self._margin, self._wait = refresh_margin, wait
        self._clock, self._sleep = clock, sleep
        self._del_if_equal = lua.Runner(client, DELETE_IF_EQUAL)
        # Process-local memo of the shared token: saves a Redis round trip per call.
        self._memo: tuple[str, float] | None = None
        #: token endpoint requests made by this process (tests count them)
        self.fetches = 0

    def get(self) -> str:
        """A valid access token. Raises ApiUnavailable / DependencyDown / PermanentApiError /
        LedgerUnavailable."""
        if self._memo and self._memo[1] > self._clock():
            return self._memo[0]
        deadline = self._clock() + self._wait
        while True:
            with redis_outage():
                with self._r.pipeline(transaction=False) as pipe:
                    pipe.get(self._keys.token)
                    pipe.pttl(self._keys.token)
                    token, ttl_ms = pipe.execute()
                if token is not None and ttl_ms > 0:
                    self._memo = (token.decode(), self._clock() + ttl_ms / 1000)
                    return self._memo[0]
                lock = secrets.token_hex(8)
                if self._r.set(self._keys.token_lock, lock, nx=True, px=int(self._wait * 1000)):
                    try:
                        return self._breaker.call(self._refresh, ApiUnavailable)
                    finally:
                        self._del_if_equal(
                            DeleteIfEqualArgs(key=self._keys.token_lock, expected=lock)
                        )
            if self._circuits is not None and self._circuits.is_open(TOKEN):
                # another process is probing the token endpoint: wait as a task, not here
                raise DependencyDown(TOKEN, self._circuits.config.probe_interval)
            if self._clock() >= deadline:
                raise ApiUnavailable("timed out waiting for another process to refresh the token")
            self._sleep(0.05)

    def invalidate(self, token: str) -> None:
        """The API refused ``token``: drop it (only it) so the next get() refreshes."""
        self._memo = None
        with redis_outage():
            self._del_if_equal(DeleteIfEqualArgs(key=self._keys.token, expected=token))

    def _refresh(self) -> str:
        self.fetches += 1
        response = bounded_request(
            self._http,
            "POST",
            self._creds.token_url,
            deadline=Deadline(self._total),
            error=ApiUnavailable,
            what="token endpoint",
            max_bytes=self._max_bytes,
            data=self._creds.form(),
        )
        if response.status_code == 429 or response.status_code >= 500:
            raise ApiUnavailable(f"token endpoint answered {response.status_code}")
        if response.status_code != 200:
            # Credentials are refused: no retry can help until an operator fixes them.
            raise PermanentApiError(
                f"token endpoint refused the credentials ({response.status_code})"
            )
        try:
            payload = response.json()
            token, expires_in = str(payload["access_token"]), float(payload.get("expires_in", 900))
        except (ValueError, KeyError, TypeError) as exc:
            raise ApiUnavailable("token endpoint answered an unreadable body") from exc
        ttl = max(1.0, expires_in - min(self._margin, expires_in / 2))
        self._r.set(self._keys.token, token, px=int(ttl * 1000))
        self._memo = (token, self._clock() + ttl)
        return token
