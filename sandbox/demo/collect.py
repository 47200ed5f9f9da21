"""Read what a demo run left behind: the API's and the OMS's deliveries, the DLQ, and the
poller's /metrics. Each reader takes the running stack (or a port) and returns plain data
for ``sandbox.demo.report``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import httpx

from sandbox.demo.report import DeliveryView, Key, Parked, Samples, oms_view, parse_metrics

if TYPE_CHECKING:  # the sandbox is never imported by production code at import time
    from mypy_boto3_sqs.type_defs import MessageAttributeValueOutputTypeDef

    from sandbox.stack import LocalStack


def api_views(stack: LocalStack) -> dict[Key, DeliveryView]:
    """Every delivery as the sandbox order API holds it, with its line items."""
    views: dict[Key, DeliveryView] = {}
    for (order_id, delivery_id), delivery in stack.api.store.all_deliveries().items():
        order = stack.api.store.get_order(order_id)
        items = sorted(
            (li.id, li.quantity)
            for li in (order.line_items if order else [])
            if li.delivery_id == delivery_id
        )
        views[order_id, delivery_id] = DeliveryView(
            state=delivery.state,
            reason=delivery.reason,
            tracking_number=delivery.tracking_number,
            carrier_code=delivery.carrier_code,
            line_items=tuple(items),
        )
    return views


def oms_views(stack: LocalStack) -> dict[Key, DeliveryView]:
    """The latest delivery update the sandbox OMS accepted, per delivery."""
    return {key: oms_view(body) for key, body in stack.oms.latest().items()}


def read_dlq(stack: LocalStack, max_messages: int = 100) -> list[Parked]:
    """The messages parked in the DLQ, with their ``bwp-error-kind`` and ``bwp-error``.

    Reading hides each message for a while (its visibility timeout); nothing is deleted.
    """
    parked: dict[str, Parked] = {}
    while len(parked) < max_messages:
        reply = stack.sqs.receive_message(
            QueueUrl=stack.dlq_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            VisibilityTimeout=10,
            MessageAttributeNames=["All"],
        )
        messages = [m for m in reply.get("Messages", []) if m["MessageId"] not in parked]
        if not messages:
            break
        for message in messages:
            attrs = message.get("MessageAttributes", {})
            parked[message["MessageId"]] = Parked(
                kind=_attribute(attrs, "bwp-error-kind"),
                reason=_attribute(attrs, "bwp-error"),
                body=message.get("Body", ""),
            )
    return list(parked.values())


def _attribute(attrs: Mapping[str, MessageAttributeValueOutputTypeDef], name: str) -> str:
    value = attrs.get(name)
    return value.get("StringValue", "?") if value is not None else "?"


def scrape_metrics(port: int, timeout: float = 3.0) -> Samples | None:
    """The poller's counters from ``/metrics`` on ``port``; None when it does not answer."""
    try:
        reply = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=timeout)
        reply.raise_for_status()
    except httpx.HTTPError:
        return None
    return parse_metrics(reply.text)
