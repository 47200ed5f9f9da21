"""Parse EventBridge ``resources`` strings of Buy with Prime events.

``businessProduct/<businessProductId>/<key>/<value>/<key>/<value>...`` becomes the business
product id and a mapping of the pairs. Pure: strings in, values out, MalformedEvent on
anything else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from tasks.errors import MalformedEvent

PREFIX: Final = "businessProduct"

# Assumed (buy-with-prime-api.md does not spell out the id alphabet): ids are printable
# ASCII without white space, slashes or quotes. Anything else (newlines, GraphQL or log
# syntax) is refused here, so an id can never forge a log line or a query.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:~+=@-]{0,127}")
_KEY = re.compile(r"[A-Za-z][A-Za-z0-9]{0,63}")


@dataclass(frozen=True, slots=True)
class Resource:
    business_product_id: str
    pairs: dict[str, str]


def is_valid_id(value: str) -> bool:
    return _ID.fullmatch(value) is not None


def _preview(value: str) -> str:
    # Echo at most a short, escaped prefix of untrusted input in an error message.
    return repr(value[:60])


def parse_resource(text: str) -> Resource:
    """Parse one resource string.

    Raises MalformedEvent when it does not start with ``businessProduct/<id>/``, when a
    key has no value, or when an id or key has characters outside the allowed alphabet.
    """
    if not isinstance(text, str):
        raise MalformedEvent(f"resource is not a string: {type(text).__name__}")
    parts = text.split("/")
    if parts and parts[-1] == "":
        parts.pop()  # the documented form ends the business product id with a slash
    if len(parts) < 2 or parts[0] != PREFIX:
        raise MalformedEvent(f"resource lacks the businessProduct/<id>/ prefix: {_preview(text)}")
    business_product_id, rest = parts[1], parts[2:]
    if not is_valid_id(business_product_id):
        raise MalformedEvent(f"resource has an invalid business product id: {_preview(text)}")
    if len(rest) % 2:
        raise MalformedEvent(f"resource has a key without a value: {_preview(text)}")
    pairs: dict[str, str] = {}
    for key, value in zip(rest[::2], rest[1::2], strict=True):
        if _KEY.fullmatch(key) is None or not is_valid_id(value):
            raise MalformedEvent(f"resource has an invalid key or id: {_preview(text)}")
        if key in pairs and pairs[key] != value:
            raise MalformedEvent(f"resource repeats key {key!r} with another value")
        pairs[key] = value
    return Resource(business_product_id, pairs)


def find_pair(resources: list[Resource], *keys: str) -> Resource | None:
    """The first resource that carries every one of ``keys``."""
    for resource in resources:
        if all(key in resource.pairs for key in keys):
            return resource
    return None
