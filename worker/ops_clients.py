"""Clients for operator commands: short timeouts and no retries, so a dead dependency
answers within seconds instead of after the long-running processes' patient retries.

``redact`` keeps configured secrets (and passwords inside Redis URLs) out of anything
the commands print.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import boto3
import httpx
import redis
from botocore.config import Config
from redis.backoff import NoBackoff
from redis.retry import Retry

from config.logging import Redactor
from config.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


def probe_sqs(settings: Settings, timeout: float) -> SQSClient:
    """An SQS client that gives up after one attempt of at most ``timeout`` seconds."""
    config = Config(
        connect_timeout=timeout,
        read_timeout=timeout,
        retries={"mode": "standard", "max_attempts": 1},
    )
    return boto3.client(
        "sqs",
        region_name=settings.aws_region,
        endpoint_url=settings.aws_endpoint_url,
        config=config,
    )


def probe_redis(url: str, timeout: float) -> redis.Redis:
    """A Redis client for ``url`` that does not retry (redis-py retries 10 times by default)."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


def probe_http(timeout: float) -> httpx.Client:
    """An HTTP client with one overall ``timeout``; TLS verification stays on."""
    return httpx.Client(timeout=httpx.Timeout(timeout), verify=True)


def queue_name(url: str) -> str:
    """The queue name at the end of an SQS queue URL."""
    return url.rstrip("/").rsplit("/", 1)[-1]


def url_passwords(urls: Iterable[str | None]) -> list[str]:
    """The passwords embedded in ``urls`` (``redis://:pw@host``), for redaction."""
    found = []
    for url in urls:
        if url:
            password = urlsplit(url).password
            if password:
                found.append(password)
    return found


def redactor(settings: Settings) -> Redactor:
    """Redacts every configured secret, Redis and broker URL passwords included."""
    urls = (settings.redis_url, settings.celery_broker_url)
    return Redactor([*settings.secrets(), *url_passwords(urls)])


def redact(text: str, scrubber: Redactor) -> str:
    """``text`` with every secret ``scrubber`` knows replaced."""
    # Redactor is the logging processor; reusing it keeps one definition of "secret".
    return str(scrubber(None, "", {"text": text})["text"])
