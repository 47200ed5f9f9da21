"""Park messages in the dead-letter queue with their reason (contract: "Dead-letter messages").

The original body is kept unchanged; ``bwp-error-kind``, ``bwp-error`` and
``bwp-event-id`` travel as message attributes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import botocore.exceptions
import structlog

from tasks.errors import DeadLetterUnavailable
from tasks.sqs.batches import entry_size, send_batches
from tasks.sqs.errors import describe

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
#: the DLQ's assumed MaximumMessageSize (SQS's default before 2025, and EventBridge's
#: largest event): SQS_DLQ_MAX_MESSAGE_BYTES
DEFAULT_MAX_BYTES: Final = 256 * 1024
#: SQS's largest message: a body over the configured size can only fit a DLQ this large
SQS_MAX_BYTES: Final = 1024 * 1024
log = structlog.get_logger("bwp.dlq")


@dataclass(frozen=True, slots=True)
class Parcel:
    body: str
    kind: str
    reason: str
    event_id: str | None = None


def one_line(text: str, limit: int = _MAX_REASON) -> str:
    return " ".join(text.split())[:limit] or "-"


def _sqs_char(char: str) -> bool:
    """A character SQS accepts in a message or attribute (#x9 #xA #xD, #x20-#xD7FF,
    #xE000-#xFFFD, #x10000-#x10FFFF)."""
    code = ord(char)
    return (
        code in (0x9, 0xA, 0xD)
        or 0x20 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )


def sqs_safe(text: str) -> str:
    """``text`` with every character SQS refuses written as an escape (``\\x1b``,
    ``\\ufffe``): an OMS's refusal body may hold anything."""
    if all(_sqs_char(c) for c in text):
        return text
    return "".join(c if _sqs_char(c) else c.encode("unicode_escape").decode() for c in text)


def _attribute(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


def _attributes(
    parcel: Parcel, redact: Callable[[str], str], max_bytes: int
) -> dict[str, Any] | None:
    """The parcel's attributes, its reason escaped and shortened until body and attributes
    fit ``max_bytes`` (SQS's own maximum for a body that alone exceeds it: the queue took
    it, so the DLQ may too); None when not even a one-character reason fits."""
    attrs: dict[str, Any] = {
        "bwp-error-kind": _attribute(parcel.kind),
        "bwp-error": _attribute("-"),
    }
    if parcel.event_id:
        attrs["bwp-event-id"] = _attribute(sqs_safe(parcel.event_id))
    entry: Any = {"MessageBody": parcel.body, "MessageAttributes": attrs}
    size = entry_size(entry)
    limit = max_bytes if size <= max_bytes else SQS_MAX_BYTES
    room = limit - size + 1  # the placeholder's one byte is the reason's
    if room < 1:
        return None
    reason = sqs_safe(one_line(redact(parcel.reason)))
    while len(reason.encode()) > room:
        # cut whole characters (an escape may be cut too: it is a reason, not data)
        reason = reason[: max(1, len(reason) - max(1, (len(reason.encode()) - room)))]
    attrs["bwp-error"] = _attribute(reason)
    return attrs


class DeadLetters:
    """Parks messages; reasons pass through ``redact`` (the configured secrets) first.

    A parked message is the original body, unchanged, with ``bwp-error-kind``,
    ``bwp-error`` (one line, characters SQS refuses escaped, shortened until body and
    attributes fit ``max_bytes``, the DLQ's MaximumMessageSize) and ``bwp-event-id``.
    """

    def __init__(
        self,
        sqs: SQSClient,
        dlq_url: str | None,
        redact: Callable[[str], str] = lambda s: s,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self._sqs, self._url, self._redact = sqs, dlq_url or None, redact
        self._max_bytes = max_bytes

    @property
    def configured(self) -> bool:
        return self._url is not None

    def park(self, parcels: Sequence[Parcel]) -> list[bool]:
        """Send ``parcels`` to the DLQ in batches of ten; one flag per parcel, True = parked.

        Without SQS_DLQ_URL nothing is parked (all False): the caller leaves the message in
        its queue, where the queue's own redrive policy applies. A body too large for the
        DLQ is not sent (False), and logged.
        """
        if not parcels:
            return []
        if self._url is None:
            return [False] * len(parcels)
        parked = [False] * len(parcels)
        entries: list[SendMessageBatchRequestEntryTypeDef] = []
        for i, parcel in enumerate(parcels):
            attrs = _attributes(parcel, self._redact, self._max_bytes)
            if attrs is None:
                log.error(
                    "park_body_too_large",
                    kind=parcel.kind,
                    body_bytes=len(parcel.body.encode()),
                    max_bytes=self._max_bytes,
                    event_key=parcel.event_id,
                )
                continue
            entries.append({"Id": str(i), "MessageBody": parcel.body, "MessageAttributes": attrs})
        for batch in send_batches(entries):
            try:
                reply = self._sqs.send_message_batch(QueueUrl=self._url, Entries=batch)
            except botocore.exceptions.BotoCoreError as exc:
                log.error("dlq_unreachable", **describe(exc))
                continue
            except botocore.exceptions.ClientError as exc:
                log.error("dlq_send_failed", **describe(exc))
                continue
            for ok in reply.get("Successful", []):
                parked[int(ok["Id"])] = True
            for failed in reply.get("Failed", []):
                log.error(
                    "dlq_refused_message", code=failed.get("Code"), sender=failed.get("SenderFault")
                )
        return parked

    def park_one(self, parcel: Parcel, *, attempts: int = 3, pause: float = 0.2) -> None:
        """Park one parcel, trying ``attempts`` times; raises DeadLetterUnavailable when the
        DLQ did not take it (or none is configured)."""
        for attempt in range(attempts):
            if self.park([parcel])[0]:
                return
            if not self.configured:
                break
            if attempt + 1 < attempts:
                time.sleep(pause * (2**attempt))
        raise DeadLetterUnavailable("the dead-letter queue did not accept the message")
