"""Operator commands: check, stats, replay-dlq, sync-order.

The click layer only parses options, loads settings, prints and sets the exit code: the
work is done by plain functions in ``worker.ops_*``. Exit codes: 0 ok, 1 something is
red or failed, 2 configuration error (``worker.cli.main`` turns SettingsError into 2).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import botocore.exceptions
import click

from config.clients import make_redis, make_sqs
from config.logging import configure_logging
from config.secrets import Redactor
from config.settings import Settings, process_settings
from tasks.celery import celery_queue_key
from tasks.errors import BwpError
from tasks.runtime import build_runtime
from worker.ops.check import CHECKS_FOR, CheckResult, Probes, Role, run_checks
from worker.ops.replay import REPLAYABLE_KINDS, ReplayReport, replay_dead_letters
from worker.ops.stats import Reading, StatsSources, collect_stats
from worker.ops.sync import resync_order

_TIMEOUT = click.option(
    "--timeout",
    type=click.FloatRange(0.1, 60),
    default=3.0,
    show_default=True,
    help="Seconds each probe may take.",
)
_JSON = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
_MARKS = {"ok": ("ok", "green"), "warn": ("WARN", "yellow"), "fail": ("FAIL", "red")}


def _settings() -> Settings:
    settings = process_settings()
    configure_logging(settings)
    return settings


def _exit(code: int) -> None:
    # SystemExit, not ctx.exit(): cli.main runs click with standalone_mode=False, which
    # would turn ctx.exit(1) into a return value and the process into exit 0.
    if code:
        raise SystemExit(code)


# --- check -------------------------------------------------------------------------------
@click.command("check")
@click.option(
    "--for",
    "role",
    type=click.Choice(sorted(CHECKS_FOR)),
    default="all",
    show_default=True,
    help="Check only what this process needs (poll: the poller, worker: Celery workers).",
)
@_TIMEOUT
@_JSON
def check(role: Role, timeout: float, as_json: bool) -> None:
    """Probe every dependency once: a green/red line each, exit 1 if any is red.

    Configuration, SQS queue and DLQ (GetQueueAttributes), Redis (PING), the Celery
    broker, the Buy with Prime token endpoint (one client-credentials request; the
    secret and the token are never printed), the order query (read-only, for a made-up
    order: names a missing Read Order or package-tracker permission, warns that
    2024-01-01's query shape is inferred) and the OMS (one OPTIONS request, which
    applies nothing; any answer below 500 is green).
    """
    settings = _settings()
    probes = Probes.build(settings, timeout)
    try:
        results = run_checks(probes, role)
    finally:
        probes.close()
    healthy = all(r.ok for r in results)
    if as_json:
        checks = [{"name": r.name, "status": r.status, "detail": r.detail} for r in results]
        click.echo(json.dumps({"ok": healthy, "for": role, "checks": checks}, indent=2))
    else:
        for result in results:
            click.echo(_check_line(result))
        red = sum(not r.ok for r in results)
        click.echo("all green" if healthy else f"{red} red")
    _exit(0 if healthy else 1)


def _check_line(result: CheckResult) -> str:
    mark, colour = _MARKS[result.status]
    return f"{click.style(f'{mark:<4}', fg=colour, bold=True)}  {result.name:<13}  {result.detail}"


# --- stats -------------------------------------------------------------------------------
@click.command("stats")
@_TIMEOUT
@_JSON
def stats(timeout: float, as_json: bool) -> None:
    """Queue depth and in-flight count, DLQ depth, Celery queue depth, and the ledger's
    queued events and open deliveries. Exit 1 when a number could not be read."""
    settings = _settings()
    broker_key = celery_queue_key(settings)
    sources = StatsSources(
        settings,
        make_sqs(settings, probe_timeout=timeout),
        make_redis(settings.redis_url, probe_timeout=timeout),
        make_redis(settings.broker_url, probe_timeout=timeout) if broker_key else None,
    )
    try:
        readings = collect_stats(sources)
    finally:
        sources.sqs.close()
        sources.ledger.close()
        if sources.broker is not None:
            sources.broker.close()
    scrubber = Redactor(settings.secrets())
    errors = {r.name: scrubber.scrub_text(r.error) for r in readings if r.error}
    if as_json:
        document: dict[str, Any] = {r.name: r.value for r in readings}
        document["errors"] = errors
        click.echo(json.dumps(document, indent=2))
    else:
        for reading in readings:
            click.echo(_stats_line(reading, errors.get(reading.name)))
    _exit(1 if errors else 0)


def _stats_line(reading: Reading, error: str | None) -> str:
    if error:
        value, note = click.style("error", fg="red", bold=True), error
    else:
        value, note = ("-" if reading.value is None else str(reading.value)), reading.note
    return f"{reading.label:<24} {value:>8}  {note}".rstrip()


# --- replay-dlq --------------------------------------------------------------------------
@click.command("replay-dlq")
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    type=click.Choice(sorted(REPLAYABLE_KINDS)),
    help="Replay only messages parked with this bwp-error-kind (repeatable; default all). "
    "'redriven' selects messages SQS's redrive policy moved (no bwp-error-kind).",
)
@click.option(
    "--max", "limit", type=click.IntRange(min=1), default=None, help="Move at most N messages."
)
@click.option("--dry-run", is_flag=True, help="Count what would move; move nothing.")
def replay_dlq(kinds: tuple[str, ...], limit: int | None, dry_run: bool) -> None:
    """Move parked messages from SQS_DLQ_URL back to SQS_QUEUE_URL, original bodies unchanged.

    Messages of other kinds stay in the DLQ and are visible again when the run ends.
    Stops when the DLQ is drained or --max messages were moved.
    """
    settings = _settings()
    settings.require("sqs_dlq_url", "sqs_queue_url")
    assert settings.sqs_dlq_url is not None and settings.sqs_queue_url is not None
    sqs = make_sqs(settings)
    try:
        report = replay_dead_letters(
            sqs,
            dlq_url=settings.sqs_dlq_url,
            queue_url=settings.sqs_queue_url,
            kinds=frozenset(kinds),
            limit=limit,
            dry_run=dry_run,
        )
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        reason = Redactor(settings.secrets()).scrub_text(f"{type(exc).__name__}: {exc}")
        click.echo(f"bwp-worker: replay-dlq failed: {reason}", err=True)
        raise SystemExit(1) from None
    finally:
        sqs.close()
    for line in _replay_lines(report):
        click.echo(line)
    if report.failed:
        click.echo("bwp-worker: some messages were not taken by the queue; rerun", err=True)
    _exit(1 if report.failed else 0)


def _replay_lines(report: ReplayReport) -> list[str]:
    moved = "would move" if report.dry_run else "moved"
    lines = [f"{'kind':<22} {moved:>10} {'kept':>6} {'failed':>6}"]
    for kind in report.kinds():
        counts = (report.moved[kind], report.kept[kind], report.failed[kind])
        lines.append(f"{kind:<22} {counts[0]:>10} {counts[1]:>6} {counts[2]:>6}")
    totals = (report.moved.total(), report.kept.total(), report.failed.total())
    lines.append(f"{'total':<22} {totals[0]:>10} {totals[1]:>6} {totals[2]:>6}")
    if report.not_deleted:
        lines.append(f"{report.not_deleted} sent but not deleted from the DLQ: seen again later")
    return lines


# --- sync-order --------------------------------------------------------------------------
@click.command("sync-order")
@click.argument("order_id")
@click.option(
    "--business-product-id",
    "business_product_id",
    default=None,
    help="The order's business product id [default: BWP_TARGET_ID].",
)
def sync_order_command(order_id: str, business_product_id: str | None) -> None:
    """Re-query ORDER_ID and push every delivery that changed, through the same guard.

    Prints one line per delivery with its outcome (pushed, unchanged, backwards); exit 1
    with the one-line reason when the query or a push fails.
    """
    settings = _settings()
    bp = business_product_id or settings.bwp_target_id
    if not bp:
        raise click.UsageError("--business-product-id is required when BWP_TARGET_ID is not set")
    runtime = build_runtime(settings)
    try:
        outcomes = resync_order(runtime.deps, bp, order_id, datetime.now(UTC))
    except BwpError as exc:
        reason = Redactor(settings.secrets()).scrub_text(f"{type(exc).__name__}: {exc}")
        click.echo(f"bwp-worker: sync-order {order_id} failed: {reason}", err=True)
        raise SystemExit(1) from None
    finally:
        runtime.close()
    if not outcomes:
        click.echo(f"{order_id}: the order has no deliveries")
    for delivery_id, outcome in outcomes.items():
        click.echo(f"{order_id}/{delivery_id}  {outcome}")


COMMANDS: list[click.Command] = [check, stats, replay_dlq, sync_order_command]
