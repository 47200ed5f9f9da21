"""``bwp-worker demo``: the whole pipeline on embedded stand-ins; exit 0 when it ended right.

Starts the local stack (embedded Redis unless REDIS_URL is set, moto's SQS, the sandbox
order API and OMS), runs the Procfile's poller and Celery worker as real processes, plays
``sandbox.demo.story``, then checks what the OMS holds against the API (``demo_report``).
The sandbox is imported inside the command only: production code never needs it.
"""

from __future__ import annotations

import logging
import shutil
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, get_args

import click
import redis

from config.settings import ApiVersion
from sandbox.demo.collect import api_views, oms_views, read_dlq, scrape_metrics
from sandbox.demo.live import free_port, keep_running
from sandbox.demo.report import Figures, Outcome, compare, render_summary, render_table, verdict
from sandbox.demo.story import Journal, Say, Story, plan
from tasks.events.catalog import DELIVERY_EVENTS, MILESTONE_EVENT

if TYPE_CHECKING:
    from sandbox.stack import LocalStack


@click.command()
@click.option(
    "--orders",
    type=click.IntRange(4, 40),
    default=5,
    show_default=True,
    help="Orders in the story.",
)
@click.option(
    "--api-version",
    type=click.Choice(get_args(ApiVersion)),
    default="2024-11-01",
    show_default=True,
    help="BWP_API_VERSION of the worker processes.",
)
@click.option(
    "--keep-running",
    is_flag=True,
    help="After the summary, leave everything up with Flower until Ctrl-C.",
)
@click.option(
    "--redis-url",
    envvar="REDIS_URL",
    default=None,
    help="Use this Redis under a unique key prefix, removed afterwards [REDIS_URL]. "
    "Embedded Redis when unset.",
)
def demo(orders: int, api_version: str, keep_running: bool, redis_url: str | None) -> None:
    """Run the whole pipeline on local stand-ins.

    Plays a scripted story (twins, a redelivery, a late event, a malformed message, an
    unhandled event type) and exits 0 when the OMS ended with the order API's state.
    """
    try:
        from sandbox.stack import LocalStack, StackOptions
    except ImportError as exc:
        hint = "pip install 'bwp-worker[sandbox]'"
        click.echo(f"bwp-worker demo: needs the sandbox extra ({exc}): {hint}", err=True)
        sys.exit(2)
    # moto's SQS server logs every request through werkzeug's logger, which gives itself
    # a stderr handler: keep those lines out of the story.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    log_dir = Path(tempfile.mkdtemp(prefix="bwp-demo-"))
    options = StackOptions(
        redis_url=redis_url or None,
        api_version=api_version,
        # all nine, and the milestone: twins happen as they would
        subscriptions=(*DELIVERY_EVENTS, MILESTONE_EVENT),
        key_prefix=f"bwp-demo-{uuid.uuid4().hex[:8]}:",
        log_dir=log_dir,
        # moto's SQS rebuilds its message list without a lock on delete: under load a
        # message can stay "in flight" after its delete. A short visibility timeout lets
        # it come back (and be absorbed as a duplicate) well inside the settle timeout.
        sqs_visibility_timeout=10,
    )
    stack = LocalStack(options)
    started = time.monotonic()
    code = 1  # also when something unforeseen escapes: the logs are kept
    # SIGTERM (e.g. a test's timeout) ends the demo like Ctrl-C: everything is stopped.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        code = _run(stack, orders, keep_running)
    except KeyboardInterrupt:
        click.echo("Interrupted.")
        code = 130
    finally:
        stack.stop()
        signal.signal(signal.SIGTERM, previous)
        if code != 1 or not any(log_dir.iterdir()):
            shutil.rmtree(log_dir, ignore_errors=True)
    click.echo(f"Stopped everything; {time.monotonic() - started:.1f} s in all.")
    sys.exit(code)


def _run(stack: LocalStack, orders: int, keep: bool) -> int:
    started = time.monotonic()
    say = click.echo
    where = "embedded Redis" if stack.options.redis_url is None else "Redis from REDIS_URL"
    say(f"Starting the local stack ({where}, moto SQS, sandbox order API and OMS)…")
    try:
        stack.start()
        stack.redis.ping()
    except (RuntimeError, ValueError, OSError, redis.RedisError) as exc:
        say(f"✗ the local stack did not start: {type(exc).__name__}: {exc}")
        return 1
    say(f"  Redis keys under {stack.options.key_prefix!r} (removed at the end)")
    metrics_port = free_port()
    # Pinned so that a shell's own CELERY_BROKER_URL or UNSUPPORTED_EVENTS cannot leak in.
    poller = stack.start_poller(
        METRICS_PORT=str(metrics_port),
        CELERY_BROKER_URL=stack.redis_url,
        UNSUPPORTED_EVENTS="ack",
    )
    worker_metrics_port = free_port()
    worker = stack.start_worker(
        CELERY_BROKER_URL=stack.redis_url, WORKER_METRICS_PORT=str(worker_metrics_port)
    )
    say(
        f"  poller (pid {poller.popen.pid}, metrics on :{metrics_port}) and Celery worker "
        f"(pid {worker.popen.pid}, metrics on :{worker_metrics_port}) running; "
        f"API version {stack.options.api_version}"
    )
    try:
        journal = Story(stack, orders, say).run()
    except (TimeoutError, RuntimeError) as exc:
        say(f"✗ {str(exc).splitlines()[0]}")
        say(f"  logs: {stack.log_dir}")
        return 1
    reasons = _report(stack, journal, metrics_port, say)
    if reasons:
        say("✗ The demo did not end right:")
        for reason in reasons:
            say(f"  - {reason}")
        say(f"  logs: {stack.log_dir}")
        return 1
    say(
        f"✓ The OMS holds the order API's state for every delivery "
        f"({time.monotonic() - started:.1f} s)."
    )
    if keep:
        return keep_running(stack, metrics_port, plan(orders)[0].order_id, say)
    return 0


def _report(stack: LocalStack, journal: Journal, metrics_port: int, say: Say) -> list[str]:
    """Print the summary and the table; return the verdict's reasons (empty: ended right)."""
    parked = read_dlq(stack)
    repeated = stack.oms.duplicates()
    figures = Figures(
        sent=dict(journal.sent),
        order_api_calls=int(stack.api.stats()["order_queries"]),
        oms_pushes=len(stack.oms.received),
        repeated_keys=repeated,
        parked=parked,
        poller=scrape_metrics(metrics_port),
    )
    rows = compare(api_views(stack), oms_views(stack))
    say("")
    say("Summary")
    for line in render_summary(figures):
        say(line)
    say("")
    say("Deliveries")
    for line in render_table(rows):
        say(line)
    say("")
    outcome = Outcome(rows, repeated, parked, journal.malformed_body, stack.queue_counts())
    return verdict(outcome)
