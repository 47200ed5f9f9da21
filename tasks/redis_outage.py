"""Translate "Redis cannot be reached" into LedgerUnavailable, in one place.

Only outages are translated; a script or command error is a bug and propagates as is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import redis

from tasks.errors import LedgerUnavailable

T = TypeVar("T")

#: errors that mean "Redis is down, failing over or too slow": retry later
UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError)


@contextmanager
def redis_outage() -> Iterator[None]:
    """Raise LedgerUnavailable (from the cause) for an outage inside the block."""
    try:
        yield
    except UNAVAILABLE as exc:
        raise LedgerUnavailable(f"redis: {type(exc).__name__}") from exc


def guarded(call: Callable[[], T]) -> T:
    """``call()``, with an outage raised as LedgerUnavailable."""
    with redis_outage():
        return call()


def text(value: bytes | str) -> str:
    """A Redis reply as text (clients here are built without decode_responses)."""
    return value.decode() if isinstance(value, bytes) else value
