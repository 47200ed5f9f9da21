"""The reference a Lambda user would write: Powertools' batch and idempotency utilities.

``process_partial_response`` with a ``BatchProcessor(EventType.SQS)`` runs one record
handler per message; the handler's work is made idempotent on the envelope id with
``idempotent_function`` and the Redis persistence layer, so a redelivered message is
answered from Redis. Each new event queries its order and pushes its delivery: there is
no guard across events (twins each cost a query and a push, which the OMS answers with
409), as the documented pattern does not have one. Lambda's event source mapping is
played by a plain loop: receive 10, process the batch, delete the records that succeeded.

Powertools' idempotency is synchronous only (an async decorator was declined upstream,
aws-powertools/powertools-lambda-python#4483), so there is no async variant here.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.idempotency.persistence.redis import (
    RedisCachePersistenceLayer,
)

from bench.peers.common import CountedSqs, EventSync, PeerConfig, run_peer


def lambda_record(message: dict[str, Any], region: str) -> dict[str, Any]:
    """An SQS message in the shape Lambda hands it to a function."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": message.get("MessageAttributes", {}),
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:bench",
        "awsRegion": region,
    }


def consume(config: PeerConfig, sqs: CountedSqs, figures: dict[str, float]) -> None:
    sync = EventSync(config)
    persistence = RedisCachePersistenceLayer(url=config.redis_url)
    idempotency = IdempotencyConfig(event_key_jmespath="id")

    def push_event(body: str, event: dict[str, Any]) -> dict[str, int]:
        return {"oms_status": sync(body)}

    push_once = idempotent_function(
        push_event, data_keyword_argument="event", persistence_store=persistence, config=idempotency
    )

    def record_handler(record: SQSRecord) -> dict[str, int]:
        result: dict[str, int] = push_once(body=record.body, event=json.loads(record.body))
        return result

    processor = BatchProcessor(event_type=EventType.SQS)
    while True:
        messages = sqs.receive(10)
        if not messages:
            continue
        event = {"Records": [lambda_record(m, config.region) for m in messages]}
        response = process_partial_response(
            event=event, record_handler=record_handler, processor=processor
        )
        failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
        sqs.delete_batch([m for m in messages if m["MessageId"] not in failed])
        figures["records"] = figures.get("records", 0) + len(messages)
        figures["failures"] = figures.get("failures", 0) + len(failed)


if __name__ == "__main__":
    run_peer(__doc__ or "", consume)
