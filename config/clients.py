"""Client factories for the outside systems: Redis, SQS, HTTP. Built at entry points."""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3
import httpx
import redis
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

    from config.settings import Settings


def make_redis(url: str) -> redis.Redis:
    """A Redis client for ``url`` (``rediss://`` verifies TLS certificates)."""
    return redis.Redis.from_url(
        url,
        socket_timeout=5,
        socket_connect_timeout=3,
        health_check_interval=30,
        retry_on_timeout=False,
    )


def make_sqs(settings: Settings) -> SQSClient:
    """A boto3 SQS client for the configured region and endpoint."""
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


def make_http(settings: Settings) -> httpx.Client:
    """One pooled HTTP client per process; TLS verification stays on."""
    return httpx.Client(
        timeout=httpx.Timeout(settings.http_timeout_seconds),
        limits=httpx.Limits(max_keepalive_connections=20, max_connections=50),
        verify=True,
    )
