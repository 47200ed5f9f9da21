"""The poller as its process runs it (worker/poller/runner.py), against real Redis and the
sandbox SQS: whatever it opened is closed when it stops.

Connections are counted from this process's own sockets (/proc/self) and, for Redis, from
the server's CLIENT LIST: the poller's connections are those this process opened while
it ran (other tests may share the server). Garbage collection is off while the poller
runs and is counted, so that an unclosed client cannot hide by being collected.
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from config.settings import Settings
from sandbox.sqs import SqsServer
from sandbox.stack import delete_prefix
from tasks.events.samples import to_body
from tests.integration.test_poller import delivered
from worker.poller.runner import run_poller


def own_connections(port: int) -> set[int]:
    """Local ports of this process's open TCP sockets to ``port`` on any address."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == port:
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


def server_side(client: redis.Redis, ports: set[int]) -> list[str]:
    """CLIENT LIST entries (their ``addr``) for connections from those local ports."""
    return [
        str(entry["addr"])
        for entry in client.client_list()
        if int(str(entry["addr"]).rsplit(":", 1)[1]) in ports
    ]


class Watch:
    """This process's connections to ``port`` opened since the watch began, sampled from a
    thread while the poller runs (the poller keeps its pooled connections open)."""

    def __init__(self, port: int) -> None:
        self.port, self.before = port, own_connections(port)
        self.seen: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.seen |= own_connections(self.port) - self.before

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def left_open(self) -> set[int]:
        return own_connections(self.port) - self.before


@contextmanager
def no_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.parametrize("broker_db", [None, 1], ids=["broker-is-the-ledger", "own-broker"])
def test_a_stopped_poller_leaves_no_connection_open(  # type: ignore[no-untyped-def]
    sqs, queues, sqs_server: SqsServer, redis_url, key_prefix, redis_client, broker_db
) -> None:
    # Given a poller configured as its process is, with /metrics, on real Redis (the
    # broker on the ledger's Redis, or on a Redis of its own: a client more) and SQS
    queue_url, dlq_url = queues
    parts = urlsplit(redis_url)
    broker_url = None if broker_db is None else parts._replace(path=f"/{broker_db}").geturl()
    metrics_port = free_port()
    settings = Settings(
        redis_url=redis_url,
        celery_broker_url=broker_url,
        redis_key_prefix=key_prefix,
        celery_queue=f"{key_prefix}q",
        sqs_queue_url=queue_url,
        sqs_dlq_url=dlq_url,
        aws_endpoint_url=sqs_server.url,
        sqs_wait_time_seconds=1,
        metrics_host="127.0.0.1",
        metrics_port=metrics_port,
    )
    sqs.send_message(QueueUrl=queue_url, MessageBody=to_body(delivered(order="322-CLOSE-1")))
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    redis_port = parts.port or 6379
    sqs_port = urlsplit(sqs_server.url).port
    assert sqs_port is not None
    # When it runs (it dispatches the event and holds its message) and stops
    try:
        with no_gc(), Watch(redis_port) as redis_watch, Watch(sqs_port) as sqs_watch:
            totals = run_poller(settings, max_polls=2)
            # Then every connection it opened is closed, on this side ...
            assert totals.dispatched == 1
            assert redis_watch.seen, "the poller used Redis"
            assert sqs_watch.seen, "the poller used SQS"
            assert redis_watch.left_open() == set()
            assert sqs_watch.left_open() == set()
            # ... and on the server's: Redis lists none of them any more
            assert eventually(lambda: server_side(redis_client, redis_watch.seen) == []), (
                server_side(redis_client, redis_watch.seen)
            )
    finally:
        if broker_db is not None:
            broker = redis.Redis.from_url(broker_url)  # type: ignore[arg-type]
            delete_prefix(broker, key_prefix)
            broker.close()
    # and the metrics server let go of its port, and the signal handlers are given back
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", metrics_port))
    assert {s: signal.getsignal(s) for s in handlers} == handlers
