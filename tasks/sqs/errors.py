"""What an AWS error says, fit for a log line: its class, its code and a redacted message.

botocore's ``ClientError`` carries the service's error code (``AccessDenied``,
``AWS.SimpleQueueService.NonExistentQueue``…), which is what an operator acts on; the
exception class alone (``ClientError``) says nothing. Messages are cut to one line, and
what could carry a credential is removed: the canonical request and string-to-sign that
``SignatureDoesNotMatch`` echoes, and anything shaped like an access key id.
"""

from __future__ import annotations

import re
from typing import Final

import botocore.exceptions

#: codes meaning "this queue cannot be used as configured": no retry helps
UNUSABLE_QUEUE_CODES: Final = frozenset(
    {
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "AccessDenied",
        "AccessDeniedException",
        "InvalidAddress",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "MissingAuthenticationToken",
        "InvalidSecurity",
        "KMS.AccessDeniedException",
    }
)
_MAX_MESSAGE: Final = 240
#: text after which an AWS message echoes the signed request (headers, token included)
_ECHOED_REQUEST = re.compile(r"\s*The (?:Canonical String|String-to-Sign)\b.*", re.DOTALL)
_ACCESS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA|AROA|AIDA)[A-Z0-9]{12,}\b")
#: long base64/hex runs: session tokens, signatures
_OPAQUE = re.compile(r"[A-Za-z0-9+/=]{40,}")


def redact_aws_message(message: str) -> str:
    """``message`` on one line, without the signed request, key ids or opaque tokens."""
    text = _ECHOED_REQUEST.sub("", message)
    text = _ACCESS_KEY_ID.sub("[key-id]", text)
    text = _OPAQUE.sub("[redacted]", text)
    text = " ".join(text.split())
    return text[:_MAX_MESSAGE] or "-"


def error_code(exc: BaseException) -> str | None:
    """The service's error code of a ``ClientError``, else None."""
    if isinstance(exc, botocore.exceptions.ClientError):
        code = exc.response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


def describe(exc: BaseException) -> dict[str, str]:
    """Log fields for ``exc``: ``error`` (class), ``error_code`` and ``error_message``."""
    fields = {"error": type(exc).__name__}
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        fields["error_code"] = str(error.get("Code") or "-")
        fields["error_message"] = redact_aws_message(str(error.get("Message") or ""))
    else:
        fields["error_message"] = redact_aws_message(str(exc))
    return fields


def one_line(exc: BaseException) -> str:
    """``<code>: <message>`` (or ``<class>: <message>``) for a human."""
    fields = describe(exc)
    return f"{fields.get('error_code', fields['error'])}: {fields['error_message']}"
