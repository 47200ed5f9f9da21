"""The ``bwp-worker`` command line. The only place that configures logging."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from config.clients import make_sqs
from config.logging import configure_logging
from config.settings import Settings, SettingsError, process_settings, refuse_to_start
from tasks.events.catalog import DELIVERY_EVENTS, MILESTONE_EVENT
from tasks.events.samples import build_event, to_body


def _settings() -> Settings:
    settings = process_settings()
    configure_logging(settings)
    return settings


class _Commands(click.Group):
    """The command group; ``demo`` comes from the sandbox extra and is imported only when
    it is asked for (or listed), so ``bwp-worker poll`` never loads the stand-ins."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), "demo"})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name != "demo":
            return super().get_command(ctx, cmd_name)
        try:
            from sandbox.demo.run import demo
        except ImportError as exc:
            return _no_sandbox(exc)
        return demo


def _no_sandbox(exc: ImportError) -> click.Command:
    @click.command("demo", context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def demo(args: tuple[str, ...]) -> None:
        """Run the whole pipeline on local stand-ins (needs the sandbox extra)."""
        hint = "pip install 'bwp-worker[sandbox]'"
        click.echo(f"bwp-worker demo: needs the sandbox extra ({exc}): {hint}", err=True)
        sys.exit(2)

    return demo


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="bwp-worker", prog_name="bwp-worker")
def cli() -> None:
    """bwp-worker: keep an order management system in step with Buy with Prime deliveries."""


@cli.command()
@click.option(
    "--max-polls", type=int, default=None, help="Stop after this many receives (testing)."
)
def poll(max_polls: int | None) -> None:
    """Long-poll SQS_QUEUE_URL, dedup, and dispatch one Celery task per new event."""
    from worker.poller.runner import run_poller

    run_poller(_settings(), max_polls=max_polls)


@cli.command("send-event")
@click.option(
    "--queue-url", envvar="SQS_QUEUE_URL", required=True, help="Target queue [SQS_QUEUE_URL]."
)
@click.option(
    "--detail-type",
    type=click.Choice([*sorted(DELIVERY_EVENTS), MILESTONE_EVENT]),
    default="PACKAGE_DELIVERED",
)
@click.option("--business-product-id", default="bp-demo")
@click.option("--order-id", default="322-DEMO-000001")
@click.option("--delivery-id", default="d-1")
@click.option(
    "--tracking-number",
    default=None,
    help=f"The tracker a {MILESTONE_EVENT} names (required for it; a pushed tracking number).",
)
@click.option("--carrier", default="ups", help=f"The tracker's carrier code ({MILESTONE_EVENT}).")
@click.option("--event-id", default=None, help="Envelope id (a fresh UUID when omitted).")
@click.option(
    "--body-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Send this file's content as the body instead (hand-written event).",
)
@click.option("--count", type=int, default=1, help="Send the same message this many times.")
def send_event(
    queue_url: str,
    detail_type: str,
    business_product_id: str,
    order_id: str,
    delivery_id: str,
    tracking_number: str | None,
    carrier: str,
    event_id: str | None,
    body_file: Path | None,
    count: int,
) -> None:
    """Publish a sample or hand-written event to a queue, as EventBridge would.

    A delivery event names the order and the delivery; a milestone event
    (PACKAGE_TRACKER_MILESTONE_CHANGED) names a carrier and a tracking number instead.
    """
    if body_file is not None:
        body = body_file.read_text()
    elif detail_type == MILESTONE_EVENT:
        if not tracking_number:
            raise click.UsageError(f"{MILESTONE_EVENT} needs --tracking-number")
        event = build_event(
            detail_type,
            business_product_id=business_product_id,
            tracker=(carrier, tracking_number),
            event_id=event_id,
        )
        body = to_body(event)
    else:
        event = build_event(
            detail_type,
            business_product_id=business_product_id,
            order_id=order_id,
            delivery_id=delivery_id,
            event_id=event_id,
        )
        body = to_body(event)
    settings = _settings()
    sqs = make_sqs(settings)
    for _ in range(count):
        reply = sqs.send_message(QueueUrl=queue_url, MessageBody=body)
        click.echo(json.dumps({"messageId": reply["MessageId"], "queueUrl": queue_url}))


def _register() -> None:
    from worker.ops.commands import COMMANDS

    for command in COMMANDS:
        cli.add_command(command)


_register()


def main() -> None:
    """Entry point: one-line errors on bad configuration, exit code 2."""
    try:
        code = cli.main(standalone_mode=False)  # ctx.exit(n) comes back as n here
    except SettingsError as exc:
        refuse_to_start(exc)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
