"""Where bwp-worker's Redis commands come from: ``python -m bench.redis_origins``.

One saturating run of the headline bwp-worker (the same stream and settings as
``bench.run``) with Redis ``MONITOR`` attached to its private Redis. Every command is
attributed to its origin: a ledger script (each ``EVALSHA`` and the commands it runs
inside Redis, named after tasks/ledger/scripts), or a plain command (the Celery broker's
``BRPOP``/``LPUSH``, task events' ``PUBLISH``, ...). ``INFO commandstats``, which the
benchmark's "Redis cmd/event" column counts, counts both the ``EVALSHA`` and what runs
inside it; the "requests" column here is what clients send (round trips, pipelines
counted per command). MONITOR sees the whole run, the one warm-up event included.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from bench.run import Spec, options_for, run_one
from bench.services import Services
from tasks.ledger import lua
from tasks.ledger.scripts import circuits, deliveries, events, leases, milestones, order_api

SCRIPT_MODULES = (events, leases, deliveries, milestones, order_api, circuits)


def script_names() -> dict[str, str]:
    """SHA1 of each ledger script's source -> its name (``events.CLAIM``)."""
    names: dict[str, str] = {}
    for module in SCRIPT_MODULES:
        short = module.__name__.rsplit(".", 1)[1]
        for name, value in vars(module).items():
            if isinstance(value, lua.Script):
                names[hashlib.sha1(value.source.encode()).hexdigest()] = f"{short}.{name}"
    return names


@dataclass(frozen=True)
class Origin:
    name: str
    requests: int  # sent by a client
    inside: int  # run inside a script

    @property
    def commands(self) -> int:
        return self.requests + self.inside


def attribute(lines: Iterable[Mapping[str, Any]], names: Mapping[str, str]) -> list[Origin]:
    """MONITOR lines -> origins, most commands first. A script's inner commands follow
    its EVALSHA at once (a script runs atomically), as lines whose client type is lua."""
    requests: Counter[str] = Counter()
    inside: Counter[str] = Counter()
    current = "?"
    for line in lines:
        verb, _, rest = str(line["command"]).partition(" ")
        verb = verb.upper()
        if line.get("client_type") == "lua":
            inside[current] += 1
        elif verb == "EVALSHA":
            current = names.get(rest.split(" ", 1)[0], "unknown script")
            requests[current] += 1
        else:
            current = "?"
            requests[verb] += 1
    found = [Origin(n, requests[n], inside[n]) for n in set(requests) | set(inside)]
    return sorted(found, key=lambda o: (-o.commands, o.name))


def render(origins: Sequence[Origin], events: int) -> str:
    rows = ["| origin | requests/event | commands/event (inside scripts) |", "|---|---|---|"]
    for o in origins:
        rows.append(
            f"| {o.name} | {o.requests / events:.2f} | {o.commands / events:.2f}"
            f" ({o.inside / events:.2f}) |"
        )
    sent = sum(o.requests for o in origins) / events
    total = sum(o.commands for o in origins) / events
    rows.append(f"| **all** | **{sent:.2f}** | **{total:.2f}** |")
    return "\n".join(rows)


class Monitor:
    """MONITOR on one Redis, collected on a thread until the server goes away."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def __call__(self, url: str) -> None:
        client = redis.Redis.from_url(url, socket_timeout=None, socket_connect_timeout=5)
        threading.Thread(target=self._collect, args=(client,), daemon=True).start()

    def _collect(self, client: redis.Redis) -> None:
        try:
            with client.monitor() as monitor:
                for line in monitor.listen():
                    self.lines.append(line)
        except redis.ConnectionError:
            return  # the run is over: its Redis stopped


def main(argv: Sequence[str] | None = None) -> list[Origin]:
    parser = argparse.ArgumentParser(prog="python -m bench.redis_origins", description=__doc__)
    parser.add_argument("--events", type=int, default=600, help="messages (default 600)")
    mine = parser.parse_args(argv)
    options = options_for(["--events", str(mine.events), "--no-doc", "--paced-events", "0"])
    monitor = Monitor()
    services = Services().start()
    try:
        with tempfile.TemporaryDirectory(prefix="bwp-origins-") as logs:
            spec = Spec("bwp-worker", 0, "saturate")
            run = run_one(spec, 0, services, options, Path(logs), watch=monitor)
    finally:
        services.stop()
    origins = attribute(monitor.lines, script_names())
    print(f"{run['events']} messages, {run['redis_per_event']} commands/event (commandstats)")
    print(render(origins, run["events"]))
    return origins


if __name__ == "__main__":
    main()
