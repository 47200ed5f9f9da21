"""The Redis ACL users docs/operations.md recommends ("Redis: who may read the access
token"), applied as written to a Redis of the test's own: the poller, a worker, beat and
Flower each run with their user, an event reaches the OMS, nothing is refused to any of
them, and only the workers' user can read the cached OAuth token."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import httpx
import pytest
import redis

from sandbox.stack import LocalStack, StackOptions
from tests.e2e.checks import pushes

pytestmark = pytest.mark.e2e

RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
PASSWORDS = {
    "bwp-worker": "acl-worker-pass-7Q",
    "bwp-poller": "acl-poller-pass-3M",
    "bwp-broker": "acl-broker-pass-9K",
}


def documented_acl() -> dict[str, list[str]]:
    """The ``ACL SETUSER`` lines of the runbook, by user, with this test's passwords."""
    users: dict[str, list[str]] = {}
    for line in RUNBOOK.read_text().splitlines():
        match = re.fullmatch(r"\s*ACL SETUSER (\S+) (.*)", line)
        if match:
            user, rules = match.group(1), match.group(2).split()
            users[user] = [f">{PASSWORDS[user]}" if r.startswith(">") else r for r in rules]
    return users


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_documented_acl_users_run_everything_and_keep_the_token_from_others() -> None:
    users = documented_acl()
    assert sorted(users) == sorted(PASSWORDS)
    # Given a Redis of this test's own (ACL users are server-wide) with the runbook's users
    options = StackOptions(key_prefix="bwp:", extra_env={"SWEEP_INTERVAL_SECONDS": "1"})
    with LocalStack(options) as stack:
        admin = stack.redis
        for user, rules in users.items():
            admin.execute_command("ACL", "SETUSER", user, "reset", *rules)
        admin.execute_command("ACL", "LOG", "RESET")
        where = stack.redis_url.split("//", 1)[1]

        def url(user: str) -> str:
            return f"redis://{user}:{PASSWORDS[user]}@{where}"

        # And each process with its own user
        stack.start_poller(REDIS_URL=url("bwp-poller"))
        stack.start_worker(REDIS_URL=url("bwp-worker"))
        stack.start_beat(REDIS_URL=url("bwp-broker"))
        port = free_port()
        stack.start_flower(
            port, "--address=127.0.0.1", REDIS_URL=url("bwp-broker"), FLOWER_BASIC_AUTH="o:p"
        )
        flower = f"http://127.0.0.1:{port}"
        stack.wait_until(lambda: workers_seen(flower), what="Flower sees the worker")

        # When an event goes through (the worker fetches and caches the token)
        stack.api.store.add_order("322-ACL-1", "bp-acl", [("li", 1, "d-1")])
        stack.api.store.update_delivery("322-ACL-1", "d-1", state="IN_TRANSIT")
        stack.send_event("PACKAGE_DELIVERY_IN_TRANSIT", "322-ACL-1", "d-1")
        stack.wait_until(lambda: len(pushes(stack, "322-ACL-1")) == 1, what="the push")
        # and beat's sweep has run on the worker at least once
        # and a sweep beat scheduled succeeded on the worker, as Flower saw it
        stack.wait_until(
            lambda: "bwp.sweep_stale_events" in succeeded(flower),
            what="a sweep scheduled by beat, run by the worker, seen by Flower",
        )
        refused = admin.execute_command("ACL", "LOG")

        # Then no process was refused anything
        assert refused == [], refused
        # and the token is cached, readable by the workers' user only
        assert admin.exists("bwp:token") == 1
        for user in ("bwp-poller", "bwp-broker"):
            client = redis.Redis.from_url(url(user))
            try:
                with pytest.raises(redis.exceptions.NoPermissionError):
                    client.get("bwp:token")
            finally:
                client.close()
        worker = redis.Redis.from_url(url("bwp-worker"))
        try:
            assert worker.get("bwp:token") is not None
        finally:
            worker.close()


def workers_seen(flower: str) -> bool:
    try:
        reply = httpx.get(
            f"{flower}/api/workers", params={"refresh": "1"}, auth=("o", "p"), timeout=5
        )
    except httpx.TransportError:
        return False
    return reply.status_code == 200 and bool(reply.json())


def succeeded(flower: str) -> set[str]:
    """Names of the tasks Flower saw succeed."""
    reply = httpx.get(f"{flower}/api/tasks", auth=("o", "p"), timeout=5)
    reply.raise_for_status()
    return {t["name"] for t in reply.json().values() if t.get("state") == "SUCCESS"}
