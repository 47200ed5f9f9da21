"""``bwp-worker replay-dlq``: move parked messages back to the queue, by kind.

A selected message is sent to the queue with its original body (and any attributes it
came with, minus the ``bwp-*`` parking labels), then deleted from the DLQ: sent first,
so a crash in between duplicates a message (the dedup ledger absorbs it) and never
loses one. Messages that are not selected, and every message of a dry run, are held
invisible until the run ends and then made visible again at once (visibility 0):
releasing them earlier would hand them straight back to the next receive, and the run
could never tell a drained DLQ from one it keeps seeing.

The run ends when a receive comes back empty (the DLQ holds nothing this run has not
seen) or when ``limit`` messages were moved.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import structlog

from tasks.sqs.batches import send_batches
from tasks.sqs.dlq import KINDS

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import (
        ChangeMessageVisibilityBatchRequestEntryTypeDef,
        DeleteMessageBatchRequestEntryTypeDef,
        MessageAttributeValueTypeDef,
        MessageTypeDef,
        SendMessageBatchRequestEntryTypeDef,
    )

#: the kind reported for a message without ``bwp-error-kind``: SQS's own redrive policy
#: moved it (maxReceiveCount reached), the worker never parked it
REDRIVEN: Final = "redriven"
REPLAYABLE_KINDS: Final = frozenset({*KINDS, REDRIVEN})
_LABEL_PREFIX: Final = "bwp-"
_BATCH: Final = 10
log = structlog.get_logger("bwp.replay")


@dataclass
class ReplayReport:
    """Counts per kind. On a dry run ``moved`` counts what would have moved."""

    dry_run: bool = False
    moved: Counter[str] = field(default_factory=Counter)
    #: not selected: left in the DLQ, visible again
    kept: Counter[str] = field(default_factory=Counter)
    #: selected, but the queue did not take them: left in the DLQ, visible again
    failed: Counter[str] = field(default_factory=Counter)
    #: sent to the queue, but the DLQ delete failed: they will be seen (and sent) again
    not_deleted: int = 0

    def kinds(self) -> list[str]:
        return sorted({*self.moved, *self.kept, *self.failed})


def kind_of(message: MessageTypeDef) -> str:
    label = message.get("MessageAttributes", {}).get("bwp-error-kind")
    return (label.get("StringValue") if label else None) or REDRIVEN


def replay_dead_letters(
    sqs: SQSClient,
    *,
    dlq_url: str,
    queue_url: str,
    kinds: Collection[str] = (),
    limit: int | None = None,
    dry_run: bool = False,
    wait_seconds: int = 1,
    hold_seconds: int = 300,
) -> ReplayReport:
    """Move the DLQ's messages of ``kinds`` (all when empty) to the queue, at most ``limit``.

    Raises botocore errors when SQS refuses or cannot be reached; whatever is held is
    released first (a message sent but not yet deleted may then be replayed twice, which
    the dedup ledger absorbs).
    """
    report = ReplayReport(dry_run=dry_run)
    held: list[str] = []  # receipt handles to make visible again at the end
    in_hand: list[str] = []  # the batch being moved, released too should moving it fail
    seen: set[str] = set()
    try:
        while (room := _room(report, limit)) > 0:
            messages = sqs.receive_message(
                QueueUrl=dlq_url,
                MaxNumberOfMessages=_BATCH,
                WaitTimeSeconds=wait_seconds,
                VisibilityTimeout=hold_seconds,
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not messages:
                break
            selected = _triage(messages, seen, kinds, report, held)
            # beyond --max: left for another run, visible again at the end
            held += [m["ReceiptHandle"] for m in selected[room:]]
            selected = selected[:room]
            if dry_run:
                report.moved.update(kind_of(m) for m in selected)
                held += [m["ReceiptHandle"] for m in selected]
            else:
                in_hand = [m["ReceiptHandle"] for m in selected]
                held += _move(sqs, selected, dlq_url, queue_url, report)
                in_hand = []
    finally:
        _release(sqs, dlq_url, held + in_hand)
    log.info(
        "dlq_replayed",
        dry_run=dry_run,
        moved=dict(report.moved),
        kept=dict(report.kept),
        failed=dict(report.failed),
    )
    return report


def _room(report: ReplayReport, limit: int | None) -> int:
    """How many more messages this run may move."""
    if limit is None:
        return _BATCH
    return limit - report.moved.total()


def _triage(
    messages: Sequence[MessageTypeDef],
    seen: set[str],
    kinds: Collection[str],
    report: ReplayReport,
    held: list[str],
) -> list[MessageTypeDef]:
    """The messages to move; the others are counted as kept and added to ``held``."""
    selected = []
    for message in messages:
        if message["MessageId"] in seen:
            # back because its hold ran out (or its delete failed): counted already
            held.append(message["ReceiptHandle"])
            continue
        seen.add(message["MessageId"])
        if not kinds or kind_of(message) in kinds:
            selected.append(message)
        else:
            report.kept[kind_of(message)] += 1
            held.append(message["ReceiptHandle"])
    return selected


def _move(
    sqs: SQSClient,
    messages: Sequence[MessageTypeDef],
    dlq_url: str,
    queue_url: str,
    report: ReplayReport,
) -> list[str]:
    """Send ``messages`` to the queue, delete the sent ones from the DLQ; return the rest."""
    by_id = {str(i): m for i, m in enumerate(messages)}
    entries: list[SendMessageBatchRequestEntryTypeDef] = []
    for entry_id, message in by_id.items():
        entry: SendMessageBatchRequestEntryTypeDef = {
            "Id": entry_id,
            "MessageBody": message["Body"],
        }
        if attributes := forwarded_attributes(message):
            entry["MessageAttributes"] = attributes
        entries.append(entry)
    sent: list[str] = []
    for batch in send_batches(entries):
        reply = sqs.send_message_batch(QueueUrl=queue_url, Entries=batch)
        sent += [ok["Id"] for ok in reply.get("Successful", [])]
        for failure in reply.get("Failed", []):
            log.error("dlq_replay_send_failed", code=failure.get("Code"))
    unsent = [m for i, m in by_id.items() if i not in set(sent)]
    for message in unsent:
        report.failed[kind_of(message)] += 1
    for entry_id in sent:
        report.moved[kind_of(by_id[entry_id])] += 1
    if sent:
        deletes: list[DeleteMessageBatchRequestEntryTypeDef] = [
            {"Id": i, "ReceiptHandle": by_id[i]["ReceiptHandle"]} for i in sent
        ]
        # at most ten: one receive's worth
        deleted = sqs.delete_message_batch(QueueUrl=dlq_url, Entries=deletes)
        if failed := deleted.get("Failed", []):
            report.not_deleted += len(failed)
            log.error("dlq_replay_delete_failed", count=len(failed))
    return [m["ReceiptHandle"] for m in unsent]


def forwarded_attributes(message: MessageTypeDef) -> dict[str, MessageAttributeValueTypeDef]:
    """The message's own attributes, without the ``bwp-*`` labels parking added."""
    kept: dict[str, MessageAttributeValueTypeDef] = {}
    for name, value in message.get("MessageAttributes", {}).items():
        if name.startswith(_LABEL_PREFIX):
            continue
        copy: MessageAttributeValueTypeDef = {"DataType": value["DataType"]}
        if "StringValue" in value:
            copy["StringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            copy["BinaryValue"] = value["BinaryValue"]
        kept[name] = copy
    return kept


def _release(sqs: SQSClient, dlq_url: str, receipts: Sequence[str]) -> None:
    """Make the held messages visible again now, ten per call."""
    for start in range(0, len(receipts), _BATCH):
        chunk = receipts[start : start + _BATCH]
        entries: list[ChangeMessageVisibilityBatchRequestEntryTypeDef] = [
            {"Id": str(i), "ReceiptHandle": receipt, "VisibilityTimeout": 0}
            for i, receipt in enumerate(chunk)
        ]
        reply = sqs.change_message_visibility_batch(QueueUrl=dlq_url, Entries=entries)
        if failed := reply.get("Failed", []):
            # they come back on their own when the hold runs out
            log.warning("dlq_release_failed", count=len(failed), hold_expires_anyway=True)
