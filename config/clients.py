"""The one client factory for the outside systems: Redis, SQS, HTTP. Built at entry points.

Long-running processes get patient clients (boto3's standard retries, redis-py's health
checks). Operator commands pass ``probe_timeout``: one attempt of at most that many
seconds and no retries, so a dead dependency answers within seconds.
"""

from __future__ import annotations

import ssl
import threading
from typing import TYPE_CHECKING

import boto3
import httpx
import redis
from botocore.config import Config
from redis.backoff import NoBackoff
from redis.retry import Retry

from config.proxies import proxy_routes

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

    from config.settings import Settings

#: URL schemes served by redis-py (and by kombu's Redis transport)
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def is_redis_url(url: str) -> bool:
    return url.startswith(REDIS_SCHEMES)


def make_redis(url: str, *, probe_timeout: float | None = None) -> redis.Redis:
    """A Redis client for ``url`` (``rediss://`` verifies TLS certificates)."""
    if probe_timeout is not None:
        # redis-py retries 10 times by default: a probe must not
        return redis.Redis.from_url(
            url,
            socket_timeout=probe_timeout,
            socket_connect_timeout=probe_timeout,
            retry=Retry(NoBackoff(), 0),
        )
    return redis.Redis.from_url(
        url,
        socket_timeout=5,
        socket_connect_timeout=3,
        health_check_interval=30,
        retry_on_timeout=False,
    )


#: the poller's own SQS calls (delete, extend, release, park) on its loop's thread: short
#: timeouts and one retry, so that a stalled SQS holds the loop at most
#: SQS_CONTROL_WORST_SECONDS, below the margin at which held messages are extended
_CONTROL = {"connect": 3.0, "read": 5.0, "attempts": 2}
#: attempts x (connect + read), plus botocore's first retry backoff (at most 1 s)
SQS_CONTROL_WORST_SECONDS = _CONTROL["attempts"] * (_CONTROL["connect"] + _CONTROL["read"]) + 1.0


def make_sqs(
    settings: Settings, *, probe_timeout: float | None = None, control: bool = False
) -> SQSClient:
    """A boto3 SQS client for the configured region and endpoint. ``control``: for the
    poller's calls on its loop's thread (see SQS_CONTROL_WORST_SECONDS)."""
    if control:
        config = Config(
            connect_timeout=_CONTROL["connect"],
            read_timeout=_CONTROL["read"],
            retries={"mode": "standard", "max_attempts": int(_CONTROL["attempts"])},
            max_pool_connections=4,
        )
    elif probe_timeout is not None:
        config = Config(
            connect_timeout=probe_timeout,
            read_timeout=probe_timeout,
            retries={"mode": "standard", "max_attempts": 1},
        )
    else:
        config = Config(
            retries={"mode": "standard", "max_attempts": 3},
            max_pool_connections=16,
            connect_timeout=5,
            # long polls hold the connection up to 20 s
            read_timeout=settings.sqs_wait_time_seconds + 10,
        )
    return boto3.client(
        "sqs",
        region_name=settings.aws_region,
        endpoint_url=settings.aws_endpoint_url,
        config=config,
    )


def make_http(
    settings: Settings | None = None, *, probe_timeout: float | None = None
) -> httpx.Client:
    """One pooled HTTP client per process; TLS verification stays on.

    HTTPS_PROXY, HTTP_PROXY and NO_PROXY (from ``settings``) route every request, the
    worker's per-thread pools included (config/proxies.py); loopback is always direct.
    Without ``settings`` httpx reads the proxy variables itself.
    """
    if settings is None:
        return httpx.Client(timeout=httpx.Timeout(probe_timeout or 5.0), verify=True)
    tls = httpx.create_ssl_context()
    routes = proxy_routes(settings.http_proxy, settings.https_proxy, settings.no_proxy)
    if probe_timeout is not None:
        return httpx.Client(
            timeout=httpx.Timeout(probe_timeout),
            verify=tls,
            trust_env=False,  # the routes below are the environment's, read once
            mounts={
                pattern: None if proxy is None else httpx.HTTPTransport(verify=tls, proxy=proxy)
                for pattern, proxy in routes.items()
            },
        )
    return httpx.Client(
        timeout=httpx.Timeout(settings.http_timeout_seconds),
        transport=PerThreadTransport(tls),
        mounts={
            pattern: None if proxy is None else PerThreadTransport(tls, proxy=proxy)
            for pattern, proxy in routes.items()
        },
    )


class PerThreadTransport(httpx.BaseTransport):
    """A connection pool per thread behind one shared ``httpx.Client`` (one TLS context,
    certificates verified). httpcore's pool walks all its connections, with a socket poll
    per idle one, on every request and every response close; shared by 16 worker threads
    it walked 16. A thread's own pool holds a connection or two per host.

    ``proxy``: every pool of this transport goes through that proxy (the client mounts
    one such transport per proxy route; passing a transport turns off httpx's own
    reading of the proxy variables).
    """

    def __init__(self, tls: ssl.SSLContext | None = None, *, proxy: str | None = None) -> None:
        self._tls = tls or httpx.create_ssl_context()
        self._proxy = proxy
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[httpx.HTTPTransport] = []

    def _mine(self) -> httpx.HTTPTransport:
        transport: httpx.HTTPTransport | None = getattr(self._local, "transport", None)
        if transport is None:
            limits = httpx.Limits(max_keepalive_connections=4, max_connections=8)
            transport = httpx.HTTPTransport(verify=self._tls, limits=limits, proxy=self._proxy)
            self._local.transport = transport
            with self._lock:
                self._all.append(transport)
        return transport

    @property
    def pools(self) -> int:
        """How many threads have a pool (tests count them)."""
        with self._lock:
            return len(self._all)

    @property
    def tls(self) -> ssl.SSLContext:
        return self._tls

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._mine().handle_request(request)

    def close(self) -> None:
        with self._lock:
            transports, self._all = self._all, []
        for transport in transports:
            transport.close()


def queue_name(url: str) -> str:
    """The queue name at the end of an SQS queue URL."""
    return url.rstrip("/").rsplit("/", 1)[-1]
