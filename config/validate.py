"""What a URL, a region or a queue setting must look like. Pure: strings in, a reason out.

Each function returns None when the value is acceptable, else one line saying what is
wrong and what is expected. The value itself is never echoed for URLs (a Redis URL or an
OMS URL may carry a password); a region is echoed, it is no secret.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, urlsplit

#: AWS partitions' region names: us-east-1, eu-central-2, us-gov-west-1, cn-north-1,
#: us-iso-east-1, us-isob-east-1, ap-southeast-5 ...
_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d{1,2}")
#: an SQS queue name: 1-80 of letters, digits, hyphens and underscores (.fifo allowed)
_QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}(?:\.fifo)?")
#: the hosts of SQS's own endpoints: sqs.<region>.amazonaws.com[.cn] (and the legacy
#: <region>.queue.amazonaws.com)
_SQS_HOST = re.compile(
    r"(?:sqs(?:-fips)?\.(?P<region>[a-z0-9-]+)|(?P<legacy>[a-z0-9-]+)\.queue)"
    r"\.amazonaws\.com(?:\.cn)?"
)
REDIS_SCHEMES = ("redis", "rediss", "unix")
HTTP_SCHEMES = ("http", "https")


def _split(value: str) -> SplitResult | str:
    """The parsed URL, or why it does not parse (a bad port raises only on access)."""
    if not value or value != value.strip() or any(c.isspace() for c in value):
        return "must be a URL without spaces"
    try:
        parts = urlsplit(value)
        _ = parts.port
    except ValueError:
        return "is not a valid URL (its port is not a number from 0 to 65535)"
    return parts


def url_problem(value: str, schemes: tuple[str, ...]) -> str | None:
    """Why ``value`` is not a URL with one of ``schemes`` and a host, or None."""
    parts = _split(value)
    if isinstance(parts, str):
        return parts
    expected = " or ".join(f"{s}://" for s in schemes)
    if parts.scheme not in schemes or "://" not in value:
        return f"must start with {expected} (scheme missing or unknown)"
    if parts.scheme != "unix" and not parts.hostname:
        return f"names no host (expected {expected}<host>…)"
    return None


def redis_url_problem(value: str) -> str | None:
    """Why ``value`` is not a URL redis-py and kombu accept, or None."""
    if problem := url_problem(value, REDIS_SCHEMES):
        return problem
    parts = urlsplit(value)
    if parts.scheme == "unix":
        return None if parts.path else "names no socket path (expected unix:///path/to.sock)"
    database = parts.path.lstrip("/")
    if database and not database.isdigit():
        return "its path must be a database number (redis://host:6379/0)"
    return None


def broker_url_problem(value: str) -> str | None:
    """A Redis broker is checked as REDIS_URL is; other kombu transports need a scheme."""
    if value.startswith(tuple(f"{s}://" for s in REDIS_SCHEMES)):
        return redis_url_problem(value)
    parts = _split(value)
    if isinstance(parts, str):
        return parts
    if not re.fullmatch(r"[a-z][a-z0-9+.-]*", parts.scheme) or "://" not in value:
        return "must be a broker URL such as redis://host:6379/0 (scheme missing)"
    return None


def region_problem(value: str) -> str | None:
    if _REGION.fullmatch(value):
        return None
    return f"{value!r} is not an AWS region name (expected e.g. us-east-1)"


def queue_region(url: str) -> str | None:
    """The region an SQS endpoint URL names in its host, or None (another endpoint)."""
    match = _SQS_HOST.fullmatch(urlsplit(url).hostname or "")
    if match is None:
        return None
    return match.group("region") or match.group("legacy")


def queue_url_problem(value: str) -> str | None:
    """Why ``value`` is not an SQS queue URL (``https://sqs.<region>.amazonaws.com/<account
    id>/<queue name>``, or an emulator's ``http://host:port/<account>/<name>``), or None."""
    if problem := url_problem(value, HTTP_SCHEMES):
        return problem
    parts = urlsplit(value)
    segments = parts.path.strip("/").split("/")
    shape = "expected https://sqs.<region>.amazonaws.com/<account id>/<queue name>"
    if len(segments) != 2 or not segments[0] or parts.query or parts.fragment:
        return f"is not a queue URL ({shape})"
    account, name = segments
    if not _QUEUE_NAME.fullmatch(name):
        return f"ends in an invalid queue name ({shape})"
    if (parts.hostname or "").endswith((".amazonaws.com", ".amazonaws.com.cn")):
        if parts.scheme != "https":
            return "must use https:// for an AWS endpoint"
        if not re.fullmatch(r"\d{12}", account):
            return f"names no 12-digit account id ({shape})"
    return None


def redis_in_clear(value: str | None, loopback: frozenset[str]) -> str | None:
    """Why ``value`` would send a password over plain ``redis://`` to a host off
    ``loopback`` (and with it everything Redis holds: the cached OAuth token, event
    bodies), or None."""
    parts = urlsplit(value or "")
    if parts.scheme != "redis" or not parts.password or parts.hostname in {None, *loopback}:
        return None
    return (
        "redis:// sends its password, the cached OAuth token and event bodies in clear to"
        " a host off loopback; use rediss:// (or ALLOW_INSECURE_REDIS=true)"
    )
