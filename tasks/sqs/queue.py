"""The one SQS port of the poller: receive, delete, release, extend — in batches of ten.

Errors from SQS are logged and reported per call, never raised: a message that was not
deleted comes back and is recognised by the ledger; one that was not released or extended
comes back when its visibility runs out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import botocore.exceptions
import structlog

from tasks.sqs.batches import MAX_ENTRIES, chunks
from tasks.sqs.errors import describe

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

log = structlog.get_logger("bwp.sqs")

AWS_ERRORS = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)


class SqsQueue:
    """One queue. ``count(action, requests)`` is told of every request made."""

    def __init__(
        self,
        sqs: SQSClient,
        url: str,
        *,
        count: Callable[[str, int], None] = lambda action, n: None,
    ) -> None:
        self._sqs, self.url, self._count = sqs, url, count

    def receive(self, *, wait_seconds: int, visibility_timeout: int) -> list[MessageTypeDef]:
        """Up to ten messages (long poll). Raises the botocore error when SQS fails."""
        self._count("receive", 1)
        reply = self._sqs.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=MAX_ENTRIES,
            WaitTimeSeconds=wait_seconds,
            VisibilityTimeout=visibility_timeout,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        return reply.get("Messages", [])

    def delete(self, receipts: Sequence[str]) -> list[str]:
        """Delete the messages; returns the receipt handles that were not deleted."""
        failed: list[str] = []
        for chunk in chunks(receipts):
            entries: list[Any] = [{"Id": str(i), "ReceiptHandle": r} for i, r in enumerate(chunk)]
            failed += self._batch("delete", chunk, entries)
        return failed

    def release(self, receipts: Sequence[str]) -> list[str]:
        """Make the messages visible again now; returns those not released."""
        return self.set_visibility(receipts, 0, action="release")

    def extend(self, receipts: Sequence[str], seconds: int) -> list[str]:
        """Hide the messages for ``seconds`` more from now; returns those not extended."""
        return self.set_visibility(receipts, seconds, action="extend")

    def set_visibility(self, receipts: Sequence[str], seconds: int, *, action: str) -> list[str]:
        failed: list[str] = []
        for chunk in chunks(receipts):
            entries: list[Any] = [
                {"Id": str(i), "ReceiptHandle": r, "VisibilityTimeout": seconds}
                for i, r in enumerate(chunk)
            ]
            failed += self._batch(action, chunk, entries)
        return failed

    def _batch(self, action: str, chunk: Sequence[str], entries: list[Any]) -> list[str]:
        self._count(action, 1)
        try:
            if action == "delete":
                reply: Any = self._sqs.delete_message_batch(QueueUrl=self.url, Entries=entries)
            else:
                reply = self._sqs.change_message_visibility_batch(
                    QueueUrl=self.url, Entries=entries
                )
        except AWS_ERRORS as exc:
            log.warning(f"{action}_failed", count=len(chunk), **describe(exc))
            return list(chunk)
        failed = [chunk[int(f["Id"])] for f in reply.get("Failed", [])]
        if failed:
            codes = sorted({f.get("Code", "") for f in reply["Failed"]})
            log.warning(f"{action}_partly_failed", failed=len(failed), codes=codes)
        return failed
