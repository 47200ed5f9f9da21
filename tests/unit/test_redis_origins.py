"""bench.redis_origins: MONITOR lines attributed to the script or command they came from."""

from __future__ import annotations

import hashlib

from bench.redis_origins import Origin, attribute, render, script_names
from tasks.ledger.scripts import events


def _line(command: str, client_type: str = "tcp") -> dict[str, str]:
    return {"command": command, "client_type": client_type}


def test_every_ledger_script_is_named_by_the_sha_redis_runs_it_under() -> None:
    names = script_names()
    assert names[hashlib.sha1(events.CLAIM.source.encode()).hexdigest()] == "events.CLAIM"
    assert len(set(names.values())) == len(names)


def test_a_scripts_inner_commands_are_its_own_and_plain_commands_stand_alone() -> None:
    # Given a claim script with two inner commands, a broker pop, and an unknown script
    claim = hashlib.sha1(events.CLAIM.source.encode()).hexdigest()
    lines = [
        _line(f"EVALSHA {claim} 2 k1 k2 a"),
        _line("HMGET k1 state", "lua"),
        _line("HSET k1 state claimed", "lua"),
        _line("BRPOP celery 1"),
        _line(f"EVALSHA {claim} 1 k3"),
        _line("HMGET k3 state", "lua"),
        _line("EVALSHA 0123 0"),
        _line("GET x", "lua"),
    ]
    # When attributed
    origins = attribute(lines, {claim: "events.CLAIM"})
    # Then each origin counts its requests and the commands run inside it
    assert origins == [
        Origin("events.CLAIM", requests=2, inside=3),
        Origin("unknown script", requests=1, inside=1),
        Origin("BRPOP", requests=1, inside=0),
    ]
    table = render(origins, events=2)
    assert "| events.CLAIM | 1.00 | 2.50 (1.50) |" in table
    assert table.endswith("| **all** | **2.00** | **4.00** |")
