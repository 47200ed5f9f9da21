"""AWS errors in log lines: the service's code and a message with nothing secret in it."""

from __future__ import annotations

import botocore.exceptions
import pytest

from tasks.sqs.errors import describe, one_line, redact_aws_message


def client_error(code: str, message: str) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": message}}, "ReceiveMessage"
    )


def test_a_client_error_is_described_by_its_code_and_message() -> None:
    exc = client_error(
        "AWS.SimpleQueueService.NonExistentQueue", "The specified queue does not exist."
    )
    assert describe(exc) == {
        "error": "ClientError",
        "error_code": "AWS.SimpleQueueService.NonExistentQueue",
        "error_message": "The specified queue does not exist.",
    }
    assert (
        one_line(exc)
        == "AWS.SimpleQueueService.NonExistentQueue: The specified queue does not exist."
    )


def test_a_connection_error_is_described_by_its_class() -> None:
    exc = botocore.exceptions.EndpointConnectionError(endpoint_url="https://sqs.invalid/")
    fields = describe(exc)
    assert fields["error"] == "EndpointConnectionError"
    assert "error_code" not in fields
    assert "sqs.invalid" in fields["error_message"]


@pytest.mark.parametrize(
    ("message", "kept", "gone"),
    [
        (
            "User: arn:aws:sts::123456789012:assumed-role/r/AKIAIOSFODNN7EXAMPLE is not authorized",
            "is not authorized",
            "AKIAIOSFODNN7EXAMPLE",
        ),
        (
            "The request signature we calculated does not match the signature you provided. "
            "The Canonical String for this request should have been\n'POST\n/\n\n"
            "x-amz-security-token:IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQ'",
            "does not match the signature you provided.",
            "x-amz-security-token",
        ),
        ("token FwoGZXIvYXdzEJr2345678901234567890abcdefghijklmnop= expired", "expired", "FwoG"),
        ("line one\nline two", "line one line two", "\n"),
    ],
)
def test_the_message_is_one_line_without_keys_tokens_or_the_signed_request(
    message: str, kept: str, gone: str
) -> None:
    redacted = redact_aws_message(message)
    assert kept in redacted
    assert gone not in redacted
    assert len(redacted) <= 240


def test_an_empty_message_is_a_dash() -> None:
    assert redact_aws_message("   ") == "-"
