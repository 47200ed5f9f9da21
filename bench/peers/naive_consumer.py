"""A hand-rolled boto3 loop: receive one message, process it, delete it.

No batching, no idempotency layer: a redelivered message is processed again (one more
order query and push, which the OMS answers with 409). A failed message is left in the
queue and comes back after its visibility timeout.
"""

from __future__ import annotations

from bench.peers.common import CountedSqs, EventSync, PeerConfig, run_peer


def consume(config: PeerConfig, sqs: CountedSqs, figures: dict[str, float]) -> None:
    sync = EventSync(config)
    while True:
        for message in sqs.receive(1):
            figures["records"] = figures.get("records", 0) + 1
            try:
                sync(message["Body"])
            except Exception:  # noqa: BLE001 - left in the queue: it comes back
                figures["failures"] = figures.get("failures", 0) + 1
                continue
            sqs.client.delete_message(
                QueueUrl=sqs.queue_url, ReceiptHandle=message["ReceiptHandle"]
            )


if __name__ == "__main__":
    run_peer(__doc__ or "", consume)
