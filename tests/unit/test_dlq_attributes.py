"""What a parked message carries: the reason escaped where SQS refuses a character, and
shortened (never the body) until the message fits the DLQ's size."""

from __future__ import annotations

import re

import pytest

from tasks.sqs.batches import entry_size
from tasks.sqs.dlq import Parcel, _attributes, sqs_safe

SQS_REFUSES = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain reason", "plain reason"),
        ("nul\x00 here", "nul\\x00 here"),
        ("ansi \x1b[31mred", "ansi \\x1b[31mred"),
        ("noncharacter \ufffe", "noncharacter \\ufffe"),
        ("lone \ud800 surrogate", "lone \\ud800 surrogate"),
        ("ümlaut and 😀", "ümlaut and 😀"),
    ],
)
def test_characters_sqs_refuses_are_escaped(text: str, expected: str) -> None:
    assert sqs_safe(text) == expected
    assert not SQS_REFUSES.search(sqs_safe(text))


def size_of(parcel: Parcel, attrs: dict[str, object]) -> int:
    return entry_size({"MessageBody": parcel.body, "MessageAttributes": attrs})  # type: ignore[typeddict-item]


def test_an_oms_body_with_control_characters_becomes_a_one_line_reason_sqs_accepts() -> None:
    parcel = Parcel("{}", "permanent-oms-error", "OMS answered HTTP 400: bad\x00\n\x1b[0m", "k")
    attrs = _attributes(parcel, lambda s: s, 256 * 1024)
    assert attrs is not None
    reason = attrs["bwp-error"]["StringValue"]
    assert reason == "OMS answered HTTP 400: bad\\x00 \\x1b[0m"


def test_a_body_near_the_limit_keeps_its_body_and_a_shortened_reason() -> None:
    limit = 256 * 1024
    parcel = Parcel("x" * (limit - 300), "retries-exhausted", "why " * 200, "key-1")
    attrs = _attributes(parcel, lambda s: s, limit)
    assert attrs is not None
    assert size_of(parcel, attrs) <= limit
    assert attrs["bwp-error"]["StringValue"].startswith("why why")
    assert attrs["bwp-event-id"]["StringValue"] == "key-1"


def test_a_body_that_alone_fills_the_limit_is_fitted_to_sqs_own_maximum() -> None:
    # the queue took it, so the DLQ may be as large: the reason fits SQS's 1 MiB instead
    parcel = Parcel("x" * (256 * 1024 + 1), "malformed", "body over 256 KiB", "k")
    attrs = _attributes(parcel, lambda s: s, 256 * 1024)
    assert attrs is not None and attrs["bwp-error"]["StringValue"] == "body over 256 KiB"


def test_a_body_too_large_for_sqs_itself_is_not_sent() -> None:
    parcel = Parcel("x" * (1024 * 1024), "malformed", "r", "k")
    assert _attributes(parcel, lambda s: s, 256 * 1024) is None
