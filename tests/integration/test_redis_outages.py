"""A Redis that answers but cannot serve is an outage (LedgerUnavailable), not a bug.

Each server refusal is produced by a real redis-server where one can be made to say it;
the rest go through redis-py's own reply parser, so the table tests what a client sees.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis
from redis._parsers.base import BaseParser

from sandbox.redis_server import EmbeddedRedis
from tasks.errors import LedgerUnavailable
from tasks.keys import Keys
from tasks.ledger.events import ClaimRequest, Ledger
from tasks.redis_outage import guarded, is_outage, redis_outage


def _ledger(client: redis.Redis, prefix: str = "bwp-outage:") -> Ledger:
    return Ledger(client, Keys(prefix), claim_ttl=30, queued_ttl=600, done_ttl=3600)


@pytest.fixture
def server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as embedded:
        yield embedded


@pytest.mark.parametrize(
    "reply",
    [
        "OOM command not allowed when used memory > 'maxmemory'.",
        "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
        "LOADING Redis is loading the dataset in memory",
        "READONLY You can't write against a read only replica.",
        "BUSY Redis is busy running a script. You can only call SCRIPT KILL or FUNCTION KILL.",
        "TRYAGAIN Multiple keys request during rehashing of slot",
        "CLUSTERDOWN The cluster is down",
    ],
)
def test_a_server_that_cannot_serve_is_an_outage(reply: str) -> None:
    # Given the error redis-py raises for this server reply
    error = BaseParser.parse_error(reply)
    # When it escapes a guarded call
    with pytest.raises(LedgerUnavailable, match=r"redis: \w+") as raised, redis_outage():
        raise error
    # Then it is an outage, with its cause kept and the server's words left out
    assert is_outage(error)
    assert raised.value.__cause__ is error
    assert reply not in str(raised.value)


@pytest.mark.parametrize(
    "reply",
    [
        "ERR unknown command 'NOPE'",
        "WRONGTYPE Operation against a key holding the wrong kind of value",
        "ERR Error running script (call to f_x): @user_script:1: oops",
        "NOSCRIPT No matching script. Please use EVAL.",
    ],
)
def test_a_command_or_script_error_is_a_bug_and_propagates(reply: str) -> None:
    error = BaseParser.parse_error(reply)
    assert not is_outage(error)
    with pytest.raises(redis.ResponseError) as raised, redis_outage():
        raise error
    assert raised.value is error


def test_a_full_redis_under_noeviction_pauses_the_ledger(server: EmbeddedRedis) -> None:
    # Given a Redis at maxmemory with the policy operators are told to use
    client = redis.Redis.from_url(server.url)
    client.set("ballast", b"x" * 4096)
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", 1)
    # When the poller claims a batch (a Lua script that writes)
    # Then the claim says "Redis unavailable", which pauses intake
    with pytest.raises(LedgerUnavailable, match="OutOfMemoryError"):
        _ledger(client).claim([ClaimRequest("evt-1", "h")])
    # And once memory is freed the same ledger works again
    client.config_set("maxmemory", 0)
    assert [c.value for c in _ledger(client).claim([ClaimRequest("evt-1", "h")])] == ["new"]
    client.close()


def test_a_replica_that_lost_its_primary_is_an_outage(server: EmbeddedRedis) -> None:
    # Given a replica whose primary is gone, told not to serve stale data
    dead = EmbeddedRedis()  # never started: a port nobody listens on
    dead.close()
    client = redis.Redis.from_url(server.url)
    client.config_set("replica-serve-stale-data", "no")
    client.replicaof("127.0.0.1", dead.port)
    # When a read reaches it (MASTERDOWN) and a write reaches it (READONLY)
    # Then both are outages
    with pytest.raises(LedgerUnavailable, match="MasterDownError"):
        guarded(lambda: client.get("k"))
    with pytest.raises(LedgerUnavailable):
        _ledger(client).claim([ClaimRequest("evt-1", "h")])
    client.close()


def test_a_redis_busy_running_a_script_is_an_outage(server: EmbeddedRedis) -> None:
    # Given a Redis stuck in a long script past its busy-reply threshold
    client = redis.Redis.from_url(server.url)
    client.config_set("busy-reply-threshold", 50)
    spinner = redis.Redis.from_url(server.url)
    spin = threading.Thread(
        target=lambda: _swallow(lambda: spinner.eval("while true do end", 0)), daemon=True
    )
    spin.start()
    try:
        # When another client calls it
        deadline = time.monotonic() + 5
        with pytest.raises(LedgerUnavailable, match="BUSY"):
            while time.monotonic() < deadline:
                guarded(lambda: client.get("k"))
                time.sleep(0.01)
    finally:
        client.script_kill()
        spin.join(5)
        spinner.close()
        client.close()


def _swallow(call: Callable[[], object]) -> None:
    try:
        call()
    except redis.ResponseError:
        return  # the script was killed


def test_a_script_flush_between_calls_does_not_break_the_ledger(server: EmbeddedRedis) -> None:
    # Given a ledger whose scripts were loaded by a first call (on a Redis of its own:
    # flushing the shared one's script cache would race other users' pipelines)
    client = redis.Redis.from_url(server.url)
    ledger = _ledger(client)
    ledger.claim([ClaimRequest("before", "h")])
    # When a failover or an operator empties the script cache (NOSCRIPT on EVALSHA)
    client.script_flush()
    # Then the next calls reload the scripts and answer as before
    assert [c.value for c in ledger.claim([ClaimRequest("after", "h")])] == ["new"]
    assert ledger.state("after") == "claimed"
    client.close()
