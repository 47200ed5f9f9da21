"""What every peer shares: configuration, a counted SQS client, and the per-event work.

The per-event work is what a merchant writing a consumer by hand would write: parse the
event, query the order (token from the token endpoint, cached until it expires), pick the
event's delivery, POST its snapshot to the OMS. It reuses the project's pure pieces
(order query text, snapshot extraction, OMS body and signature) so that the peers differ
from bwp-worker in how they consume, not in what they compute.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import httpx

from tasks.delivery.snapshot import extract_snapshots
from tasks.events.envelope import DeliveryEvent, parse_delivery_event
from tasks.oms.payload import delivery_update, encode, signature
from tasks.order_api.queries import order_request

WAIT_SECONDS = 20  # long polling, as Lambda's event source mapping does
_OMS_OK = frozenset({200, 201, 202, 204, 409})  # 409: already applied


@dataclass(frozen=True)
class PeerConfig:
    queue_url: str
    endpoint_url: str | None
    region: str
    redis_url: str
    api_url: str
    token_url: str
    client_id: str
    client_secret: str
    api_version: str
    oms_url: str
    signing_secret: str | None
    auth_token: str | None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> PeerConfig:
        """The contract's variables (docs/contract.md); KeyError when one is missing."""
        return cls(
            queue_url=env["SQS_QUEUE_URL"],
            endpoint_url=env.get("AWS_ENDPOINT_URL"),
            region=env.get("AWS_REGION", "us-east-1"),
            redis_url=env.get("REDIS_URL", "redis://localhost:6379/0"),
            api_url=env["BWP_API_URL"],
            token_url=env["BWP_TOKEN_URL"],
            client_id=env["BWP_CLIENT_ID"],
            client_secret=env["BWP_CLIENT_SECRET"],
            api_version=env.get("BWP_API_VERSION", "2024-11-01"),
            oms_url=env["OMS_URL"],
            signing_secret=env.get("OMS_SIGNING_SECRET") or None,
            auth_token=env.get("OMS_AUTH_TOKEN") or None,
        )


class CountedSqs:
    """A boto3 SQS client whose HTTP requests are counted per operation (retries included)."""

    def __init__(self, config: PeerConfig) -> None:
        self.client: Any = boto3.client(
            "sqs", region_name=config.region, endpoint_url=config.endpoint_url
        )
        self.queue_url = config.queue_url
        self.requests: Counter[str] = Counter()
        self.client.meta.events.register("before-send.sqs", self._count)

    def _count(self, event_name: str, **_: Any) -> None:
        self.requests[event_name.rsplit(".", 1)[-1]] += 1

    def receive(self, max_messages: int) -> list[dict[str, Any]]:
        reply = self.client.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=max_messages,
            WaitTimeSeconds=WAIT_SECONDS,
            MessageSystemAttributeNames=["All"],
        )
        messages: list[dict[str, Any]] = reply.get("Messages", [])
        return messages

    def delete_batch(self, messages: list[dict[str, Any]]) -> None:
        entries = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
        ]
        if entries:
            self.client.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)


class EventSync:
    """Query the order an event names and push the event's delivery to the OMS."""

    def __init__(self, config: PeerConfig) -> None:
        self._cfg = config
        self._http = httpx.Client(timeout=10.0)  # one client, reused: connections stay open
        self._token: str | None = None
        self._token_expires = 0.0

    def __call__(self, body: str) -> int:
        """The OMS status (2xx or 409); raises on anything else, so the message comes back."""
        event = parse_delivery_event(body)
        if not isinstance(event, DeliveryEvent):
            return 0  # not a delivery event: nothing to do
        order = self._fetch_order(event.business_product_id, event.order_id)
        snapshots = extract_snapshots(
            order, business_product_id=event.business_product_id, api_version=self._cfg.api_version
        )
        snapshot = snapshots.get(event.delivery_id)
        if snapshot is None:
            raise LookupError(f"delivery {event.delivery_id} is not on order {event.order_id}")
        envelope = event.envelope
        update = delivery_update(
            snapshot,
            event_id=envelope.id,
            detail_type=envelope.detail_type,
            event_time=envelope.time,
            observed_at=datetime.now(UTC),
        )
        return self._push(update)

    def _token_value(self) -> str:
        if self._token is None or time.monotonic() >= self._token_expires:
            reply = self._http.post(
                self._cfg.token_url,
                data={
                    "grant_type": "client_credentials",
                    "client_id": self._cfg.client_id,
                    "client_secret": self._cfg.client_secret,
                },
            )
            reply.raise_for_status()
            payload = reply.json()
            self._token = str(payload["access_token"])
            self._token_expires = time.monotonic() + float(payload["expires_in"]) - 60
        return self._token

    def _fetch_order(self, business_product_id: str, order_id: str) -> dict[str, Any]:
        for attempt in (1, 2):
            headers = {
                "Authorization": f"Bearer {self._token_value()}",
                "x-api-version": self._cfg.api_version,
                "x-api-target-id": business_product_id,
            }
            reply = self._http.post(
                self._cfg.api_url,
                json=order_request(self._cfg.api_version, order_id),
                headers=headers,
            )
            if reply.status_code == 401 and attempt == 1:
                self._token = None  # revoked or expired early: one fresh token, one retry
                continue
            reply.raise_for_status()
            payload = reply.json()
            if payload.get("errors") or not (payload.get("data") or {}).get("order"):
                raise RuntimeError(f"order API error for {order_id}: {payload.get('errors')}")
            order: dict[str, Any] = payload["data"]["order"]
            return order
        raise RuntimeError("order API refused a fresh token")

    def _push(self, update: dict[str, Any]) -> int:
        raw = encode(update)
        headers = {"Content-Type": "application/json", "Idempotency-Key": update["idempotencyKey"]}
        if self._cfg.signing_secret:
            headers["X-Signature"] = signature(self._cfg.signing_secret, int(time.time()), raw)
        if self._cfg.auth_token:
            headers["Authorization"] = f"Bearer {self._cfg.auth_token}"
        reply = self._http.post(self._cfg.oms_url, content=raw, headers=headers)
        if reply.status_code not in _OMS_OK:
            raise RuntimeError(f"OMS answered {reply.status_code}: {reply.text[:200]}")
        return reply.status_code


Loop = Callable[[PeerConfig, CountedSqs, dict[str, float]], None]


def run_peer(description: str, loop: Loop) -> None:
    """Parse ``--counts``/``--ready``, run ``loop`` until SIGTERM, then write the counts.

    ``loop`` gets the configuration, the counted SQS client and a dict for its own figures;
    the file gets ``{"sqs_requests": {operation: n}, **figures}``. SIGUSR1 writes the
    counts so far to ``<counts>.base`` (the driver's baseline after its warm-up).
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--counts", type=Path, required=True, help="write the counts here at exit")
    parser.add_argument("--ready", type=Path, help="touch this file once the clients are built")
    args = parser.parse_args()
    config = PeerConfig.from_env()
    sqs, figures = CountedSqs(config), dict[str, float]()

    def write(path: Path) -> None:
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps({"sqs_requests": dict(sqs.requests), **figures}))
        partial.replace(path)  # whole or not at all: the driver polls for it

    # SIGTERM ends the process from wherever it is (a long poll, mostly): the figures are
    # written on the way out, and what was not deleted comes back after its visibility.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGUSR1, lambda *_: write(args.counts.with_suffix(".base")))
    try:
        if args.ready:
            args.ready.touch()
        loop(config, sqs, figures)
    finally:
        write(args.counts)
