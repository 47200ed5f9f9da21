"""Parse EventBridge ``resources`` strings of Buy with Prime events.

``businessProduct/<businessProductId>/<key>/<value>/<key>/<value>...`` becomes the business
product id and a mapping of the pairs an event needs. Only those pairs are read, and read
strictly; every other key and id (``returnDelivery/<id>``, ``returnLineItem/<id>``, a
return id such as ``04caec9f-…#RF``, keys a later API version adds) is carried along in
the event body unparsed, and never makes an event malformed. Pure: strings in, values
out, MalformedEvent on a needed pair that cannot be read.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Final

from tasks.errors import MalformedEvent

PREFIX: Final = "businessProduct"

# Assumed (the public docs do not spell out the id alphabet): ids are printable ASCII
# without white space, slashes or quotes. Anything else (newlines, GraphQL or log syntax)
# is refused here, so an id the worker uses can never forge a log line or a query.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:~+=@-]{0,127}")


@dataclass(frozen=True, slots=True)
class Resource:
    business_product_id: str
    #: the needed keys this resource names, each with an id of the id alphabet
    pairs: dict[str, str]


def is_valid_id(value: str) -> bool:
    return _ID.fullmatch(value) is not None


def _preview(value: str) -> str:
    # Echo at most a short, escaped prefix of untrusted input in an error message.
    return repr(value[:60])


def parse_resource(text: str, needed: Collection[str]) -> Resource | None:
    """The business product id and the ``needed`` pairs of one resource string.

    None when the string is not of the ``businessProduct/<id>/...`` form or names none of
    the ``needed`` keys: the event carries it along unparsed. Raises MalformedEvent when a
    needed key has no value or an id outside the id alphabet, when it repeats with another
    value, or when the business product id of a resource naming a needed key is invalid.
    """
    if not isinstance(text, str):
        raise MalformedEvent(f"resource is not a string: {type(text).__name__}")
    parts = text.split("/")
    if parts and parts[-1] == "":
        parts.pop()  # the documented form ends the business product id with a slash
    if len(parts) < 2 or parts[0] != PREFIX:
        return None
    pairs = _needed_pairs(text, parts[2:], needed)
    if not pairs:
        return None
    if not is_valid_id(parts[1]):
        raise MalformedEvent(f"resource has an invalid business product id: {_preview(text)}")
    return Resource(parts[1], pairs)


def _needed_pairs(text: str, rest: list[str], needed: Collection[str]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for index in range(0, len(rest), 2):
        key = rest[index]
        if key not in needed:
            continue  # another key: its value is never read
        if index + 1 == len(rest):
            raise MalformedEvent(f"resource has {key!r} without a value: {_preview(text)}")
        value = rest[index + 1]
        if not is_valid_id(value):
            raise MalformedEvent(f"resource has an invalid {key} id: {_preview(text)}")
        if pairs.setdefault(key, value) != value:
            raise MalformedEvent(f"resource repeats key {key!r} with another value")
    return pairs


def parse_needed(texts: Iterable[str], needed: Collection[str]) -> list[Resource]:
    """``parse_resource`` of each string, keeping those that name a needed key."""
    return [found for text in texts if (found := parse_resource(text, needed)) is not None]


def find_pair(resources: list[Resource], *keys: str) -> Resource | None:
    """The first resource that carries every one of ``keys``."""
    for resource in resources:
        if all(key in resource.pairs for key in keys):
            return resource
    return None
