"""Read an SQS message body as a Buy with Prime EventBridge event.

Pure. ``parse_envelope`` validates the envelope every event shares; ``delivery_event``
goes on to the fields a delivery-family event must carry. Both raise MalformedEvent with a
one-line reason that never echoes more than a short, escaped piece of the input.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from tasks.errors import MalformedEvent
from tasks.events.catalog import (
    MILESTONE_EVENT,
    DeliveryState,
    implied_state,
    is_delivery_event,
)
from tasks.events.resources import Resource, find_pair, is_valid_id, parse_resource
from tasks.keys import DeliveryRef

#: EventBridge's event size limit; a larger SQS body cannot be a genuine event.
MAX_BODY_BYTES: Final = 256 * 1024
_REQUIRED: Final = ("id", "detail-type", "time", "resources")
MAX_DETAIL_TYPE: Final = 128
# buy-with-prime-api.md section 1: the key is base64 (of "<uuid>#<event id>", ~100
# characters); assumed any base64 character and up to a few hundred characters. It is
# only ever a Redis key component, so "/", "+" and "=" are harmless there.
_IDEMPOTENCY_KEY: Final = re.compile(r"[A-Za-z0-9+/=]{1,512}")


@dataclass(frozen=True, slots=True)
class Envelope:
    id: str
    detail_type: str
    time: str
    resources: tuple[str, ...]
    detail: dict[str, Any]
    #: ``detail.idempotencyKey`` when present, else ``id`` (contract)
    dedup_key: str
    #: fingerprint of what the event says (type, resources, detail): the same dedup key
    #: with another payload hash is a conflict, not a duplicate
    payload_hash: str


@dataclass(frozen=True, slots=True)
class DeliveryEvent:
    envelope: Envelope
    business_product_id: str
    order_id: str
    delivery_id: str
    implied_state: DeliveryState
    #: further order/delivery pairs among the resources (rare; each is synced too)
    others: tuple[DeliveryRef, ...] = ()


@dataclass(frozen=True, slots=True)
class MilestoneEvent:
    """PACKAGE_TRACKER_MILESTONE_CHANGED: names a carrier's tracker, not an order."""

    envelope: Envelope
    business_product_id: str
    carrier_code: str
    tracking_number: str


def _load(body: str | bytes) -> Any:
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    if len(raw) > MAX_BODY_BYTES:
        raise MalformedEvent(f"body is {len(raw)} bytes, over the {MAX_BODY_BYTES} byte limit")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedEvent(f"body is not UTF-8 (byte {exc.start})") from exc
    try:
        return json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError) as exc:  # ValueError: JSONDecodeError, huge ints
        raise MalformedEvent(f"body is not JSON: {type(exc).__name__}") from exc


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are not JSON (RFC 8259); Python's parser accepts them by default.
    raise ValueError(f"{name} is not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A repeated key would let "last one wins" turn one event into another.
    doc = dict(pairs)
    if len(doc) != len(pairs):
        raise ValueError("an object repeats a key")
    return doc


def _text_field(doc: dict[str, Any], name: str) -> str:
    value = doc[name]
    if not isinstance(value, str) or not value.strip():
        raise MalformedEvent(f"envelope field {name!r} must be a non-empty string")
    return value


def _check_time(value: str) -> None:
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise MalformedEvent("envelope field 'time' is not an ISO 8601 timestamp") from exc


def _dedup_key(event_id: str, detail: dict[str, Any]) -> str:
    key = detail.get("idempotencyKey")
    if key is None:
        return event_id
    if not isinstance(key, str) or not (is_valid_id(key) or _IDEMPOTENCY_KEY.fullmatch(key)):
        raise MalformedEvent(
            "detail.idempotencyKey must be an id-like or base64 string of at most 512 characters"
        )
    return key


def payload_hash(detail_type: str, resources: tuple[str, ...], detail: dict[str, Any]) -> str:
    canonical = json.dumps(
        [detail_type, sorted(resources), detail], sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def parse_envelope(body: str | bytes) -> Envelope:
    """Validate the EventBridge envelope of an SQS body.

    Raises MalformedEvent for: a body over 256 KiB, not UTF-8, not JSON, not an object, an
    SNS notification wrapping an event, a missing or mistyped id/detail-type/time/resources.
    """
    doc = _load(body)
    if not isinstance(doc, dict):
        raise MalformedEvent(f"body is a JSON {type(doc).__name__}, not an object")
    if doc.get("Type") == "Notification" and "Message" in doc:
        raise MalformedEvent("body is an SNS notification; deliver EventBridge events raw")
    missing = [name for name in _REQUIRED if name not in doc]
    if missing:
        raise MalformedEvent(f"envelope lacks {', '.join(missing)}")
    event_id = _text_field(doc, "id")
    if not is_valid_id(event_id):
        raise MalformedEvent("envelope id has characters outside the id alphabet")
    detail_type = _text_field(doc, "detail-type")
    if len(detail_type) > MAX_DETAIL_TYPE or not detail_type.isprintable():
        raise MalformedEvent(
            f"envelope field 'detail-type' is over {MAX_DETAIL_TYPE} characters or not printable"
        )
    time = _text_field(doc, "time")
    _check_time(time)
    resources = doc["resources"]
    if not isinstance(resources, list) or not all(isinstance(r, str) for r in resources):
        raise MalformedEvent("envelope field 'resources' must be an array of strings")
    detail = doc.get("detail", {})
    if detail is None:
        detail = {}
    if not isinstance(detail, dict):
        raise MalformedEvent("envelope field 'detail' must be an object")
    frozen = tuple(resources)
    return Envelope(
        id=event_id,
        detail_type=detail_type,
        time=time,
        resources=frozen,
        detail=detail,
        dedup_key=_dedup_key(event_id, detail),
        payload_hash=payload_hash(detail_type, frozen, detail),
    )


def _parsed_resources(envelope: Envelope, what: str) -> list[Resource]:
    parsed = [parse_resource(text) for text in envelope.resources]
    if not parsed:
        raise MalformedEvent(f"{what} has no resources")
    return parsed


def delivery_event(envelope: Envelope) -> DeliveryEvent:
    """The delivery named by a delivery-family event.

    Raises MalformedEvent when no resource carries ``businessProduct/<id>/``, ``order/<id>``
    and ``delivery/<id>``; KeyError when the detail-type is not a delivery event. The first
    such resource names the event's delivery; any other distinct pair lands in ``others``.
    """
    state = implied_state(envelope.detail_type)
    parsed = _parsed_resources(envelope, "delivery event")
    found = find_pair(parsed, "order", "delivery")
    if found is None:
        raise MalformedEvent("delivery event resources lack order/<id> and delivery/<id>")
    primary = DeliveryRef(found.business_product_id, found.pairs["order"], found.pairs["delivery"])
    others: list[DeliveryRef] = []
    for resource in parsed:
        if "order" in resource.pairs and "delivery" in resource.pairs:
            ref = DeliveryRef(
                resource.business_product_id, resource.pairs["order"], resource.pairs["delivery"]
            )
            if ref != primary and ref not in others:
                others.append(ref)
    return DeliveryEvent(
        envelope=envelope,
        business_product_id=primary.business_product_id,
        order_id=primary.order_id,
        delivery_id=primary.delivery_id,
        implied_state=state,
        others=tuple(others),
    )


def milestone_event(envelope: Envelope) -> MilestoneEvent:
    """The tracker named by a PACKAGE_TRACKER_MILESTONE_CHANGED event.

    Raises MalformedEvent when no resource carries ``carrier/<code>`` and ``tracker/<number>``.
    """
    found = find_pair(_parsed_resources(envelope, "milestone event"), "carrier", "tracker")
    if found is None:
        raise MalformedEvent("milestone event resources lack carrier/<code> and tracker/<number>")
    return MilestoneEvent(
        envelope, found.business_product_id, found.pairs["carrier"], found.pairs["tracker"]
    )


def parse_delivery_event(body: str | bytes) -> DeliveryEvent | MilestoneEvent | Envelope:
    """A DeliveryEvent for the delivery family, a MilestoneEvent for tracker milestones,
    the bare Envelope for any other type."""
    envelope = parse_envelope(body)
    if is_delivery_event(envelope.detail_type):
        return delivery_event(envelope)
    if envelope.detail_type == MILESTONE_EVENT:
        return milestone_event(envelope)
    return envelope
