"""config.secrets.Redactor: no configured secret reaches a log line."""

from __future__ import annotations

import json

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from config.secrets import Redactor

SECRET = "s3cr3t-T0KEN-value"
OTHER = "0ther-S1GNING-key"


def redact(secrets: list[str], **event: object) -> dict[str, object]:
    return dict(Redactor(secrets)(None, "info", dict(event)))


def test_secret_in_a_value_is_replaced() -> None:
    out = redact([SECRET], event="token_refreshed", header=f"Bearer {SECRET}")
    assert out == {"event": "token_refreshed", "header": "Bearer [redacted]"}


def test_every_occurrence_of_every_secret_is_replaced() -> None:
    out = redact([SECRET, OTHER], event=f"{SECRET} and {OTHER} and {SECRET} again")
    assert out["event"] == "[redacted] and [redacted] and [redacted] again"


def test_values_that_are_not_strings_are_scrubbed_as_text() -> None:
    # Given a secret inside an exception, a dict and bytes bound to a log line
    error = RuntimeError(f"token {SECRET} refused")
    out = redact([SECRET], error=error, headers={"Authorization": SECRET}, raw=SECRET.encode())
    # Then none of them shows the secret
    assert all(SECRET not in str(value) for value in out.values())
    assert out["error"] == "token [redacted] refused"


@pytest.mark.parametrize("value", [42, 2.5, True, None])
def test_plain_scalars_are_kept_as_they_are(value: object) -> None:
    assert redact([SECRET], value=value)["value"] == value


def test_keys_are_left_alone() -> None:
    assert list(redact([SECRET], event="x", oms_auth_token="y")) == ["event", "oms_auth_token"]


def test_without_secrets_the_event_passes_untouched() -> None:
    event = {"event": "x", "payload": {"a": 1}}
    assert Redactor([])(None, "info", event) is event


@pytest.mark.parametrize("short", ["", "a", "abc"])
def test_secrets_shorter_than_four_characters_are_ignored(short: str) -> None:
    # Redacting "abc" from every line would shred the logs and reveal nothing useful.
    assert redact([short], event="abcabc")["event"] == "abcabc"


def test_redactor_works_as_a_structlog_processor() -> None:
    # Given a logger whose pipeline redacts, then renders JSON
    logger = structlog.wrap_logger(
        structlog.ReturnLogger(),
        processors=[Redactor([SECRET]), structlog.processors.JSONRenderer()],
    )
    # When a line carries the secret
    line = logger.info("oms_push_failed", url=f"https://oms.example/?token={SECRET}")
    # Then the rendered line does not
    assert SECRET not in line
    assert json.loads(line)["url"] == "https://oms.example/?token=[redacted]"


def test_a_secret_containing_another_is_fully_redacted() -> None:
    out = redact(["abcd", "abcd-EFGH-ijkl"], event="key=abcd-EFGH-ijkl")
    assert out["event"] == "key=[redacted]"


# Secrets drawn from characters that "[redacted]" does not use, so the marker itself can
# never spell a secret.
secrets = st.text(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-_!", min_size=4, max_size=20)


@given(secret=secrets, before=st.text(max_size=20), after=st.text(max_size=20))
def test_a_secret_never_survives_whatever_surrounds_it(
    secret: str, before: str, after: str
) -> None:
    out = redact([secret], event=before + secret + after, extra=[before, secret])
    assert secret not in str(out["event"])
    assert secret not in str(out["extra"])
