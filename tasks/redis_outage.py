"""Translate "Redis cannot serve us right now" into LedgerUnavailable, in one place.

An outage is more than a dropped connection. A Redis that answers but refuses work is
unavailable too, and retrying the batch every two seconds only cycles SQS messages
toward their redrive; pausing intake is the right answer:

- ``OOM``: ``maxmemory`` reached under ``noeviction`` (the policy design.md asks for)
- ``MASTERDOWN``: a replica that lost its primary (``replica-serve-stale-data no``)
- ``LOADING``: a restarted node still reading its dataset
- ``READONLY``: writes reached a replica (a failover moved the primary)
- ``BUSY``: a script or function is running past ``busy-reply-threshold``
- ``TRYAGAIN`` / ``CLUSTERDOWN``: a cluster resharding or without a quorum

``NOSCRIPT`` is not among them: redis-py's ``Script`` reloads a flushed script by itself.
Any other command or script error is a bug and propagates as is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import redis
from redis import exceptions as rex

from tasks.errors import LedgerUnavailable

T = TypeVar("T")

#: error types that mean "Redis is down, failing over, full or too slow": retry later.
#: redis-py's parser maps each server error prefix above (but BUSY) to one of these.
UNAVAILABLE: tuple[type[redis.RedisError], ...] = (
    redis.ConnectionError,  # BusyLoadingError (LOADING) is one
    redis.TimeoutError,
    rex.ReadOnlyError,
    rex.OutOfMemoryError,
    rex.MasterDownError,
    rex.TryAgainError,
    rex.ClusterDownError,
)

#: server error prefixes that redis-py leaves as a plain ResponseError
_UNAVAILABLE_PREFIXES = ("BUSY ",)


def is_outage(exc: BaseException) -> bool:
    """True when ``exc`` means Redis cannot serve us now (a later attempt may succeed)."""
    if isinstance(exc, UNAVAILABLE):
        return True
    return isinstance(exc, rex.ResponseError) and str(exc).startswith(_UNAVAILABLE_PREFIXES)


def outage_name(exc: BaseException) -> str:
    """A short, secret-free name for an outage: the error type, or the server's prefix."""
    if type(exc) is rex.ResponseError:
        return str(exc).split(" ", 1)[0]
    return type(exc).__name__


@contextmanager
def redis_outage() -> Iterator[None]:
    """Raise LedgerUnavailable (from the cause) for an outage inside the block."""
    try:
        yield
    except redis.RedisError as exc:
        if is_outage(exc):
            raise LedgerUnavailable(f"redis: {outage_name(exc)}") from exc
        raise


def guarded(call: Callable[[], T]) -> T:
    """``call()``, with an outage raised as LedgerUnavailable."""
    with redis_outage():
        return call()


def text(value: bytes | str) -> str:
    """A Redis reply as text (clients here are built without decode_responses)."""
    return value.decode() if isinstance(value, bytes) else value
