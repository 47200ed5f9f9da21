"""The benchmark harness on a tiny stream (``python -m bench.run --quick``): every contender
runs against the real services, and the figures that do not depend on timing are what
each design implies. Counts only: timings stay in the benchmark."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SCALE_ARGS = ("--tasks", "1,2", "--events", "60", "--concurrency", "2")


def test_a_quick_benchmark_runs_every_contender_with_sane_counts(tmp_path: Path) -> None:
    # Given the harness in quick mode (a few dozen events, 0 ms API latency)
    out = tmp_path / "bench.json"

    # When it runs
    subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--out", str(out)],
        cwd=ROOT,
        check=True,
        timeout=180,
        stdout=subprocess.DEVNULL,
    )
    result: dict[str, Any] = json.loads(out.read_text())
    runs = {run["contender"]: run for run in result["runs"]}

    # Then every contender ran to the end, and the OMS holds the API's final state
    assert set(runs) == {"bwp-worker", "bwp-worker-no-events", "powertools", "naive", "limit-line"}
    for run in runs.values():
        assert not run["timed_out"], run["contender"]
        assert run["mismatches"] == 0, run["contender"]
        assert run["distinct_event_ids"] < run["events"]  # the stream has redeliveries
    # ... bwp-worker asked the API once per distinct change and pushed each snapshot once
    bwp = runs["bwp-worker"]
    assert bwp["api"]["per_change"] <= 1.05
    assert bwp["oms"]["pushes_per_snapshot"] == 1.0
    assert bwp["oms"]["accepted"] == bwp["changes"]
    assert sum(bwp["sqs_requests"].values()) > 0
    # ... the headline row runs the default configuration (task events on: Celery publishes
    # them to Redis); the variant runs with them off
    quiet = runs["bwp-worker-no-events"]
    publishes = bwp["redis_by_command"].get("publish", 0)
    assert publishes > quiet["redis_by_command"].get("publish", 0) + bwp["oms"]["accepted"]
    # ... Powertools' idempotency absorbed the redeliveries, not the twins
    powertools = runs["powertools"]
    assert powertools["api"]["order_queries"] == powertools["distinct_event_ids"]
    assert powertools["oms"]["accepted"] == powertools["changes"]
    # ... the naive loop queried once per message, receiving and deleting one at a time
    naive = runs["naive"]
    assert naive["api"]["order_queries"] == naive["events"]
    assert naive["sqs_requests"]["DeleteMessage"] == naive["events"]
    # ... and the limit line received and deleted every message exactly once
    limit = runs["limit-line"]
    assert limit["consumer_figures"]["records"] == limit["events"]
    assert limit["api"]["order_queries"] == 0


def test_the_task_cost_probe_prints_one_figure_per_thread_count() -> None:
    # When the in-process probe runs a few tasks on 1 and on 2 threads
    done = subprocess.run(
        [sys.executable, "-m", "bench.task_cost", "--tasks", "4", "--threads", "1", "2"],
        cwd=ROOT,
        check=True,
        timeout=120,
        capture_output=True,
        text=True,
    )
    # Then it prints a CPU figure for each, every task having pushed its delivery
    lines = [line.split() for line in done.stdout.splitlines() if "per task" in line]
    assert [line[0] for line in lines] == ["1", "2"]
    assert all(float(line[2]) > 0 for line in lines)
    assert all(line[-2] == "(4" for line in lines)


def test_the_scale_run_grows_the_number_of_tasks_on_one_redis(tmp_path: Path) -> None:
    # Given one and then two bwp-worker tasks (poller + worker each) on one queue and Redis
    out = tmp_path / "scale.json"
    subprocess.run(
        [sys.executable, "-m", "bench.scale", *SCALE_ARGS, "--out", str(out)],
        cwd=ROOT,
        check=True,
        timeout=240,
        stdout=subprocess.DEVNULL,
    )
    rows = json.loads(out.read_text())["rows"]
    # Then both runs ended with the OMS right, and each reports the costs the paper
    # estimate is built from (Redis commands and CPU per event, all tasks together)
    assert [row["tasks"] for row in rows] == [1, 2]
    assert all(row["ok"] for row in rows)
    assert all(row["redis_per_event"] > 0 and row["worker_cpu_ms_per_event"] > 0 for row in rows)
