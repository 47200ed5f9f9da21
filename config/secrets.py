"""The one redactor: every configured secret value is cut out of log lines, DLQ reasons,
command output and error excerpts (design.md section 3.5).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from structlog.typing import EventDict, WrappedLogger

_REDACTED = "[redacted]"


def masked_url(url: str) -> str:
    """``url`` with the password of its user part shown as ``**`` (as kombu shows a broker
    URL); any other string unchanged."""
    if "@" not in url or "://" not in url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:**@{host}"))


class Redactor:
    """A structlog processor that replaces every known secret value in a log line."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first: a secret that contains another must not leak its remainder.
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def __call__(self, _: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        if not self._secrets:
            return event_dict
        return {key: self._scrub(value) for key, value in event_dict.items()}

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, int | float | bool | type(None)):
            return value
        return self.scrub_text(value if isinstance(value, str) else str(value))

    def scrub_text(self, text: str) -> str:
        """``text`` with every known secret replaced (DLQ reasons, command output)."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, _REDACTED)
        return text
