"""Fixtures for real services: Redis, moto's SQS server, and key/queue isolation.

Redis: the one on 127.0.0.1:6379 when it answers (each test gets its own key prefix and
deletes only its own keys); otherwise a real redis-server started for the session.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator

import pytest
import redis

from sandbox.redis_server import EmbeddedRedis
from sandbox.sqs import SqsServer, create_queue_pair, sqs_client
from sandbox.stack import delete_prefix

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


def _local_redis_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.3) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    if os.environ.get("BWP_TEST_REDIS_URL"):
        yield os.environ["BWP_TEST_REDIS_URL"]
    elif _local_redis_answers():
        yield "redis://127.0.0.1:6379/0"
    else:
        with EmbeddedRedis() as server:
            yield server.url


@pytest.fixture
def key_prefix(redis_url: str) -> Iterator[str]:
    prefix = f"bwp-test-{uuid.uuid4().hex[:10]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        delete_prefix(client, prefix)
    finally:
        client.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def sqs_server() -> Iterator[SqsServer]:
    with SqsServer() as server:
        yield server


@pytest.fixture
def sqs(sqs_server: SqsServer):  # type: ignore[no-untyped-def]
    client = sqs_client(sqs_server.url)
    yield client
    client.close()


@pytest.fixture
def queues(sqs) -> Iterator[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """A fresh queue and its DLQ (redrive after 5 receives); deleted afterwards."""
    queue_url, dlq_url = create_queue_pair(sqs, f"bwp-test-{uuid.uuid4().hex[:10]}")
    yield queue_url, dlq_url
    for url in (queue_url, dlq_url):
        sqs.delete_queue(QueueUrl=url)
