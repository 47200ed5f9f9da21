"""``bwp-worker stats``: where the work is right now, read from SQS, the broker and the ledger.

Every reading is one read-only call. A reading that cannot be taken carries its error
instead of a number; one that does not apply (no DLQ, a broker that is not Redis)
carries neither, and says why.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import botocore.exceptions
import redis

from config.clients import queue_name
from config.settings import Settings
from tasks.celery import celery_queue_key
from tasks.keys import Keys

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.literals import QueueAttributeFilterType

#: the broker URL schemes whose Celery queue is a Redis list (as worker.poller.runner reads it)


@dataclass(frozen=True, slots=True)
class Reading:
    name: str
    label: str
    value: int | None
    note: str = ""
    error: str | None = None


@dataclass(frozen=True, slots=True)
class StatsSources:
    """The clients stats reads from; ``broker`` is None when the broker is not Redis."""

    settings: Settings
    sqs: SQSClient
    ledger: redis.Redis
    broker: redis.Redis | None


def collect_stats(sources: StatsSources) -> list[Reading]:
    """Every reading, in display order. Raises nothing for an unreachable dependency."""
    s = sources.settings
    keys = Keys(s.redis_key_prefix)
    readings = _queue_readings(sources.sqs, s.sqs_queue_url, s.sqs_dlq_url)
    key = celery_queue_key(s)
    if key is None or sources.broker is None:
        readings.append(
            Reading("celery_queue_depth", "celery queue depth", None, "broker is not Redis")
        )
    else:
        readings.append(
            _redis_reading(
                "celery_queue_depth", "celery queue depth", s.celery_queue, sources.broker.llen, key
            )
        )
    readings.append(
        _redis_reading(
            "ledger_queued",
            "ledger: queued events",
            "published, task not finished",
            sources.ledger.zcard,
            keys.queued_index,
        )
    )
    readings.append(
        _redis_reading(
            "open_deliveries",
            "ledger: open deliveries",
            "pushed, not yet terminal",
            sources.ledger.zcard,
            keys.open_deliveries,
        )
    )
    return readings


def _queue_readings(sqs: SQSClient, queue_url: str | None, dlq_url: str | None) -> list[Reading]:
    names: tuple[QueueAttributeFilterType, ...] = (
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
    )
    readings: list[Reading] = []
    if not queue_url:
        readings.append(Reading("queue_visible", "queue: visible", None, "SQS_QUEUE_URL not set"))
        readings.append(Reading("queue_in_flight", "queue: in flight", None))
    else:
        values, error = _attributes(sqs, queue_url, names)
        name = queue_name(queue_url)
        readings.append(Reading("queue_visible", "queue: visible", values[0], name, error))
        readings.append(
            Reading(
                "queue_in_flight", "queue: in flight", values[1], "received, not deleted", error
            )
        )
    if not dlq_url:
        readings.append(Reading("dlq_depth", "dlq: depth", None, "SQS_DLQ_URL not set"))
    else:
        values, error = _attributes(sqs, dlq_url, names[:1])
        readings.append(Reading("dlq_depth", "dlq: depth", values[0], queue_name(dlq_url), error))
    return readings


def _attributes(
    sqs: SQSClient, url: str, names: Sequence[QueueAttributeFilterType]
) -> tuple[list[int | None], str | None]:
    """The integer attributes ``names`` of the queue at ``url``, or the error reading them."""
    try:
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(names))
    except botocore.exceptions.ClientError as exc:
        error = exc.response.get("Error", {})
        return [None] * len(names), f"{error.get('Code')}: {error.get('Message')}"
    except botocore.exceptions.BotoCoreError as exc:
        return [None] * len(names), f"unreachable: {type(exc).__name__}"
    values: dict[str, str] = {str(k): v for k, v in attrs.get("Attributes", {}).items()}
    return [int(values.get(n, "0")) for n in names], None


def _redis_reading(
    name: str, label: str, note: str, command: Callable[[str], Any], key: str
) -> Reading:
    try:
        value = int(command(key))
    except redis.RedisError as exc:
        return Reading(name, label, None, note, f"{type(exc).__name__}: {exc}")
    return Reading(name, label, value, note)
