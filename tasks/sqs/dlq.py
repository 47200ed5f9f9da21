"""Park messages in the dead-letter queue with their reason (contract: "Dead-letter messages").

The original body is kept unchanged; ``bwp-error-kind``, ``bwp-error`` and
``bwp-event-id`` travel as message attributes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import botocore.exceptions
import structlog

from tasks.errors import DeadLetterUnavailable
from tasks.sqs.batches import send_batches

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

KINDS: Final = frozenset(
    {
        "malformed",
        "unsupported",
        "conflict",
        "permanent-api-error",
        "permanent-oms-error",
        "retries-exhausted",
    }
)
_MAX_REASON = 500
log = structlog.get_logger("bwp.dlq")


@dataclass(frozen=True, slots=True)
class Parcel:
    body: str
    kind: str
    reason: str
    event_id: str | None = None


def one_line(text: str, limit: int = _MAX_REASON) -> str:
    return " ".join(text.split())[:limit] or "-"


def _attributes(parcel: Parcel, redact: Callable[[str], str]) -> dict[str, Any]:
    attrs = {
        "bwp-error-kind": {"DataType": "String", "StringValue": parcel.kind},
        "bwp-error": {"DataType": "String", "StringValue": one_line(redact(parcel.reason))},
    }
    if parcel.event_id:
        attrs["bwp-event-id"] = {"DataType": "String", "StringValue": parcel.event_id}
    return attrs


class DeadLetters:
    """Parks messages; reasons pass through ``redact`` (the configured secrets) first."""

    def __init__(
        self, sqs: SQSClient, dlq_url: str | None, redact: Callable[[str], str] = lambda s: s
    ) -> None:
        self._sqs, self._url, self._redact = sqs, dlq_url, redact

    @property
    def configured(self) -> bool:
        return self._url is not None

    def park(self, parcels: Sequence[Parcel]) -> list[bool]:
        """Send ``parcels`` to the DLQ in batches of ten; one flag per parcel, True = parked.

        Without SQS_DLQ_URL nothing is parked (all False): the caller leaves the message in
        its queue, where the queue's own redrive policy applies.
        """
        if not parcels:
            return []
        if self._url is None:
            return [False] * len(parcels)
        parked = [False] * len(parcels)
        entries: list[SendMessageBatchRequestEntryTypeDef] = [
            {
                "Id": str(i),
                "MessageBody": p.body,
                "MessageAttributes": _attributes(p, self._redact),
            }
            for i, p in enumerate(parcels)
        ]
        for batch in send_batches(entries):
            try:
                reply = self._sqs.send_message_batch(QueueUrl=self._url, Entries=batch)
            except botocore.exceptions.BotoCoreError as exc:
                log.error("dlq_unreachable", error=type(exc).__name__)
                continue
            except botocore.exceptions.ClientError as exc:
                log.error("dlq_send_failed", error=exc.response.get("Error", {}).get("Code"))
                continue
            for ok in reply.get("Successful", []):
                parked[int(ok["Id"])] = True
        return parked

    def park_one(self, parcel: Parcel) -> None:
        """Park one parcel, or raise DeadLetterUnavailable (retry later) when it was not taken."""
        if not self.park([parcel])[0]:
            if not self.configured:
                log.error(
                    "event_not_parked_no_dlq",
                    kind=parcel.kind,
                    reason=one_line(parcel.reason),
                    event_id=parcel.event_id,
                    body=parcel.body[:2000],
                )
                return
            raise DeadLetterUnavailable("the dead-letter queue did not accept the message")
