"""The side-by-side benchmark: ``python -m bench.run`` (``make bench``).

One run of the whole matrix on this machine: for each API latency, each contender
consumes the same stream (its own queue, Redis and order ids; the OMS reset), fed so
that moto stays shallow; then bwp-worker and the peers at a fixed rate for latency.
Prints the tables, saves the JSON under bench/results/, and rewrites the generated part
of docs/performance.md. ``--quick`` is a smoke run of a few dozen events.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import redis

from bench import report
from bench.chart import draw
from bench.contenders import BWP_SETTINGS, PEERS, BwpWorker, Contender, Peer
from bench.feed import Feeder, Phase
from bench.sampler import Sampler, Usage
from bench.services import Services, private_redis
from bench.stream import Stream, build, move_body, warmup

ROOT = Path(__file__).resolve().parent.parent
#: bwp-worker: the configuration a user gets from the Procfile and the README's defaults
#: (Celery task events on: what Flower needs). bwp-worker-no-events: the same with task
#: events off (WORKER_TASK_EVENTS=false), at a 0 ms API only: what Flower costs.
NO_EVENTS = "bwp-worker-no-events"
CONTENDERS = ("bwp-worker", NO_EVENTS, "powertools", "naive", "limit-line")
BUSY_STATES = ("user", "nice", "system", "irq", "softirq", "steal")


@dataclass(frozen=True)
class Spec:
    contender: str
    latency_ms: float
    feed: str  # "saturate" or "paced"


def options_for(argv: Sequence[str] | None) -> argparse.Namespace:
    """The benchmark's options (``bench.scale`` reuses them)."""
    return _options(argv)


def _options(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    add = parser.add_argument
    add("--events", type=int, default=600, help="messages per saturating run (default 600)")
    add("--latency-ms", default="0,100", help="added order-API latencies, comma-separated")
    add("--contenders", default=",".join(CONTENDERS), help="subset of " + ",".join(CONTENDERS))
    add("--window", type=int, default=30, help="most messages kept in the queue when saturating")
    add("--paced-rate", type=float, default=50.0, help="events/s of the latency runs")
    add("--paced-events", type=int, default=600, help="messages per latency run (0: none)")
    add("--seed", type=int, default=20261129)
    add("--timeout", type=float, default=240.0, help="seconds per phase before giving up")
    add("--concurrency", type=int, default=16, help="bwp-worker's Celery concurrency")
    add("--pool", default="threads", help="bwp-worker's Celery pool (threads, prefork)")
    add("--task-events", choices=["on", "off"], default="on", help="bwp-worker's task events")
    add("--bwp-env", action="append", default=[], metavar="KEY=VALUE", help="extra setting")
    add("--profile", action="store_true", help="also profile bwp-worker (pyinstrument)")
    add("--quick", action="store_true", help="smoke run: 40 events, 0 ms API, no paced runs")
    add("--out", type=Path, help="JSON path (default bench/results/bench-<time>.json)")
    add("--doc", type=Path, default=ROOT / "docs" / "performance.md")
    add("--no-doc", action="store_true", help="leave docs/performance.md alone")
    options = parser.parse_args(argv)
    if options.quick:
        options.events, options.latency_ms, options.paced_events = 40, "0", 0
        options.no_doc = True
    return options


def _plan(options: argparse.Namespace) -> list[Spec]:
    chosen = [c for c in options.contenders.split(",") if c]
    unknown = set(chosen) - set(CONTENDERS)
    if unknown:
        raise SystemExit(f"unknown contenders {sorted(unknown)}; choose from {CONTENDERS}")
    latencies = [float(x) for x in options.latency_ms.split(",") if x]
    plan = [Spec("limit-line", 0, "saturate")] if "limit-line" in chosen else []
    for latency in latencies:
        plan += [
            Spec(c, latency, "saturate")
            for c in chosen
            if c != "limit-line" and (c != NO_EVENTS or latency == 0)
        ]
    if options.paced_events:
        plan += [Spec(c, 0, "paced") for c in chosen if c not in ("limit-line", NO_EVENTS)]
    return plan


def _contender(name: str, options: argparse.Namespace, log_dir: Path) -> Contender:
    if name in PEERS:
        return Peer(name, log_dir)
    extra = dict(item.split("=", 1) for item in options.bwp_env)
    return BwpWorker(
        log_dir,
        concurrency=options.concurrency,
        pool=options.pool,
        task_events=options.task_events == "on" and name != NO_EVENTS,
        extra_env=extra,
        profile_dir=getattr(options, "profile_dir", None),
    )


def _commandstats(client: redis.Redis) -> Counter[str]:
    stats = client.info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()})


def _busy_cpu() -> float:
    times = psutil.cpu_times()
    return sum(getattr(times, state, 0.0) for state in BUSY_STATES)


def _load(services: Services, stream: Stream, prefix: str) -> None:
    """The orders, each delivery in its phase-1 state, and the warm-up order."""
    warm = warmup(prefix)
    services.add_order(warm.order)
    services.move(warm.move)
    for order in stream.orders:
        services.add_order(order)
    for key, delivery in stream.phase1_states.items():
        services.move(move_body(key, delivery))


def _advance(services: Services, stream: Stream) -> None:
    """Phase 2: the API shows each delivery's final state."""
    for key, delivery in stream.final_states.items():
        if delivery != stream.phase1_states[key]:
            services.move(move_body(key, delivery))


def _feed(
    spec: Spec, stream: Stream, feeder: Feeder, services: Services, options: argparse.Namespace
) -> list[Phase]:
    kwargs: dict[str, Any] = {"timeout": options.timeout, "window": options.window}
    if spec.feed == "paced":
        kwargs["rate"] = options.paced_rate
    if spec.contender == "limit-line":
        return [feeder.phase(stream.phase1 + stream.phase2, lambda: True, **kwargs)]
    first = feeder.phase(
        stream.phase1, lambda: services.oms_summary()["received"] >= stream.deliveries, **kwargs
    )
    if first.timed_out:
        return [first]
    _advance(services, stream)
    second = feeder.phase(
        stream.phase2, lambda: services.oms_summary()["received"] >= stream.changes, **kwargs
    )
    return [first, second]


def _warm_up(spec: Spec, feeder: Feeder, services: Services, prefix: str) -> None:
    """One event through the contender (clients built, token fetched), then a clean slate."""
    processing = spec.contender != "limit-line"
    done = feeder.phase(
        [warmup(prefix).body],
        lambda: not processing or services.oms_summary()["received"] >= 1,
        timeout=60.0,
    )
    if done.timed_out:
        raise TimeoutError(f"{spec.contender} did not process the warm-up event")
    feeder.sent_at.clear()
    services.reset_oms()


def run_one(
    spec: Spec,
    index: int,
    services: Services,
    options: argparse.Namespace,
    log_dir: Path,
    contender: Contender | None = None,
    watch: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """One contender through one stream; ``contender`` overrides the one ``spec`` names
    (``bench.scale`` passes a group of bwp-worker tasks); ``watch`` is given the private
    Redis's URL before anything runs (``bench.redis_origins`` attaches MONITOR)."""
    events = options.paced_events if spec.feed == "paced" else options.events
    prefix = f"322-R{index:02d}"
    stream = build(events, options.seed, prefix=prefix)
    queue, cache = services.new_queue(), private_redis()
    client = redis.Redis.from_url(cache.url)
    if watch is not None:
        watch(cache.url)
    contender = contender or _contender(spec.contender, options, log_dir)
    try:
        services.reset_oms()
        services.set_api_latency(spec.latency_ms / 1000)
        _load(services, stream, prefix)
        contender.start(services.contract_env(queue, cache.url))
        contender.wait_ready()
        feeder = Feeder(services.sqs_url, queue.url)
        _warm_up(spec, feeder, services, prefix)
        contender.mark()
        api_before = services.api_stats()
        redis_pid = int(client.info("server")["process_id"])
        roots = {**contender.roots(), **services.processes}
        roots |= {"redis": psutil.Process(redis_pid), "driver": psutil.Process()}
        commands_before, busy_before = _commandstats(client), _busy_cpu()
        sampler = Sampler(roots).start()
        phases = _feed(spec, stream, feeder, services, options)
        usage = sampler.stop()
        busy = _busy_cpu() - busy_before
        commands = _commandstats(client) - commands_before
        api_after = services.api_stats()
        counts = contender.stop()
        attempts, latest = services.oms_attempts(), services.oms_latest()
        feeder.close()
    finally:
        contender.terminate()  # a no-op after stop(); after a failure, no process is left
        client.close()
        cache.close()
        services.drop_queue(queue)
    raw = {
        "stream": stream,
        "phases": phases,
        "usage": usage,
        "busy": busy,
        "commands": commands,
        "api": (api_before, api_after),
        "counts": counts,
        "attempts": attempts,
        "latest": latest,
        "sent_at": feeder.sent_at,
    }
    return figures(spec, raw, options)


def _latency(attempts: list[dict[str, Any]], sent_at: dict[str, float]) -> dict[str, Any]:
    samples = []
    for attempt in attempts:
        if attempt["status"] == 200:
            source = json.loads(attempt["body"])["sourceEvent"]["id"]
            if source in sent_at:
                samples.append((attempt["received_wall"] - sent_at[source]) * 1000)
    out: dict[str, Any] = {f"p{q}": report.percentile(samples, q) for q in (50, 95, 99)}
    out |= {"max": max(samples, default=None), "samples": len(samples)}
    return out


def _mismatches(stream: Stream, latest: dict[str, dict[str, Any]]) -> int:
    wrong = 0
    for (order_id, delivery_id), want in stream.final_states.items():
        body = latest.get(f"{order_id}/{delivery_id}")
        tracking = (body or {}).get("tracking") or {}
        have = (
            body and (body["state"], body["reason"], tracking.get("trackingNumber")),
            (want.state, want.reason, want.tracking_number),
        )
        wrong += have[0] != have[1]
    return wrong


def _cpu(usage: dict[str, Usage], busy: float, events: int) -> dict[str, Any]:
    tracked = sum(u.cpu_seconds for u in usage.values())
    contender = sum(u.cpu_seconds for role, u in usage.items() if role not in report.SERVICES)
    per_1k = {role: u.cpu_seconds * 1000 / events for role, u in usage.items()}
    per_1k["contender"] = contender * 1000 / events
    per_1k["other"] = max(0.0, busy - tracked) * 1000 / events
    return {
        "cpu_seconds": {role: round(u.cpu_seconds, 3) for role, u in usage.items()},
        "cpu_per_1k_events": {k: round(v, 3) for k, v in per_1k.items()},
        "peak_rss_mb": {
            role: round(u.peak_rss_mb, 1) for role, u in usage.items() if role not in ("driver",)
        },
        "noise_share": round(max(0.0, busy - tracked) / busy, 3) if busy else 0.0,
    }


def figures(spec: Spec, raw: dict[str, Any], options: argparse.Namespace) -> dict[str, Any]:
    stream: Stream = raw["stream"]
    phases: list[Phase] = raw["phases"]
    counts: dict[str, Any] = raw["counts"]
    events = stream.events
    seconds = sum(p.seconds for p in phases)
    if spec.contender == "limit-line" and "last_delete_wall" in counts:
        seconds = counts["last_delete_wall"] - phases[0].started
    sqs = {k: float(v) for k, v in counts.get("sqs_requests", {}).items()}
    before, after = raw["api"]
    queries = after["order_queries"] - before["order_queries"]
    attempts = raw["attempts"]
    accepted = {json.loads(a["body"])["idempotencyKey"] for a in attempts if a["status"] == 200}
    pushes = sum(1 for a in attempts if a["status"] in (200, 409))
    commands: Counter[str] = raw["commands"]
    commands.pop("info", None)
    feed = "saturate" if spec.feed == "saturate" else f"paced {options.paced_rate:g}/s"
    processing = spec.contender != "limit-line"
    return {
        "contender": spec.contender,
        "api_latency_ms": spec.latency_ms,
        "feed": feed,
        "feed_kind": spec.feed,
        "events": events,
        "distinct_event_ids": len(raw["sent_at"]),
        "deliveries": stream.deliveries,
        "changes": stream.changes,
        "timed_out": any(p.timed_out for p in phases),
        "mismatches": _mismatches(stream, raw["latest"]) if processing else 0,
        "max_queue_depth": max(p.max_depth for p in phases),
        "seconds": round(seconds, 3),
        "events_per_s": round(events / seconds, 1) if seconds > 0 else None,
        "latency_ms": _latency(attempts, raw["sent_at"]),
        **_cpu(raw["usage"], raw["busy"], events),
        "sqs_requests": sqs,
        "sqs_per_message": round(sum(sqs.values()) / events, 4),
        "redis_commands": sum(commands.values()),
        "redis_per_event": round(sum(commands.values()) / events, 2),
        "redis_by_command": dict(commands.most_common()),
        "api": {
            "order_queries": queries,
            "token_requests": after["token_requests"] - before["token_requests"],
            "per_event": round(queries / events, 3) if processing else None,
            "per_change": round(queries / stream.changes, 3) if processing else None,
        },
        "oms": {
            "attempts": len(attempts),
            "accepted": len(accepted),
            "conflicts_409": sum(1 for a in attempts if a["status"] == 409),
            "pushes_per_snapshot": round(pushes / len(accepted), 3) if accepted else None,
        },
        "consumer_figures": {k: v for k, v in counts.items() if k != "sqs_requests"},
    }


def _progress(run: dict[str, Any]) -> str:
    lat = run["latency_ms"]
    return (
        f"{run['contender']:>11} api={run['api_latency_ms']:g}ms {run['feed']:<12}"
        f" {run['events']} events in {run['seconds']:.1f}s = {run['events_per_s']} ev/s,"
        f" p99 {report.fmt(lat['p99'], 0)} ms, ok={not run['timed_out'] and not run['mismatches']}"
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    options = _options(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    results = ROOT / "bench" / "results"
    out = options.out or results / f"bench-{stamp}.json"
    log_dir = out.parent / f"logs-{stamp}"
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    result: dict[str, Any] = {"machine": report.machine(), "runs": []}
    result["config"] = {
        "events": options.events,
        "latencies_ms": options.latency_ms,
        "window": options.window,
        "paced_rate": options.paced_rate,
        "paced_events": options.paced_events,
        "seed": options.seed,
        "bwp": {
            "pool": options.pool,
            "concurrency": options.concurrency,
            "task_events": options.task_events,
            **BWP_SETTINGS,
            **dict(item.split("=", 1) for item in options.bwp_env),
        },
    }
    services = Services().start()
    try:
        for index, spec in enumerate(_plan(options)):
            run = run_one(spec, index, services, options, log_dir)
            result["runs"].append(run)
            print(_progress(run), flush=True)
        if options.profile:
            # pyinstrument sees one thread per process: the prefork pool runs each task on
            # a pool process's main thread (tasks/ code is the same under either pool)
            options.profile_dir, options.pool = results / f"profile-{stamp}", "prefork"
            options.concurrency = min(options.concurrency, 4)
            run_one(Spec("bwp-worker", 0, "saturate"), 99, services, options, log_dir)
            print(f"profiles: {options.profile_dir}", flush=True)
    finally:
        services.stop()
    result["machine"]["seconds_total"] = round(time.monotonic() - started, 1)
    result["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    out.write_text(json.dumps(result, indent=2))
    section = report.render(result)
    print("\n" + section + f"\n\nJSON: {out}\nlogs: {log_dir}")
    if not options.no_doc:
        report.update_doc(options.doc, section)
        chart = options.doc.with_suffix(".png")
        draw(result["runs"], chart)
        print(f"doc: {options.doc}\nchart: {chart}")
    return result


if __name__ == "__main__":
    main()
