"""How far one Redis primary and one worker task carry, on paper and in a run:
``python -m bench.scale``.

The paper figures come from what one bwp-worker task (a poller and a Celery worker, as in
the Procfile) costs per event in the same run: Redis commands and Redis CPU per event give
the events per second one Redis primary can serve (one core, all of it for bwp-worker);
the worker's and the poller's CPU per event give what one worker task with one vCPU and
one poller carry. Then N tasks (N pollers and N Celery workers on one queue and one Redis,
each pair as one ECS task of each) consume the same stream, for N = 1, 2, ...: how the
throughput grows with N on this machine. On 2 cores it flattens early; that is the
machine, not Redis (the Redis CPU column says how much of one core Redis used).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from bench import report
from bench.contenders import BwpWorker
from bench.run import ROOT, Spec, options_for, run_one
from bench.services import Services


@dataclass
class Group:
    """N bwp-worker tasks (poller + Celery worker each) on one queue and one Redis."""

    tasks: list[BwpWorker]
    name: str = "bwp-worker"
    _started: list[BwpWorker] = field(default_factory=list)

    def start(self, env: Mapping[str, str]) -> None:
        for task in self.tasks:
            task.start(env)
            self._started.append(task)

    def wait_ready(self, timeout: float = 60.0) -> None:
        for task in self.tasks:
            task.wait_ready(timeout)

    def mark(self) -> None:
        for task in self.tasks:
            task.mark()

    def roots(self) -> dict[str, psutil.Process]:
        found: dict[str, psutil.Process] = {}
        for n, task in enumerate(self.tasks, 1):
            for role, process in task.roots().items():
                found[f"{role}{n}"] = process
        return found

    def stop(self) -> dict[str, Any]:
        total: dict[str, Any] = {"sqs_requests": {}}
        for task in self.tasks:
            counts = task.stop()
            for action, n in counts.pop("sqs_requests", {}).items():
                total["sqs_requests"][action] = total["sqs_requests"].get(action, 0) + n
            for key, value in counts.items():
                total[key] = total.get(key, 0) + value
        return total

    def terminate(self) -> None:
        for task in self._started:
            task.terminate()


def _options(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[int]]:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--tasks", default="1,2,3", help="numbers of bwp-worker tasks to run")
    parser.add_argument("--events", type=int, default=1200)
    parser.add_argument("--concurrency", type=int, default=8, help="Celery threads per worker")
    parser.add_argument("--bwp-env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path)
    own, rest = parser.parse_known_args(argv)
    args = ["--events", str(own.events), "--latency-ms", "0", "--paced-events", "0"]
    args += ["--concurrency", str(own.concurrency), "--no-doc", "--task-events", "on"]
    for item in own.bwp_env:
        args += ["--bwp-env", item]
    options = options_for(args + rest)
    options.out = own.out
    return options, [int(n) for n in own.tasks.split(",") if n]


def _row(n: int, run: dict[str, Any]) -> dict[str, Any]:
    cpu = run["cpu_per_1k_events"]
    workers = sum(v for k, v in cpu.items() if k.startswith("worker"))
    pollers = sum(v for k, v in cpu.items() if k.startswith("poller"))
    return {
        "tasks": n,
        "events_per_s": run["events_per_s"],
        "redis_per_event": run["redis_per_event"],
        "redis_cpu_ms_per_event": round(cpu.get("redis", 0.0), 3),
        "worker_cpu_ms_per_event": round(workers, 3),
        "poller_cpu_ms_per_event": round(pollers, 3),
        "ok": not run["timed_out"] and not run["mismatches"],
    }


def _paper(row: Mapping[str, Any]) -> list[str]:
    """Capacity on paper from one task's measured costs (ms of CPU per event)."""
    redis_ms, worker_ms = row["redis_cpu_ms_per_event"], row["worker_cpu_ms_per_event"]
    poller_ms = row["poller_cpu_ms_per_event"]
    lines = [
        f"- one Redis primary (one core, all of it for bwp-worker): about"
        f" {report.fmt(1000 / redis_ms if redis_ms else None, 0)} events/s"
        f" ({row['redis_per_event']} commands and {redis_ms:.2f} ms of Redis CPU per event,"
        " broker included);",
        f"- one worker task with one vCPU: about"
        f" {report.fmt(1000 / worker_ms if worker_ms else None, 0)} events/s"
        f" ({worker_ms:.2f} ms of CPU per event, 0 ms API);",
        f"- one poller with one vCPU: about"
        f" {report.fmt(1000 / poller_ms if poller_ms else None, 0)} events/s"
        f" ({poller_ms:.2f} ms per event).",
    ]
    return lines


def render(rows: Sequence[Mapping[str, Any]]) -> str:
    head = "| bwp-worker tasks | events/s | x of 1 task | Redis cmd/event | Redis CPU ms/event"
    head += " | worker CPU ms/event (all) | poller CPU ms/event (all) | ok |\n"
    head += "|---|---|---|---|---|---|---|---|"
    base = rows[0]["events_per_s"] if rows else None
    lines = [head]
    for row in rows:
        gain = report.fmt(row["events_per_s"] / base if base else None, 2)
        lines.append(
            f"| {row['tasks']} | {row['events_per_s']} | {gain} | {row['redis_per_event']}"
            f" | {row['redis_cpu_ms_per_event']} | {row['worker_cpu_ms_per_event']}"
            f" | {row['poller_cpu_ms_per_event']} | {'yes' if row['ok'] else 'NO'} |"
        )
    if rows:
        lines += ["", "On paper, from the 1-task run:", *_paper(rows[0])]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    options, counts = _options(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out = options.out or ROOT / "bench" / "results" / f"scale-{stamp}.json"
    log_dir = out.parent / f"logs-scale-{stamp}"
    log_dir.mkdir(parents=True, exist_ok=True)
    extra = dict(item.split("=", 1) for item in options.bwp_env)
    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    services = Services().start()
    try:
        for index, n in enumerate(counts):
            group_dir = log_dir / f"tasks-{n}"
            tasks = []
            for k in range(n):
                (group_dir / str(k)).mkdir(parents=True, exist_ok=True)
                tasks.append(
                    BwpWorker(
                        group_dir / str(k),
                        concurrency=options.concurrency,
                        task_events=True,
                        extra_env=extra,
                    )
                )
            run = run_one(
                Spec("bwp-worker", 0, "saturate"),
                50 + index,
                services,
                options,
                log_dir,
                contender=Group(tasks),
            )
            rows.append(_row(n, run))
            print(f"{n} task(s): {run['events_per_s']} events/s", flush=True)
    finally:
        services.stop()
    out.write_text(json.dumps({"machine": report.machine(), "rows": rows}, indent=2))
    print("\n" + render(rows))
    print(f"\n{round(time.monotonic() - started)} s; JSON: {out}")
    return rows


if __name__ == "__main__":
    main()
