"""Read an SQS message body as a Buy with Prime EventBridge event.

Pure. ``parse_envelope`` validates the envelope every event shares; ``delivery_event``
goes on to the fields a delivery-family event must carry. Both raise MalformedEvent with a
one-line reason that never echoes more than a short, escaped piece of the input.

The poller and the worker read every body through this module, so both accept exactly
the same events: the same size limit, the same JSON nesting limit (a depth Python's parser
may or may not reach, depending on the caller's stack, is refused by both alike), the
same cap on the deliveries one event may name.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from itertools import accumulate
from typing import Any, Final

from tasks.errors import MalformedEvent
from tasks.events.catalog import (
    MILESTONE_EVENT,
    DeliveryState,
    implied_state,
    is_delivery_event,
)
from tasks.events.resources import Resource, find_pair, is_valid_id, parse_needed
from tasks.keys import DeliveryRef

#: EventBridge's event size limit; a larger SQS body cannot be a genuine event.
MAX_BODY_BYTES: Final = 256 * 1024
#: how deep JSON may nest in a body (an event is 4 levels deep; ``detail.data`` snapshots
#: a few more). One limit for the poller and the worker: Python's own parser gives up at a
#: depth that depends on how deep the caller's stack already is (~950 levels on the
#: poller's main thread, fewer in a Celery worker thread).
MAX_JSON_DEPTH: Final = 64
#: the default cap on the order/delivery pairs one event may name (MAX_DELIVERIES_PER_EVENT)
MAX_DELIVERIES_PER_EVENT: Final = 20
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
    #: fingerprint of what identifies the event (detail-type, resources and
    #: ``detail.idempotencyKey``; never ``time``, ``eventTime`` or ``data``): the same dedup
    #: key with another payload hash is a conflict, with the same one a duplicate
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
    """PACKAGE_TRACKER_MILESTONE_CHANGED: names a carrier's tracker, and sometimes its order."""

    envelope: Envelope
    business_product_id: str
    carrier_code: str
    tracking_number: str
    #: the order the tracker belongs to, when the resource names it (seen in 2025)
    order_id: str | None = None


# Used on text json.loads accepted, so every quote outside a string opens one that closes:
# each pattern runs in linear time.
_STRING: Final = re.compile(r'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET: Final = re.compile(r"[^\[\]{}]+")
#: byte → how it changes the nesting depth (an opening bracket +1, a closing one -1)
_STEPS: Final = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}
_DEPTH_STEP: Final = [_STEPS.get(byte, 0) for byte in range(256)]


def _nests_deeper(text: str, limit: int) -> bool:
    """True when the (valid) JSON ``text`` nests containers more than ``limit`` levels
    deep: the running count of its brackets (strings left out) goes past ``limit``. No
    recursion; the count runs in C (map, accumulate, max)."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text)).encode()
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0) > limit


def _load(body: str | bytes) -> Any:
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    if len(raw) > MAX_BODY_BYTES:
        raise MalformedEvent(f"body is {len(raw)} bytes, over the {MAX_BODY_BYTES} byte limit")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedEvent(f"body is not UTF-8 (byte {exc.start})") from exc
    try:
        doc = json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)
    except RecursionError as exc:
        raise MalformedEvent(f"body nests JSON deeper than {MAX_JSON_DEPTH} levels") from exc
    except ValueError as exc:  # JSONDecodeError, huge ints
        raise MalformedEvent(f"body is not JSON: {type(exc).__name__}") from exc
    # Only a body with more brackets than the limit can nest that deep (str.count is cheap;
    # an event has a handful), so only such a body is walked.
    brackets = text.count("[") + text.count("{")
    if brackets > MAX_JSON_DEPTH and _nests_deeper(text, MAX_JSON_DEPTH):
        raise MalformedEvent(f"body nests JSON deeper than {MAX_JSON_DEPTH} levels")
    return doc


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
    """What identifies an event: its detail-type, its resources (in any order) and
    ``detail.idempotencyKey``. The volatile rest of ``detail`` (``eventTime``, ``data``,
    ``subscriptionId``, …) may differ between copies of one re-published event."""
    identity = [detail_type, sorted(resources), detail.get("idempotencyKey")]
    canonical = json.dumps(identity, separators=(",", ":"))
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


_DELIVERY_KEYS: Final = frozenset({"order", "delivery"})
_MILESTONE_KEYS: Final = frozenset({"order", "carrier", "tracker"})


def delivery_event(
    envelope: Envelope, *, max_deliveries: int = MAX_DELIVERIES_PER_EVENT
) -> DeliveryEvent:
    """The delivery named by a delivery-family event.

    Raises MalformedEvent when no resource carries ``businessProduct/<id>/``, ``order/<id>``
    and ``delivery/<id>``, or when the resources name more than ``max_deliveries``
    distinct order/delivery pairs; KeyError when the detail-type is not a delivery event.
    The first such resource names the event's delivery; any other distinct pair lands in
    ``others``. Other resources, keys and ids are not read.
    """
    state = implied_state(envelope.detail_type)
    parsed = parse_needed(envelope.resources, _DELIVERY_KEYS)
    found = find_pair(parsed, "order", "delivery")
    if found is None:
        raise MalformedEvent("delivery event resources lack order/<id> and delivery/<id>")
    # dict.fromkeys: distinct pairs in order of appearance, in linear time
    refs = list(
        dict.fromkeys(
            DeliveryRef(r.business_product_id, r.pairs["order"], r.pairs["delivery"])
            for r in parsed
            if "order" in r.pairs and "delivery" in r.pairs
        )
    )
    if len(refs) > max_deliveries:
        raise MalformedEvent(
            f"event names {len(refs)} order/delivery pairs, over the cap of {max_deliveries}"
        )
    primary = refs[0]
    return DeliveryEvent(
        envelope=envelope,
        business_product_id=primary.business_product_id,
        order_id=primary.order_id,
        delivery_id=primary.delivery_id,
        implied_state=state,
        others=tuple(refs[1:]),
    )


def _order_of(parsed: list[Resource], tracker: Resource) -> str | None:
    """The order the tracker's own resource names, else the first other resource of the
    same business product that names one."""
    if "order" in tracker.pairs:
        return tracker.pairs["order"]
    same = (r for r in parsed if r.business_product_id == tracker.business_product_id)
    return next((r.pairs["order"] for r in same if "order" in r.pairs), None)


def milestone_event(envelope: Envelope) -> MilestoneEvent:
    """The tracker (and the order, when named) of a PACKAGE_TRACKER_MILESTONE_CHANGED event.

    Raises MalformedEvent when no resource carries ``carrier/<code>`` and ``tracker/<number>``.
    """
    parsed = parse_needed(envelope.resources, _MILESTONE_KEYS)
    found = find_pair(parsed, "carrier", "tracker")
    if found is None:
        raise MalformedEvent("milestone event resources lack carrier/<code> and tracker/<number>")
    return MilestoneEvent(
        envelope,
        found.business_product_id,
        found.pairs["carrier"],
        found.pairs["tracker"],
        _order_of(parsed, found),
    )


def parse_delivery_event(
    body: str | bytes, *, max_deliveries: int = MAX_DELIVERIES_PER_EVENT
) -> DeliveryEvent | MilestoneEvent | Envelope:
    """A DeliveryEvent for the delivery family, a MilestoneEvent for tracker milestones,
    the bare Envelope for any other type. ``max_deliveries``: MAX_DELIVERIES_PER_EVENT."""
    envelope = parse_envelope(body)
    if is_delivery_event(envelope.detail_type):
        return delivery_event(envelope, max_deliveries=max_deliveries)
    if envelope.detail_type == MILESTONE_EVENT:
        return milestone_event(envelope)
    return envelope
