"""The order-API rate limiter reserves a slot in one Redis call and sleeps once.

Counted on a Redis of its own (``INFO commandstats``), so other tests' traffic cannot
blur the count.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis

from sandbox.redis_server import EmbeddedRedis
from tasks.errors import ApiUnavailable
from tasks.order_api.rate_limit import RateLimiter

KEY = "bwp-rate-test:api-rate"


@pytest.fixture
def private_redis() -> Iterator[redis.Redis]:
    with EmbeddedRedis() as server:
        client = redis.Redis.from_url(server.url)
        yield client
        client.close()


def _script_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("evalsha", "eval"))


def test_each_acquire_is_one_redis_call_however_many_threads_wait(
    private_redis: redis.Redis,
) -> None:
    # Given 16 threads sharing a limit of 40 calls/s (burst 1): most of them must wait
    RateLimiter(private_redis, KEY, rate=40, burst=1).acquire()  # loads the script
    private_redis.delete(KEY)
    private_redis.config_resetstat()
    threads, each = 16, 3
    waits: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        limiter = RateLimiter(private_redis, KEY, rate=40, burst=1)
        for _ in range(each):
            asked = time.monotonic()
            limiter.acquire()
            with lock:
                waits.append(time.monotonic() - asked)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    started = time.monotonic()
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    elapsed = time.monotonic() - started
    # Then Redis ran the script exactly once per acquire (no polling)
    assert _script_calls(private_redis) == threads * each
    # And the rate held: 48 calls at 40/s take about 1.2 s
    assert elapsed >= (threads * each - 1) / 40 * 0.9
    # And first come, first served: nobody waited much longer than the whole queue
    assert max(waits) <= threads / 40 + 0.5


def test_slots_are_granted_in_reservation_order(private_redis: redis.Redis) -> None:
    # Given callers that reserve one after another, each sleeping its own wait
    limiter = RateLimiter(private_redis, KEY, rate=20, burst=1)
    granted: list[int] = []
    lock = threading.Lock()

    def caller(n: int) -> None:
        limiter.acquire()
        with lock:
            granted.append(n)

    workers = []
    for n in range(6):
        worker = threading.Thread(target=caller, args=(n,))
        worker.start()
        workers.append(worker)
        time.sleep(0.005)  # reserve in order 0..5
    for worker in workers:
        worker.join()
    # Then they go in the order they reserved (50 ms apart: no overtaking)
    assert granted == list(range(6))


def test_a_wait_beyond_the_budget_fails_fast_and_reserves_nothing(
    private_redis: redis.Redis,
) -> None:
    # Given a limit of 1 call/s whose only slot is taken
    slept: list[float] = []
    limiter = RateLimiter(private_redis, KEY, rate=1, burst=1, max_wait=0.5, sleep=slept.append)
    limiter.acquire()
    tat = private_redis.get(KEY)
    # When the next caller would have to wait a second
    with pytest.raises(ApiUnavailable, match="rate limit") as raised:
        limiter.acquire()
    # Then it fails at once with a retryable error, without sleeping or taking a slot
    assert raised.value.retryable and slept == []
    assert private_redis.get(KEY) == tat
