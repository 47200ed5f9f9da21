"""SQS's batch limits, in one place: at most ten entries per batch call, and 256 KiB of
bodies and attributes per SendMessageBatch."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Final, TypeVar

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

MAX_ENTRIES: Final = 10
MAX_BATCH_BYTES: Final = 256 * 1024

T = TypeVar("T")


def entry_size(entry: SendMessageBatchRequestEntryTypeDef) -> int:
    """Bytes an entry counts towards the batch limit (body, attribute names and values)."""
    size = len(entry["MessageBody"].encode())
    for name, value in entry.get("MessageAttributes", {}).items():
        size += len(name) + len(value["DataType"]) + len(value.get("StringValue", "").encode())
        binary = value.get("BinaryValue", b"")
        size += len(binary) if isinstance(binary, bytes | bytearray) else 0
    return size


def send_batches(
    entries: Sequence[SendMessageBatchRequestEntryTypeDef],
) -> Iterator[list[SendMessageBatchRequestEntryTypeDef]]:
    """Consecutive batches within both limits; an entry over the byte limit goes alone."""
    batch: list[SendMessageBatchRequestEntryTypeDef] = []
    total = 0
    for entry in entries:
        size = entry_size(entry)
        if batch and (len(batch) == MAX_ENTRIES or total + size > MAX_BATCH_BYTES):
            yield batch
            batch, total = [], 0
        batch.append(entry)
        total += size
    if batch:
        yield batch


def chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    """``items`` in consecutive runs of at most ten (every SQS batch call's limit)."""
    for start in range(0, len(items), MAX_ENTRIES):
        yield items[start : start + MAX_ENTRIES]
