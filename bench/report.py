"""Turn the raw measurements of a run into figures, the tables, the target checks, and
the generated part of docs/performance.md."""

from __future__ import annotations

import math
import os
import platform
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
SERVICES = ("moto", "sandbox", "redis", "driver")


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def machine() -> dict[str, Any]:
    model = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _row_name(run: dict[str, Any]) -> str:
    return f"{run['contender']} | {run['api_latency_ms']:g} | {run['feed']}"


def _contender_cpu(run: dict[str, Any]) -> float | None:
    per_1k: dict[str, float] = run["cpu_per_1k_events"]
    return per_1k.get("contender")


def _rss(run: dict[str, Any]) -> str:
    mine = {k: v for k, v in run["peak_rss_mb"].items() if k not in SERVICES}
    return ", ".join(f"{role} {mb:.0f}" for role, mb in mine.items())


def table(runs: Sequence[dict[str, Any]]) -> str:
    """The main table (markdown)."""
    head = (
        "| contender | API ms | feed | events/s | p50 / p95 / p99 ms | CPU s per 1k events"
        " | peak RSS MB | SQS req/msg | Redis cmd/event | API calls/event | API calls/change"
        " | OMS pushes/snapshot | ok |"
    )
    lines = [head, "|" + "---|" * 13]
    for run in runs:
        lat = run["latency_ms"]
        lats = " / ".join(fmt(lat.get(k), 0) for k in ("p50", "p95", "p99"))
        api, oms = run["api"], run["oms"]
        ok = "timeout" if run["timed_out"] else ("yes" if run["mismatches"] == 0 else "NO")
        lines.append(
            f"| {_row_name(run)} | {fmt(run['events_per_s'], 0)} | {lats}"
            f" | {fmt(_contender_cpu(run))} | {_rss(run)} | {fmt(run['sqs_per_message'], 3)}"
            f" | {fmt(run['redis_per_event'], 1)} | {fmt(api.get('per_event'))}"
            f" | {fmt(api.get('per_change'))} | {fmt(oms.get('pushes_per_snapshot'))} | {ok} |"
        )
    return "\n".join(lines)


def cpu_table(runs: Sequence[dict[str, Any]]) -> str:
    """Where the CPU goes: seconds per 1,000 events, by process (markdown)."""
    roles: list[str] = []
    for run in runs:
        for role in run["cpu_per_1k_events"]:
            if role not in (*SERVICES, "contender", "other") and role not in roles:
                roles.append(role)
    columns = [*roles, *SERVICES, "other"]
    lines = [
        "| contender | API ms | feed | " + " | ".join(columns) + " | wall s |",
        "|" + "---|" * (len(columns) + 4),
    ]
    for run in runs:
        cpu = run["cpu_per_1k_events"]
        cells = " | ".join(fmt(cpu.get(c)) for c in columns)
        lines.append(f"| {_row_name(run)} | {cells} | {fmt(run['seconds'], 1)} |")
    return "\n".join(lines)


def _find(
    runs: Sequence[dict[str, Any]], contender: str, latency: float, feed: str
) -> dict[str, Any] | None:
    for run in runs:
        if (run["contender"], run["api_latency_ms"], run["feed_kind"]) == (
            contender,
            latency,
            feed,
        ):
            return run
    return None


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _bwp_checks(bwp: list[dict[str, Any]]) -> list[tuple[str, float | None, bool | None]]:
    saturated = [r for r in bwp if r["feed_kind"] == "saturate"]
    worst_calls = max((r["api"]["per_change"] for r in bwp), default=None)
    worst_pushes = max((r["oms"]["pushes_per_snapshot"] or 0 for r in bwp), default=None)
    worst_sqs = max((r["sqs_per_message"] for r in saturated), default=None)
    worst_redis = max((r["redis_per_event"] for r in saturated), default=None)
    poller = max((r["peak_rss_mb"].get("poller", 0) for r in bwp), default=None)
    workers = max(
        (max(r["peak_rss_mb"].get("worker", 0), r["peak_rss_mb"].get("worker*", 0)) for r in bwp),
        default=None,
    )
    return [
        ("API calls per distinct delivery change <= 1.05", worst_calls, _le(worst_calls, 1.05)),
        ("OMS pushes per distinct snapshot = 1.00", worst_pushes, _le(worst_pushes, 1.0)),
        ("SQS requests per message <= 0.25 under load", worst_sqs, _le(worst_sqs, 0.25)),
        ("Redis commands per event <= 12 (broker included)", worst_redis, _le(worst_redis, 12)),
        ("poller peak RSS <= 80 MB", poller, _le(poller, 80)),
        ("each worker process peak RSS <= 150 MB", workers, _le(workers, 150)),
    ]


def _le(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit + 1e-9


def targets(runs: Sequence[dict[str, Any]]) -> list[tuple[str, float | None, bool | None]]:
    """(target, measured value, met?) for the issue's targets; None where not measured."""
    bwp = [r for r in runs if r["contender"] == "bwp-worker"]
    checks = _bwp_checks(bwp)
    limit = _find(runs, "limit-line", 0, "saturate")
    for latency in sorted({r["api_latency_ms"] for r in bwp}):
        mine = _find(runs, "bwp-worker", latency, "saturate")
        ref = _find(runs, "powertools", latency, "saturate")
        if mine is None:
            continue
        if latency == 0 and limit is not None:
            share = _ratio(mine["events_per_s"], limit["events_per_s"])
            checks.append(
                ("throughput >= 80% of the limit line (0 ms API)", share, _ge(share, 0.8))
            )
        if ref is not None:
            times = _ratio(mine["events_per_s"], ref["events_per_s"])
            floor = 15.0 if latency >= 100 else 1.5
            label = f"throughput >= {floor:g}x Powertools ({latency:g} ms API)"
            checks.append((label, times, _ge(times, floor)))
            cpu = _ratio(_contender_cpu(mine), _contender_cpu(ref))
            ceiling = 0.8 if latency >= 100 else 1.0
            label = f"CPU per event <= {ceiling:g}x Powertools ({latency:g} ms API), ratio"
            checks.append((label, cpu, _le(cpu, ceiling)))
    paced = _find(runs, "bwp-worker", 0, "paced")
    if paced is not None:
        p99 = paced["latency_ms"].get("p99")
        label = f"p99 enqueue -> OMS <= 50 ms ({paced['feed']}, 0 ms API)"
        checks.append((label, p99, _le(p99, 50)))
        peers = [
            r["latency_ms"].get("p99")
            for r in runs
            if r["feed_kind"] == "paced" and r["contender"] in ("powertools", "naive")
        ]
        best = min((p for p in peers if p is not None), default=None)
        ratio = _ratio(p99, best)
        label = "p99 enqueue -> OMS <= 1.2x the best peer (paced), ratio"
        checks.append((label, ratio, _le(ratio, 1.2)))
    return checks


def _ge(value: float | None, limit: float) -> bool | None:
    return None if value is None else value >= limit


def targets_text(checks: Sequence[tuple[str, float | None, bool | None]]) -> str:
    marks = {True: "met", False: "NOT met", None: "not measured"}
    return "\n".join(f"- {label}: {fmt(value)} — {marks[ok]}" for label, value, ok in checks)


def _stream(runs: Sequence[dict[str, Any]], feed: str) -> str:
    for run in runs:
        if run["feed_kind"] == feed:
            return (
                f"{run['events']} messages ({run['distinct_event_ids']} distinct events,"
                f" {run['deliveries']} deliveries, {run['changes']} distinct changes)"
            )
    return "no run"


def _streams(runs: Sequence[dict[str, Any]]) -> str:
    saturate, paced = _stream(runs, "saturate"), _stream(runs, "paced")
    if paced in (saturate, "no run"):
        return f"{saturate} per run"
    return f"{saturate} per saturating run, {paced} per paced run"


def render(result: dict[str, Any]) -> str:
    """The generated section of docs/performance.md (and what the run prints)."""
    m, c = result["machine"], result["config"]
    noisy = [_row_name(r) for r in result["runs"] if r["noise_share"] > 0.1]
    noise = (
        "Noise: over 10% of the machine's CPU went to processes outside the benchmark"
        f" during {len(noisy)} run(s) ({'; '.join(noisy)}): their timings are less reliable."
        if noisy
        else "Noise: under 10% of each run's CPU went to processes outside the benchmark."
    )
    return "\n".join(
        [
            f"Run of {m['date']} on {m['nproc']} x {m['cpu_model']}, {m['ram_gib']} GiB RAM,"
            f" Python {m['python']} ({m['platform']}); load average at start"
            f" {m['loadavg_at_start']}; {m.get('seconds_total', '?')} s in all.",
            f"Stream: {_streams(result['runs'])} (seed {c['seed']}); API latencies"
            f" {c['latencies_ms']} ms; saturating feed keeps <= {c['window']} messages in the"
            f" queue; paced feed {c['paced_rate']:g} events/s;"
            f" bwp-worker: {c['bwp']}.",
            noise,
            "",
            table(result["runs"]),
            "",
            "CPU seconds per 1,000 events, by process (`worker*`: Celery's pool processes;"
            " `other`: processes outside the benchmark, i.e. noise):",
            "",
            cpu_table(result["runs"]),
            "",
            "Targets:",
            "",
            targets_text(targets(result["runs"])),
        ]
    )


def update_doc(doc: Path, section: str) -> None:
    """Replace the generated section between the markers (create the doc when missing)."""
    text = doc.read_text(encoding="utf-8") if doc.exists() else f"# Performance\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text += f"\n{BEGIN}\n{END}\n"
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.DOTALL)
    text = pattern.sub(lambda _: f"{BEGIN}\n{section}\n{END}", text)
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text, encoding="utf-8")
